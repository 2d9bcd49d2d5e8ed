# An image with ft baked in (optional: by default a job ships its own wheel). CUDA PyTorch + ft. `launch.install.method: image` (the default when no
# `launch.image` is given) expects this image, tagged with ft's version:
#   docker build -t ghcr.io/ft-project/ft:$(python -c 'import orchestrator; print(orchestrator.__version__)') .
# 25.12: PyTorch 2.10 (FSDP2's public fully_shard needs 2.6+), CUDA 13.1.
FROM nvcr.io/nvidia/pytorch:25.12-py3

# flash-attn has no wheel on the package index; the NGC image already ships it.
WORKDIR /opt/ft
COPY pyproject.toml setup.py README.md ./
COPY orchestrator ./orchestrator
COPY trainer ./trainer
COPY templates ./templates
COPY clusters ./clusters
# examples/tiny ships in the wheel (`ft init --example tiny`).
COPY examples ./examples
# The image trains: the [train] extra (the base install is the CLI only) and DeepSpeed.
RUN python -m pip install --no-cache-dir '.[train,deepspeed]'

WORKDIR /workspace
ENTRYPOINT []
