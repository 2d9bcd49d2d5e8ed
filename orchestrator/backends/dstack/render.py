"""dstack: a multi-node `type: task` whose every node runs `ft node`."""

from __future__ import annotations

from orchestrator.backends.base import Rendered
from orchestrator.backends.dstack import storage
from orchestrator.backends.fabric_cloud import check_fabric_on_clouds, efa_image_notes
from orchestrator.backends.gpu_limits import parse_gpu
from orchestrator.backends.node_resources import NodeResources, node_resources
from orchestrator.backends.node_steps import (
    default_image,
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
from orchestrator.shipping.job_files import JobFile, job_files
from orchestrator.shipping.layout import ShipPlan, bundle_name, job_prefix
from orchestrator.spec.launch_schema import duration_seconds
from orchestrator.spec.load import Spec
from orchestrator.templating import render_template
from trainer.torch_free.errors import SpecError

NAME = "dstack"
# Facts of the default image (NGC PyTorch runs as root; its x86_64 build), stated so that
# the dstack server plans the run without fetching the image's config from the registry
# (it does that for any custom image whose `user` or CPU architecture is unset). An ARM
# cluster (GH200) names its image in `launch.image`, which renders neither.
DEFAULT_IMAGE_USER = "root"
# What dstack itself does about EFA's libraries (said in the aws-efa profile's image note).
EFA_OWN_IMAGE = ("; dstack adds them only to its own default image (dstackai/base, which it "
                 "swaps for the `-devel-efa` variant on EFA instances), not to an image the "
                 "task names")
DEFAULT_IMAGE_ARCH = "x86"


def render(spec: Spec) -> Rendered:
    launch = spec.launch
    problems = storage.problems(spec)
    if problems:
        raise SpecError(problems, spec.source)
    notes: list[str] = storage.notes(spec)
    profile = profile_for(spec)
    resources = node_resources(spec)
    check_fabric_on_clouds(spec, profile, launch.dstack.backends, "launch.dstack.backends")
    notes += efa_image_notes(spec, profile, EFA_OWN_IMAGE)
    filename = f"{launch.name}.dstack.yml"
    submit = ["dstack", "apply", "-f", f"{{dir}}/{filename}", "-y", "-d"]
    shipped = job_files(spec, absolute_ok=False)
    wheel = install_method(spec) == "wheel"
    text = render_template(
        "dstack.task.yml.j2",
        header=job_header(spec, NAME, shipped),
        bundle=bundle_name(launch.name),
        files=_file_mappings(spec, shipped, wheel),
        submit=shown_submit(submit),
        explicit_command=explicit_launch(spec, NAME),
        name=launch.name,
        nodes=launch.nodes,
        image=launch.image or default_image(),
        privileged=profile.dstack_privileged,
        env=job_env(spec, profile),
        secrets=launch.secrets,
        commands=[*pre_node_commands(spec), node_command(spec, NAME, shipped)],
        gpu=_gpu(spec),
        user=DEFAULT_IMAGE_USER if launch.image is None else None,
        cpu=_cpu(spec, resources),
        memory=f"{resources.memory_gb}GB.." if resources.memory_gb else None,
        shm_size=f"{resources.shm_gb}GB",
        disk=f"{resources.disk_gb}GB..",
        volumes=storage.mounts(spec),
        spot_policy="spot" if launch.spot else "on-demand",
        retry_events=_retry_events(spec, notes),
        retry_duration=launch.retry.duration,
        max_duration=launch.max_duration,
        # dstack's graceful-stop window: the ranks' grace plus a minute for ft node.
        stop_duration=f"{duration_seconds(launch.stop_grace) + 60}s",
        placement={key: value for key, value in (
            ("fleets", launch.dstack.fleets), ("backends", launch.dstack.backends),
            ("regions", launch.dstack.regions)) if value},
    )
    if launch.dstack.reservation:
        notes.append("`launch.dstack.reservation` is not rendered by this ft version")
    plan = ShipPlan(launch.name, "bundle", tuple(shipped), wheel, spec.effective_text,
                    spec_path_in_job(spec))
    return Rendered(NAME, {filename: text}, submit, notes, plan)


def _file_mappings(spec: Spec, shipped: list[JobFile], wheel: bool) -> list[str]:
    """`local:container` pairs for dstack's `files:`: local paths are relative to the rendered
    file (the bundle beside it), container paths to the job's working directory."""
    bundle = bundle_name(spec.launch.name)
    paths = [spec_path_in_job(spec), *([job_prefix(spec.launch.name)] if wheel else []),
             *(f.path for f in shipped)]
    return [f"{bundle}/{path}:{path}" for path in paths]


def _cpu(spec: Spec, resources: NodeResources) -> str:
    count = f"{resources.cpus}.."
    return count if spec.launch.image is not None else f"{DEFAULT_IMAGE_ARCH}:{count}"


def _gpu(spec: Spec) -> str | None:
    gpu = parse_gpu(spec, NAME, required=True)
    if gpu is None:
        return None
    parts = [gpu.name] + ([gpu.memory] if gpu.memory else []) + [str(spec.launch.gpus_per_node)]
    return ":".join(parts)


def _retry_events(spec: Spec, notes: list[str]) -> list[str]:
    # `interruption` for on-demand too: dstack also counts a lost instance as one, and an
    # on_preemption the user asked for must never plan as "Retry policy off".
    retry = spec.launch.retry
    events = (["interruption"] if retry.on_preemption else []) + \
        (["error"] if retry.on_error else [])
    if "max_restarts" in retry.model_fields_set:
        notes.append("dstack retries for `launch.retry.duration`, not a count: "
                     "`launch.retry.max_restarts` is ignored")
    return events
