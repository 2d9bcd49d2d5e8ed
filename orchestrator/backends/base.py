"""The one protocol every backend implements, in the spirit of torchx's `Scheduler`.

A backend owns everything about where a job runs:
- `spec_problems(spec)`: what this backend cannot run (`ft validate --backend NAME`, and
  render refuses the same);
- `render(spec)`: pure and offline, the files to write and the EXACT submit argv (what
  `ft launch --dry-run` prints is what `ft launch` runs); `for_stages` narrows that argv to
  some of ft's stages (`ft launch --stage`) where the backend has a function per stage;
- `submit` is generic (orchestrator.jobs.submit): check_ready -> write -> run the argv ->
  `parse_submit`; then `statuses / details / log_lines / cancel` read the job back;
- `node_vars` (+ `master_addr`, `gpus_per_node`): the variables it sets on every node and
  how `ft node` maps them to a Rendezvous and the job id the trainer reads; `master_shell`
  writes the same in shell for the rendered files' explicit command;
- `emulated_env`: what `ft launch --backend local --emulate NAME` gives each emulated node.

Adding a backend is one module (or package) defining a subclass, plus one line in
`orchestrator.backends.REGISTRY`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.process import Completed, run_cmd
from trainer.torch_free.errors import Problem, UserError

if TYPE_CHECKING:

    from orchestrator.backends.job_model import JobRecord, JobStatus
    from orchestrator.shipping.bundle import IgnoreFile
    from orchestrator.shipping.layout import ShipPlan
    from orchestrator.spec.load import Spec


# ft's in-container stages, in the order a job runs them (`ft preprocess`, `ft train`, ...).
STAGES = ("preprocess", "train", "merge-lora")


@dataclass(frozen=True)
class EmulatedHosts:
    """Where `ft launch --backend local` puts its nodes: node r is `names[r]` at
    `addresses[r]` (all this host's loopback unless the nodes are isolated)."""

    names: tuple[str, ...]
    addresses: tuple[str, ...]

    @classmethod
    def shared(cls, nodes: int) -> EmulatedHosts:
        return cls(("localhost",) * nodes, ("127.0.0.1",) * nodes)


@dataclass(frozen=True)
class Rendered:
    """What a backend produces: files to write and the command that submits them."""

    backend: str
    files: dict[str, str]  # file name -> text
    submit_argv: list[str]  # exact; {dir} stands for the directory the files are written to
    notes: list[str] = field(default_factory=list)  # settings ignored or adjusted, for stderr
    ship: ShipPlan | None = None  # what the submit step writes for the nodes (shipping/)

    def submit_command(self, directory: str) -> list[str]:
        return [part.replace("{dir}", directory.rstrip("/") or ".") for part in self.submit_argv]


@dataclass(frozen=True)
class NodeVars:
    """The variables a backend sets on every node (docs/backends.md, "How a job starts on
    each node")."""

    master: str  # the variable the master address is derived from
    rank: str
    nnodes: str
    nproc: str  # GPUs (processes) per node; optional on every backend
    # The job's id that survives its restarts and requeues (a new submission gets a new
    # one): `ft node` exports it to the trainer as FT_JOB_ID (orchestrator/node/job_id.py).
    job_id: str
    where: str  # completes "is this running inside ...?" in error messages
    detect: tuple[str, ...]  # any of these set: `ft node` is running under this backend


@dataclass(frozen=True)
class SubmitTool:
    program: str  # what must be on PATH to submit
    how_to_get: str  # the fix when it is not


@dataclass(frozen=True)
class Submitted:
    """What a submit command's output told us about the new job."""

    job_id: str
    log_files: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # kept as JobRecord.extra


class Backend:
    """Base class: the node-side defaults every backend shares; lifecycle methods raise
    until a backend that submits implements them."""

    name: ClassVar[str]
    node_vars: ClassVar[NodeVars]
    tool: ClassVar[SubmitTool | None] = None  # None: runs here, renders nothing
    example: ClassVar[str] = ""  # one line for `--help`
    title: ClassVar[str] = ""  # how prose and messages name it, where not as `name` is spelt
    # Which kinds of `launch.volumes` entry it mounts (backends/storage.py: NAMED,
    # HOST_PATH, BUCKET, MOUNT_MODES), for hints that send an entry to a backend that does.
    mounts: ClassVar[frozenset[str]] = frozenset()
    stages: ClassVar[tuple[str, ...]] = ()  # of STAGES, what `ft launch --stage` may pick
    env_prefixes: ClassVar[tuple[str, ...]] = ()  # every variable it sets starts so
    # Its own `launch.<name>:` block in the spec and keys in a cluster profile are not
    # attributes: the spec layer reads them from the package's options.py (LAUNCH_OPTIONS,
    # PROFILE_OPTIONS; orchestrator.backend_registry.declared_in_options) without loading this.
    # The file its tool reads to skip files when it uploads the bundle; ft writes one that
    # keeps everything (None: its tool reads none, or it ships no bundle).
    ignore_file: ClassVar[IgnoreFile | None] = None
    # Whether its nodes see the submit directory as one shared filesystem (an HPC
    # cluster's home/project storage), not each a copy of it; isolated emulated nodes
    # share it only then (orchestrator.backends.local.isolation).
    shares_submit_dir: ClassVar[bool] = False

    @property
    def shown_name(self) -> str:
        return self.title or self.name

    @property
    def renders(self) -> bool:
        return self.tool is not None

    # ---- render (pure) ----------------------------------------------------------------
    def spec_problems(self, spec: Spec) -> list[Problem]:
        """What this backend cannot run, each with its YAML path and the fix."""
        return self.gpu_problems(spec) + self.storage_problems(spec)

    def gpu_problems(self, spec: Spec) -> list[Problem]:
        """More GPUs per node than the machines this backend runs on have (gpu_limits.py);
        nothing for a backend that runs here."""
        if not self.renders:
            return []
        from orchestrator.backends.gpu_limits import per_node_problems

        return per_node_problems(spec, self.name)

    def storage_problems(self, spec: Spec) -> list[Problem]:
        """`launch.volumes` this backend cannot mount as written, and a multi-node
        `output_dir` that would not be on storage every node sees (backends/storage.py)."""
        return []

    def emulated_storage_problems(self, spec: Spec) -> list[Problem]:
        """What `ft launch --backend local --emulate NAME` refuses as this backend would: a
        multi-node `output_dir` its real nodes would not share."""
        return []

    def render(self, spec: Spec) -> Rendered:
        raise UserError(f"the {self.name} backend renders no files")

    def check_stages(self, stages: Sequence[str]) -> None:
        """Refuse stages this backend cannot submit one by one (the registry's check_stages
        also names the backends that can, which only the registry knows)."""
        unknown = [stage for stage in stages if stage not in self.stages]
        if not unknown:
            return
        if self.stages:
            raise UserError(f"the {self.name} backend has no stage {unknown[0]!r}; use "
                            f"{', '.join(self.stages)}")
        raise UserError(f"the {self.name} backend runs training only; `--stage` is for "
                        "backends with a function per stage")

    def for_stages(self, rendered: Rendered, stages: Sequence[str]) -> Rendered:
        """The same files, submitted to run only `stages` (in ft's order)."""
        self.check_stages(stages)
        return rendered

    # ---- node side ---------------------------------------------------------------------
    def master_addr(self, raw: str) -> tuple[str, str]:
        """The master address from the value of `node_vars.master`, with a note on how."""
        return raw, f"master from {self.node_vars.master}"

    def master_shell(self) -> str:
        """The same, as a shell word for the rendered files' explicit command."""
        return f'"${self.node_vars.master}"'

    def gpus_per_node(self, environ: Mapping[str, str], nnodes: int) -> tuple[int, str]:
        """(count, "from VAR") or, when the backend does not say, (0, "VAR is")."""
        variable = self.node_vars.nproc
        count = optional_count(environ, self.name, variable)
        return (count, f"from {variable}") if count else (0, f"{variable} is")

    def nproc_shell(self, default_nproc: int | None) -> str:
        variable = self.node_vars.nproc
        return f"${{{variable}:-{default_nproc}}}" if default_nproc else f"${variable}"

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        """The variables this backend would set on node `rank` of an N-node job whose
        nodes are `hosts` (default: all on this host's loopback)."""
        raise UserError(f"the {self.name} backend cannot be emulated")

    # ---- lifecycle (through orchestrator.process) ---------------------------------------
    def check_ready(self) -> None:
        """Raise a UserError saying how to fix it when the tool is missing or unconfigured."""
        self.require_tool()

    def cluster_notes(self, spec: Spec) -> list[str]:
        """Warnings about the spec against this cluster's own settings, read at submit time
        (the render stays offline): e.g. a stop grace longer than the cluster's kill wait."""
        return []

    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        raise NotImplementedError

    def explain_failure(self, result: Completed) -> str:
        """A hint for a failed submit, from the tool's message ("" when none applies)."""
        return ""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        """Current status by `record.ref`; as few tool calls as the backend allows."""
        raise NotImplementedError

    def details(self, record: JobRecord) -> list[str]:
        """Extra `key: value` lines for `ft status JOB` (log paths, exit codes)."""
        return []

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        raise NotImplementedError

    def cancel(self, record: JobRecord) -> str:
        """Ask the backend to stop the job; returns the tool's confirmation, if any."""
        raise NotImplementedError

    # ---- helpers for subclasses ---------------------------------------------------------
    def require_tool(self) -> None:
        assert self.tool is not None, f"{self.name} submits nothing"
        if shutil.which(self.tool.program) is None:
            raise self._not_on_path(self.tool.program)

    def run_tool(self, argv: Sequence[str]) -> Completed:
        """run_cmd, with a missing program reported as the user's fixable problem."""
        try:
            return run_cmd(argv)
        except FileNotFoundError:
            raise self._not_on_path(argv[0]) from None

    def tool_log_lines(self, argv: Sequence[str], follow: bool) -> Iterator[str]:
        """A job's log through the backend's own logs command: streamed while following,
        else run once, its colour codes removed, a failure reported with the tool's words."""
        from orchestrator.backends.tool_output import failure_text, plain
        from orchestrator.process import stream_cmd

        if follow:
            yield from stream_cmd(list(argv))
            return
        result = self.run_tool(argv)
        if result.returncode != 0:
            raise UserError(f"{' '.join(argv[:3])} failed:\n{failure_text(result)}")
        yield from plain(result.stdout).splitlines()

    def _not_on_path(self, program: str) -> UserError:
        how = self.tool.how_to_get if self.tool else "install it"
        return UserError(f"`{program}` is not on PATH, so ft cannot reach {self.name}. "
                         f"To fix: {how}.")


# The numbers among a backend's node variables, read here beside NodeVars: gpus_per_node
# above and backends' own hooks read them, as rendezvous.py does.
def parse_int(backend: str, variable: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise UserError(f"ft node --backend {backend}: {variable}={raw!r} is not an integer "
                        f">= {minimum}")
    return value


def optional_count(environ: Mapping[str, str], backend: str, variable: str) -> int:
    """0 when unset or empty: GPU counts are optional (a job that asked for no GPUs may
    leave it unset)."""
    raw = environ.get(variable, "").strip()
    return parse_int(backend, variable, raw, minimum=0) if raw else 0
