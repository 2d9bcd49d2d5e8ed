"""Modal: one Python app file, a function per stage, submitted by `modal run --detach`.

The submit argv runs the app's local entrypoint `launch`, which spawns the first stage and
returns: each stage, when it succeeds, spawns the next one, so the chain outlives the
`modal run` that started it (a detached app keeps its spawned calls running) and no parent
function has to outlast every stage.

ft, the spec and its files reach the containers as on every backend: the render returns a
ShipPlan, `ft launch` writes the bundle `<job>.ship/` beside the app, and the app adds it to
its image. With `install.method: wheel` the image build runs the shared node installer on the
shipped wheel, and every stage runs ft through that installer, as the other backends' nodes do.
"""

from __future__ import annotations

from orchestrator.backends.base import Rendered
from orchestrator.backends.gpu_limits import parse_gpu
from orchestrator.backends.modal import checks
from orchestrator.backends.modal.cluster_env import (
    GPUS_PER_NODE,
    JOB_ID,
    NODE_IPS,
    NUM_NODES,
    RANK,
)
from orchestrator.backends.modal.inputs import WORKDIR, input_notes, job_volume
from orchestrator.backends.modal.markers import APP_ID_MARK, RESULT_MARK
from orchestrator.backends.node_steps import (
    default_image,
    install_method,
    node_argv,
    pip_requirement,
    spec_path_in_job,
    train_requirement,
    with_shipped_ft,
)
from orchestrator.backends.render_common import (
    explicit_launch,
    job_env,
    job_header,
    profile_for,
    shown_submit,
    size_gb,
)
from orchestrator.backends.storage import volumes_on
from orchestrator.shipping.job_files import job_files
from orchestrator.shipping.layout import (
    ShipPlan,
    bundle_name,
    installer_in_job,
    job_prefix,
    wheels_in_job,
)
from orchestrator.spec.launch_schema import duration_seconds
from orchestrator.spec.load import Spec
from orchestrator.templating import render_template, sh

NAME = "modal"
DEFAULT_STAGES = ("preprocess", "train")
MAX_TIMEOUT_S = 24 * 3600  # Modal's longest function timeout
# In the image: the bundle `ft launch` writes beside the app (`<job>.ship/`), mounted when a
# container starts (a new spec or file needs no image rebuild); and ft's wheel + installer,
# copied into a layer and installed at build time, so a container never installs ft and the
# same wheel reuses the built image.
SHIPPED = "/ft-ship"
INSTALLED = "/ft-install"
# install_ft.py's node cache, inside the image: the stages' installer finds the build's
# install there (its default, $TMPDIR, is not a place an image keeps).
NODE_CACHE = "/opt/ft-node-cache"


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
    shipped = job_files(spec, absolute_ok=False)
    method = install_method(spec)
    text = render_template(
        "modal.app.py.j2",
        header=job_header(spec, NAME, shipped),
        submit=shown_submit(submit),
        explicit_command=explicit_launch(spec, NAME),
        node_vars={"ips": NODE_IPS, "rank": RANK, "nodes": NUM_NODES, "gpus": GPUS_PER_NODE,
                   "job": JOB_ID},
        filename=filename,
        name=launch.name,
        nodes=launch.nodes,
        gpus_per_node=launch.gpus_per_node,
        train_gpu=f"{gpu_type}:{launch.gpus_per_node}" if gpu_type else None,
        one_gpu=gpu_type,
        rdma=profile_for(spec).fabric != "tcp",
        # The default image every backend uses, not one of Modal's own: the installer is
        # proven on it, its torch satisfies ft's, and Modal pulls public nvcr.io images
        # (python and pip on PATH, which Modal needs) like any registry's.
        image=launch.image or default_image(),
        method=method,
        bundle=bundle_name(launch.name),
        shipped_dir=SHIPPED,
        ignore=_other_ignore_files(),
        job_prefix=job_prefix(launch.name),
        wheels=wheels_in_job(launch.name),
        installed_dir=INSTALLED,
        node_cache=NODE_CACHE,
        build_install=_build_install(spec),
        pip_requirement=pip_requirement(spec),
        env=job_env(spec, profile_for(spec)),
        secrets=launch.secrets,
        volumes=[(m.volume.path, m.volume.name) for m in volumes_on(spec, NAME)
                 if m.volume.name],
        job_volume=job_volume(spec),
        workdir=WORKDIR,
        cpu=launch.cpus_per_node,
        memory_mb=size_gb(launch.memory) * 1024 if launch.memory else None,
        timeout=_timeout(spec, notes),
        retries=_retries(spec, notes),
        spec_path=spec_path_in_job(spec),
        ft=with_shipped_ft(spec, ["ft"]),
        node_argv=node_argv(spec, NAME, shipped),
        merge=spec.training.adapter is not None,
        result_mark=RESULT_MARK,
        app_id_mark=APP_ID_MARK,
        default_stages=",".join(DEFAULT_STAGES),
    )
    _notes(spec, gpu, notes)
    notes += input_notes(spec)
    plan = ShipPlan(launch.name, "bundle", tuple(shipped), method == "wheel",
                    spec.effective_text, spec_path_in_job(spec))
    return Rendered(NAME, {filename: text}, submit, notes, plan)


def _build_install(spec: Spec) -> str:
    """The image build step: the node installer every backend runs, on the copied wheel."""
    name = spec.launch.name
    argv = ["python3", f"{INSTALLED}/{installer_in_job(name)}",
            f"{INSTALLED}/{wheels_in_job(name)}", train_requirement()]
    return " ".join(sh(part) for part in argv)


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
    if launch.nodes > 1:
        notes.append("Modal Volumes show a container's writes to the others only after it "
                     "commits and they reload (modal.Volume docs); the app commits when a "
                     "stage ends, so during multi-node training rank 0 cannot see the other "
                     "containers' checkpoint shards: checkpoints are not marked complete, and "
                     "a restarted stage starts at step 0")
    if "spot" in explicit and not launch.spot:
        notes.append("Modal's GPU containers can always be preempted: `launch.spot: false` "
                     "cannot be honoured (a preempted stage restarts from its last checkpoint)")


def _other_ignore_files() -> list[str]:
    """The other backends' ignore files, left out of the upload should a bundle carry one:
    they are ft's, not the job's."""
    from orchestrator.backends import get, names

    return sorted(get(name).ignore_file.name for name in names() if get(name).ignore_file)
