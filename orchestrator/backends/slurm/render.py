"""Slurm: an sbatch script that runs `ft node` once per node through srun."""

from __future__ import annotations

from orchestrator.backends.base import Rendered
from orchestrator.backends.node_resources import node_resources
from orchestrator.backends.node_steps import (
    install_method,
    node_command,
    pre_node_commands,
    write_spec_command,
)
from orchestrator.backends.render_common import (
    explicit_launch,
    job_env,
    job_header,
    profile_for,
    size_gb,
)
from orchestrator.backends.slurm import storage
from orchestrator.backends.slurm.time_format import slurm_time, slurm_time_seconds
from orchestrator.shipping.job_files import job_files
from orchestrator.shipping.layout import ShipPlan
from orchestrator.spec.launch_schema import duration_seconds
from orchestrator.spec.load import Spec
from orchestrator.templating import render_template, sh
from trainer.torch_free.errors import Problem, SpecError
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE
from trainer.torch_free.liveness import PEER_LOST_EXIT_CODE
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE

NAME = "slurm"


def render(spec: Spec) -> Rendered:
    launch, slurm = spec.launch, spec.launch.slurm
    problems = storage.problems(spec)
    if problems:
        raise SpecError(problems, spec.source)
    notes: list[str] = []
    if launch.spot:
        notes.append("`launch.spot` has no meaning on Slurm and is ignored")
    notes += storage.notes(spec)
    profile = profile_for(spec)
    filename = f"{launch.name}.sbatch"
    # The nodes share this machine's filesystem: absolute paths are read where they are.
    shipped = job_files(spec, absolute_ok=True)
    wheel = install_method(spec) == "wheel"
    text = render_template(
        "slurm.sbatch.j2",
        header=job_header(spec, NAME, shipped),
        sbatch=_sbatch_options(spec, notes),
        explicit_command=explicit_launch(spec, NAME),
        workdir=slurm.workdir,
        setup=slurm.setup,
        env=job_env(spec, profile),
        secrets=launch.secrets,
        pre_node=pre_node_commands(spec),
        wheel=wheel,
        write_spec=write_spec_command(spec),
        nodes=launch.nodes,
        srun_extra=_srun_container(spec),
        ft_node=node_command(spec, NAME, shipped),
        resumable_code=RESUMABLE_EXIT_CODE,
        peer_lost_code=PEER_LOST_EXIT_CODE,
        preflight_code=PREFLIGHT_FAILED_EXIT_CODE,
        requeue_on_stop=launch.retry.on_preemption,
        requeue_on_error=launch.retry.on_error,
        max_restarts=launch.retry.max_restarts,
    )
    # The script writes the spec itself (on every attempt, exactly the rendered one); ft's
    # wheel and the spec's files go into the job's directory on the shared filesystem.
    plan = ShipPlan(launch.name, "job_dir", tuple(shipped), wheel, job_dir=slurm.workdir)
    # --parsable: sbatch prints just "id" or "id;cluster", never a sentence to scrape.
    return Rendered(NAME, {filename: text}, ["sbatch", "--parsable", f"{{dir}}/{filename}"],
                    notes, plan)


def _sbatch_options(spec: Spec, notes: list[str]) -> list[str]:
    launch, slurm = spec.launch, spec.launch.slurm
    resources = node_resources(spec)
    cpus = slurm.cpus_per_task or resources.cpus  # one task per node: its CPUs are the node's
    options = [
        f"--job-name={launch.name}",
        f"--nodes={launch.nodes}",
        "--ntasks-per-node=1",
    ]
    if launch.gpus_per_node:
        # A bare count: GRES type names differ per cluster (h100, nvidia_h100_80gb_hbm3...);
        # select the GPU type with `launch.slurm.constraint` or `partition`.
        options.append(f"--gpus-per-node={launch.gpus_per_node}")
    options += [f"--cpus-per-task={cpus}", f"--mem={_slurm_mem(spec)}"]
    # Not `--tmp`: on a cluster that does not track TmpDisk (the default) it never starts.
    if "disk" in resources.explicit:
        notes.append("Slurm jobs use the node's own disk: `launch.disk` is not rendered "
                     "(add `--tmp=...` to launch.slurm.extra_sbatch where TmpDisk is tracked)")
    if "shm_size" in resources.explicit:
        notes.append("Slurm jobs use the node's own /dev/shm: `launch.shm_size` is not "
                     "rendered")
    time = slurm.time or (slurm_time(launch.max_duration) if launch.max_duration else None)
    if time:
        _check_warning_fits(spec, time)
        options.append(f"--time={time}")
    else:
        notes.append("no `launch.slurm.time` or `launch.max_duration`: the partition's "
                     "default time limit applies")
    for key in ("partition", "account", "qos", "constraint", "reservation"):
        value = getattr(slurm, key)
        if value:
            options.append(f"--{key}={value}")
    if slurm.exclusive:
        options.append("--exclusive")
    # Append: a requeued job writes its next attempt after the first one's log, not over it.
    options += [f"--output={launch.name}-%j.out", f"--error={launch.name}-%j.err",
                "--open-mode=append"]
    retry = launch.retry
    options.append("--requeue" if retry.on_preemption or retry.on_error else "--no-requeue")
    # B: the warning goes to the batch shell only; its trap asks every node to save, with
    # the grace plus a minute of margin before the time limit's own kill. USR1, not TERM:
    # Slurm delivers a B:TERM warning as a cancel would (slurmstepd logs "JOB N CANCELLED"),
    # and the script must tell a time limit from a user's scancel.
    options.append(f"--signal=B:USR1@{signal_lead_seconds(spec)}")
    if retry.duration:
        notes.append("Slurm counts restarts, not time: `launch.retry.duration` is not "
                     "enforced (`launch.retry.max_restarts` is)")
    options += slurm.extra_sbatch
    return options


def _check_warning_fits(spec: Spec, time: str) -> None:
    """The time-limit warning comes stop_grace + 60 s before the limit: a limit shorter than
    that would stop the job as soon as it starts."""
    limit, lead = slurm_time_seconds(time), signal_lead_seconds(spec)
    if limit is not None and limit <= lead:
        raise SpecError([Problem("launch.stop_grace", (
            f"Slurm warns the job {lead} s before its time limit (stop_grace + 60 s) so that "
            f"every rank can save, but the limit is {time} ({limit} s): lower "
            "launch.stop_grace or raise launch.slurm.time / launch.max_duration"))],
            spec.source)


def signal_lead_seconds(spec: Spec) -> int:
    """How long before the time limit Slurm warns the job: the ranks' grace + a minute."""
    return duration_seconds(spec.launch.stop_grace) + 60


def _slurm_mem(spec: Spec) -> str:
    if spec.launch.slurm.mem:
        return spec.launch.slurm.mem
    if spec.launch.memory:
        return f"{size_gb(spec.launch.memory)}G"
    return "0"  # all of the node's memory


def _srun_container(spec: Spec) -> str:
    image = spec.launch.slurm.container_image
    if not image:
        return ""
    # pyxis: run ft node inside the image, with the job directory mounted at the same path.
    return (f"--container-image={sh(image)} --container-workdir=\"$PWD\" "
            f"--container-mounts=\"$PWD\" ")
