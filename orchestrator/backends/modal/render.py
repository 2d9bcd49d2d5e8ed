"""Modal: one Python app file, a function per stage, submitted by `modal run --detach`.

The submit argv runs the app's local entrypoint `launch`, which spawns the first stage and
returns: each stage, when it succeeds, spawns the next one, so the chain outlives the
`modal run` that started it (a detached app keeps its spawned calls running) and no parent
function has to outlast every stage.
"""

from __future__ import annotations

from orchestrator.backends.base import Rendered
from orchestrator.backends.modal import checks
from orchestrator.backends.modal.cluster_env import GPUS_PER_NODE, NODE_IPS, NUM_NODES, RANK
from orchestrator.backends.modal.markers import APP_ID_MARK, RESULT_MARK
from orchestrator.backends.modal.ship import DEFAULT_IMAGE, requirements
from orchestrator.backends.node_steps import ft_node_argv, install_method, spec_path_in_job
from orchestrator.backends.render_common import (
    explicit_launch,
    job_env,
    parse_gpu,
    profile_for,
    regenerate_command,
    size_gb,
)
from orchestrator.rendering import header_lines, render_template
from orchestrator.spec.load import Spec
from trainer.contract.launch import duration_seconds

NAME = "modal"
DEFAULT_STAGES = ("preprocess", "train")
MAX_TIMEOUT_S = 24 * 3600  # Modal's longest function timeout
WORKDIR = "/workspace"  # the job's own Volume; relative spec paths land on it


def app_filename(spec: Spec) -> str:
    # Modal imports the file as a module: no dots or dashes in its name.
    return f"{spec.launch.name.replace('-', '_')}_modal.py"


def submit_argv(filename: str, stages: tuple[str, ...] = DEFAULT_STAGES) -> list[str]:
    return ["modal", "run", "--detach", f"{{dir}}/{filename}::launch",
            "--stages", ",".join(stages)]


def render(spec: Spec) -> Rendered:
    checks.check(spec)
    launch = spec.launch
    notes: list[str] = []
    filename = app_filename(spec)
    submit = submit_argv(filename)
    gpu = parse_gpu(spec, NAME, required=True)
    gpu_type = checks.modal_gpu(gpu)[0] if gpu else None
    text = render_template(
        "modal.app.py.j2",
        header=header_lines(spec.source, spec.sha256, regenerate_command(spec, NAME)),
        submit=" ".join(part.replace("{dir}", ".") for part in submit),
        explicit_command=explicit_launch(spec, NAME),
        node_vars=(NODE_IPS, RANK, NUM_NODES, GPUS_PER_NODE),
        filename=filename,
        name=launch.name,
        nodes=launch.nodes,
        gpus_per_node=launch.gpus_per_node,
        train_gpu=f"{gpu_type}:{launch.gpus_per_node}" if gpu_type else None,
        one_gpu=gpu_type,
        rdma=profile_for(spec).fabric != "tcp",
        image=launch.image or DEFAULT_IMAGE,
        ship_ft=_ships_ft(spec),
        package=launch.install.package,
        requirements=requirements(),
        env=job_env(spec, profile_for(spec)),
        secrets=launch.secrets,
        volumes=[(v.path, v.name) for v in launch.volumes if v.name],
        job_volume=f"ft-{launch.name}",
        workdir=WORKDIR,
        cpu=launch.cpus_per_node,
        memory_mb=size_gb(launch.memory) * 1024 if launch.memory else None,
        timeout=_timeout(spec, notes),
        retries=_retries(spec, notes),
        spec_path=spec_path_in_job(spec),
        spec_text=spec.effective_text,
        spec_sha256=spec.sha256,
        node_argv=ft_node_argv(spec, NAME),
        merge=spec.training.adapter is not None,
        result_mark=RESULT_MARK,
        app_id_mark=APP_ID_MARK,
        default_stages=",".join(DEFAULT_STAGES),
    )
    _notes(spec, gpu, notes)
    return Rendered(NAME, {filename: text}, submit, notes)


def _ships_ft(spec: Spec) -> bool:
    """The image has ft (`install.method: image` with a `launch.image`), a package names
    it (`install.package`), or ft ships its own source into the image."""
    method = install_method(spec)
    if method == "image" and spec.launch.image:
        return False
    return spec.launch.install.package is None


def _timeout(spec: Spec, notes: list[str]) -> int:
    wanted = duration_seconds(spec.launch.max_duration) if spec.launch.max_duration else None
    if wanted is None or wanted > MAX_TIMEOUT_S:
        said = f"`launch.max_duration: {spec.launch.max_duration}`" if wanted else \
            "no `launch.max_duration`"
        notes.append(f"Modal stops a function after 24h at most: {said} becomes a 24h "
                     "timeout per stage; launch the stage again to continue from its last "
                     "checkpoint")
        return MAX_TIMEOUT_S
    return wanted


def _retries(spec: Spec, notes: list[str]) -> int:
    retry = spec.launch.retry
    if retry.duration:
        notes.append("Modal retries by count, not time: `launch.retry.duration` is not "
                     "enforced")
    if not retry.on_preemption:
        notes.append("Modal always restarts a preempted container: `launch.retry."
                     "on_preemption: false` cannot be honoured")
    return retry.max_restarts if retry.on_error else 0


def _notes(spec: Spec, gpu, notes: list[str]) -> None:
    """Settings Modal has no knob for: said, never dropped silently."""
    launch, explicit = spec.launch, spec.launch.model_fields_set
    if gpu and gpu.memory and gpu.name.upper() != "A100":
        notes.append(f"Modal picks {gpu.name} by type only: the memory in `launch.gpu` "
                     f"({gpu.memory}) is not rendered")
    for key in ("disk", "shm_size"):
        if key in explicit:
            notes.append(f"Modal sizes a container's disk and /dev/shm itself: "
                         f"`launch.{key}` is not rendered")
    if "spot" in explicit and not launch.spot:
        notes.append("Modal's GPU containers can always be preempted: `launch.spot: false` "
                     "cannot be honoured (a preempted stage restarts from its last checkpoint)")
