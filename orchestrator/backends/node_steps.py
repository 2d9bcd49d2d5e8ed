"""The shell steps every node runs: get ft, have the exact rendered spec, start `ft node`.

Shared by all backends so that every backend's nodes run the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator import DISTRIBUTION, __version__
from orchestrator.shipping.job_files import JobFile
from orchestrator.shipping.layout import installer_in_job, wheels_in_job
from orchestrator.spec.load import Spec
from orchestrator.templating import sh

SPEC_DIR = ".ft"
# The image a job runs in unless `launch.image` names one. Public, no image of ft's own: the
# node installs the shipped wheel into it. NGC's PyTorch 25.04 (release notes: PyTorch
# 2.7.0a0, CUDA 12.9, Python 3.12): its torch satisfies ft's `torch>=2.6` (pip accepts an
# installed pre-release), so pip keeps NGC's CUDA build and only adds what the image lacks.
DEFAULT_IMAGE = "nvcr.io/nvidia/pytorch:25.04-py3"


def spec_path_in_job(spec: Spec) -> str:
    return f"{SPEC_DIR}/{spec.launch.name}.yaml"


def install_method(spec: Spec) -> str:
    return spec.launch.install.method


def default_image() -> str:
    return DEFAULT_IMAGE


def train_requirement() -> str:
    # The nodes train, so they get the [train] extra (the base install is the CLI only).
    return f"{DISTRIBUTION}[train]=={__version__}"


def pip_requirement(spec: Spec) -> str:
    """What `install.method: pip` installs from the index."""
    return spec.launch.install.package or train_requirement()


def install_commands(spec: Spec) -> list[str]:
    """Commands before `ft node` (the shipped wheel installs in the node command itself)."""
    if install_method(spec) == "pip":
        return [f"python -m pip install --quiet {sh(pip_requirement(spec))}"]
    return []


def check_ft_command() -> str:
    return ('command -v ft >/dev/null || { echo "ft is not on PATH on $(hostname); install it or '
            'set launch.install" >&2; exit 2; }')


def write_spec_command(spec: Spec) -> str:
    """One shell statement (no heredoc) so it also works where commands are joined by &&."""
    return (f"mkdir -p {SPEC_DIR} && printf '%s' {sh(spec.effective_text)} > "
            f"{sh(spec_path_in_job(spec))}")


def ft_node_argv(spec: Spec, backend: str, files: Sequence[JobFile] = ()) -> list[str]:
    """`ft node`, told the hashes of the spec and of every shipped file, which it checks."""
    hashes = [arg for f in files for arg in ("--file-sha256", f"{f.path}={f.sha256}")]
    return ["ft", "node", spec_path_in_job(spec), "--backend", backend,
            "--spec-sha256", spec.sha256, *hashes]


def with_shipped_ft(spec: Spec, argv: Sequence[str]) -> list[str]:
    """An `ft ...` argv as the job runs it: with the shipped wheel, through the node
    installer (it installs once per node, then execs the command from that environment),
    so the command runs the exact ft that rendered the job; otherwise as it is."""
    if install_method(spec) != "wheel":
        return list(argv)
    name = spec.launch.name
    return ["python3", installer_in_job(name), wheels_in_job(name), train_requirement(),
            "--", *argv]


def node_argv(spec: Spec, backend: str, files: Sequence[JobFile]) -> list[str]:
    return with_shipped_ft(spec, ft_node_argv(spec, backend, files))


def node_command(spec: Spec, backend: str, files: Sequence[JobFile]) -> str:
    """`ft node ...`, or with the shipped wheel: the node installer (once per node), which
    then execs `ft node` from the environment it installed."""
    return " ".join(sh(part) for part in node_argv(spec, backend, files))


def pre_node_commands(spec: Spec) -> list[str]:
    """What runs before the node command: a pip install, and the check that ft is there
    (the shipped-wheel installer makes sure of it itself)."""
    if install_method(spec) == "wheel":
        return []
    return [*install_commands(spec), check_ft_command()]


def train_argv(spec: Spec) -> list[str]:
    """What ft node hands to torchrun / accelerate on every node."""
    return ["ft", "train", spec_path_in_job(spec)]
