"""SkyPilot: a task YAML for `sky launch` (or a managed job for `sky jobs launch`)."""

from __future__ import annotations

from orchestrator.backends.base import Rendered
from orchestrator.backends.fabric_cloud import check_fabric_on_clouds, efa_image_notes
from orchestrator.backends.gpu_limits import parse_gpu
from orchestrator.backends.node_resources import node_resources
from orchestrator.backends.node_steps import (
    default_image,
    install_commands,
    install_method,
    node_command,
    pre_node_commands,
    spec_path_in_job,
)
from orchestrator.backends.render_common import (
    explicit_launch,
    job_env,
    job_header,
    profile_for,
    shown_submit,
)
from orchestrator.backends.skypilot import storage
from orchestrator.backends.skypilot.fabric import skypilot_fabric_notes, skypilot_network_tier
from orchestrator.shipping.job_files import job_files
from orchestrator.shipping.layout import ShipPlan, bundle_name
from orchestrator.spec.load import Spec
from orchestrator.templating import render_template
from trainer.torch_free.errors import SpecError

NAME = "skypilot"


def render(spec: Spec) -> Rendered:
    launch, sky = spec.launch, spec.launch.skypilot
    problems = storage.problems(spec)
    if problems:
        raise SpecError(problems, spec.source)
    notes: list[str] = storage.notes(spec)
    profile = profile_for(spec)
    resources = node_resources(spec)
    if "shm_size" in resources.explicit:
        notes.append("SkyPilot has no /dev/shm setting: `launch.shm_size` is not rendered")
    check_fabric_on_clouds(spec, profile, [sky.cloud] if sky.cloud else [],
                           "launch.skypilot.cloud")
    network_tier = skypilot_network_tier(spec, profile)
    fabric_notes = skypilot_fabric_notes(spec, profile, network_tier)
    notes += fabric_notes + efa_image_notes(spec, profile)
    filename = f"{launch.name}.sky.yaml"
    submit = _submit_argv(spec, filename)
    shipped = job_files(spec, absolute_ok=False)
    wheel = install_method(spec) == "wheel"
    # The pip install, if any, is setup's job; run only checks that ft is there.
    checks = [c for c in pre_node_commands(spec) if c not in install_commands(spec)]
    gpu = parse_gpu(spec, NAME, required=True)
    if gpu and gpu.memory:
        notes.append(f"SkyPilot picks GPUs by type only: the memory in `launch.gpu` "
                     f"({gpu.memory}) is not rendered")
    _retry_notes(spec, notes)
    if launch.spot and not sky.managed and launch.retry.on_preemption:
        notes.append("spot without `launch.skypilot.managed: true` is not recovered after "
                     "preemption; set managed to let SkyPilot relaunch it")
    text = render_template(
        "skypilot.task.yaml.j2",
        header=job_header(spec, NAME, shipped),
        submit=shown_submit(submit),
        explicit_command=explicit_launch(spec, NAME),
        name=launch.name,
        nodes=launch.nodes,
        workdir=bundle_name(launch.name),
        accelerators=f"{gpu.name}:{launch.gpus_per_node}" if gpu else None,
        cpus=f"{resources.cpus}+",
        memory=f"{resources.memory_gb}+" if resources.memory_gb else None,
        disk_size=resources.disk_gb,
        image=launch.image or default_image(),
        spot=launch.spot,
        placement={key: value for key, value in (
            *((key, getattr(sky, key)) for key in ("cloud", "region", "zone", "instance_type")),
            ("network_tier", network_tier)) if value},
        fabric_notes=fabric_notes,
        job_recovery=launch.retry.max_restarts if sky.managed and launch.retry.on_error else 0,
        labels=sky.labels,
        env={**job_env(spec, profile), **storage.extra_env(spec)},
        secrets=launch.secrets,
        file_mounts=storage.file_mounts(spec),
        volumes=storage.named_volumes(spec),
        setup="\n".join(install_commands(spec) or [
            "true  # ft installs on each node in run, from the shipped wheel" if wheel
            else "true  # the image has ft"]),
        run="\n".join(["set -euo pipefail", *checks, node_command(spec, NAME, shipped)]),
    )
    plan = ShipPlan(launch.name, "bundle", tuple(shipped), wheel, spec.effective_text,
                    spec_path_in_job(spec))
    return Rendered(NAME, {filename: text}, submit, notes, plan)


def _submit_argv(spec: Spec, filename: str) -> list[str]:
    options = [arg for name in spec.launch.secrets for arg in ("--secret", name)]
    # SkyPilot resolves the YAML's `workdir:` against the current directory, not the YAML's:
    # name the bundle beside the rendered file explicitly (the flag overrides the key).
    options += ["--workdir", f"{{dir}}/{bundle_name(spec.launch.name)}", "--yes",
                "--detach-run", f"{{dir}}/{filename}"]
    if spec.launch.skypilot.managed:
        # Detached: a managed launch otherwise streams the job's logs until it ends.
        return ["sky", "jobs", "launch", "--name", spec.launch.name, *options]
    return ["sky", "launch", "--cluster", spec.launch.name, *options]


def _retry_notes(spec: Spec, notes: list[str]) -> None:
    """Say which `launch.retry` fields SkyPilot cannot honour, instead of dropping them."""
    retry, managed = spec.launch.retry, spec.launch.skypilot.managed
    if retry.duration:
        notes.append("SkyPilot retries by count, not time: `launch.retry.duration` is not "
                     "enforced")
    if retry.on_error and not managed:
        notes.append("`launch.retry.on_error` needs a managed job on SkyPilot "
                     "(`launch.skypilot.managed: true`); this cluster job is not restarted")
