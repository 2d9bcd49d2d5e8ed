# ft's image: CUDA PyTorch + ft. `launch.install.method: image` (the default when no
# `launch.image` is given) expects this image, tagged with ft's version:
#   docker build -t ghcr.io/ft-project/ft:$(python -c 'import orchestrator; print(orchestrator.__version__)') .
FROM nvcr.io/nvidia/pytorch:24.10-py3

# flash-attn has no wheel on the package index; the NGC image already ships it.
WORKDIR /opt/ft
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY trainer ./trainer
COPY templates ./templates
COPY clusters ./clusters
RUN python -m pip install --no-cache-dir '.[deepspeed]'

WORKDIR /workspace
ENTRYPOINT []
