"""The shell steps every node runs: get ft, write the exact rendered spec, start `ft node`.

Shared by all backends so that dstack, SkyPilot and Slurm run the same thing.
"""

from __future__ import annotations

from orchestrator import DISTRIBUTION, __version__
from orchestrator.rendering import sh
from orchestrator.spec.load import Spec

SPEC_DIR = ".ft"


def spec_path_in_job(spec: Spec) -> str:
    return f"{SPEC_DIR}/{spec.launch.name}.yaml"


def install_method(spec: Spec, backend: str) -> str:
    """`image` unless the user said otherwise; a custom image without ft needs `pip`."""
    install = spec.launch.install
    if "method" in install.model_fields_set:
        return install.method
    if backend == "slurm":
        return "image"  # Slurm jobs run in the cluster's environment (see launch.slurm.setup)
    return "image" if spec.launch.image is None else "pip"


def default_image() -> str:
    return f"ghcr.io/ft-project/ft:{__version__}"


def install_commands(spec: Spec, backend: str) -> list[str]:
    # The nodes train, so they get the [train] extra (the base install is the CLI only).
    method = install_method(spec, backend)
    if method == "pip":
        package = spec.launch.install.package or f"{DISTRIBUTION}[train]=={__version__}"
        return [f"python -m pip install --quiet {sh(package)}"]
    if method == "workdir":
        return [f"python -m pip install --quiet {sh('.[train]')}"]
    return []


def check_ft_command() -> str:
    return ('command -v ft >/dev/null || { echo "ft is not on PATH on $(hostname); install it or '
            'set launch.install" >&2; exit 2; }')


def write_spec_command(spec: Spec) -> str:
    """One shell statement (no heredoc) so it also works where commands are joined by &&."""
    return (f"mkdir -p {SPEC_DIR} && printf '%s' {sh(spec.effective_text)} > "
            f"{sh(spec_path_in_job(spec))}")


def ft_node_argv(spec: Spec, backend: str) -> list[str]:
    return ["ft", "node", spec_path_in_job(spec), "--backend", backend,
            "--spec-sha256", spec.sha256]


def ft_node_command(spec: Spec, backend: str) -> str:
    return " ".join(sh(part) for part in ft_node_argv(spec, backend))


def train_argv(spec: Spec) -> list[str]:
    """What ft node hands to torchrun / accelerate on every node."""
    return ["ft", "train", spec_path_in_job(spec)]
