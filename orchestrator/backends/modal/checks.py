"""What Modal cannot run, found before anything is rendered (`ft validate --backend modal`).

Facts from Modal's GPU guide (modal.com/docs/guide/gpu) and modal 1.6.4's `modal.clustered`
docstring: the GPU types below, at most 8 GPUs per container (4 for A10), and a clustered
(multi-node) function must take all 8 GPUs of its host and cannot be CPU-only. A container
sees its image and Volumes only: outputs off every Volume are lost, and a local model or
dataset path must be readable there (inputs.py). A cluster profile or DeepSpeed file given
by path ships with the job, as on the other backends.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from orchestrator.backends.gpu_limits import Gpu, parse_gpu
from orchestrator.backends.modal.inputs import WORKDIR, input_problems
from orchestrator.backends.storage import (
    emulated_output_problems,
    mode_problems,
    selector_problems,
    volumes_on,
)
from orchestrator.spec.load import Spec
from orchestrator.spec.problem_lines import located
from trainer.torch_free.errors import Problem, SpecError

NAME = "modal"
FIX = ("Make it relative (it then lands on the job's own Volume, which every container "
       "mounts) or put it under the `path` of a `launch.volumes` entry with a `name`.")

# ft's GPU name (upper case) -> Modal's, for the types Modal offers. A100 alone is Modal's
# 40GB card; `A100:80GB` in the spec picks A100-80GB (see modal_gpu).
GPU_TYPES = {"T4": "T4", "L4": "L4", "A10": "A10", "A10G": "A10", "L40S": "L40S",
             "A100": "A100", "A100-40GB": "A100-40GB", "A100-80GB": "A100-80GB",
             "RTX-PRO-6000": "RTX-PRO-6000", "H100": "H100", "H200": "H200", "B200": "B200"}
MAX_GPUS = {"A10": 4}
MAX_GPUS_DEFAULT = 8
CLUSTER_GPUS = 8  # a clustered container takes every GPU of its host
A100_SIZES = {"40GB": "A100-40GB", "80GB": "A100-80GB"}
# modal/_utils/name_utils.py is_valid_object_name: what a Volume may be called.
OBJECT_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
APP_ID = re.compile(r"^ap-[a-zA-Z0-9]{22}$")


def modal_gpu(gpu: Gpu) -> tuple[str | None, str | None]:
    """(Modal's GPU type, None) or (None, why not)."""
    name = gpu.name.upper()
    if name not in GPU_TYPES:
        return None, (f"Modal offers no {gpu.name!r} GPU; use one of "
                      f"{', '.join(sorted(set(GPU_TYPES.values())))}")
    if name == "A100" and gpu.memory:
        if gpu.memory not in A100_SIZES:
            return None, "Modal's A100 comes with 40GB or 80GB: write A100:40GB or A100:80GB"
        return A100_SIZES[gpu.memory], None
    return GPU_TYPES[name], None


def problems(spec: Spec) -> list[Problem]:
    """Every reason Modal cannot run this spec, each naming its YAML path (and line) and
    the fix."""
    return located(spec, _gpu_problems(spec) + _volume_problems(spec) + input_problems(spec))


def storage_problems(spec: Spec) -> list[Problem]:
    return located(spec, _volume_problems(spec))


def emulated_storage_problems(spec: Spec) -> list[Problem]:
    """Relative paths land on the job's own Volume, which every container mounts."""
    return emulated_output_problems(spec, NAME, relative_shared=True, fix=FIX)


def check(spec: Spec) -> None:
    found = problems(spec)
    if found:
        raise SpecError(found, spec.source)


def _gpu_problems(spec: Spec) -> list[Problem]:
    launch = spec.launch
    found = []
    try:
        gpu = parse_gpu(spec, "modal", required=True)
    except SpecError as exc:
        return list(exc.problems)
    modal_type = None
    if gpu is not None:
        modal_type, why = modal_gpu(gpu)
        if why:
            found.append(Problem("launch.gpu", why))
    limit = MAX_GPUS.get(modal_type or "", MAX_GPUS_DEFAULT)
    if launch.gpus_per_node > limit:
        found.append(Problem("launch.gpus_per_node", f"a Modal container has at most {limit} "
                             f"GPUs{' of type ' + modal_type if modal_type in MAX_GPUS else ''}; "
                             "use more `launch.nodes` instead"))
    elif launch.nodes > 1 and launch.gpus_per_node != CLUSTER_GPUS:
        found.append(Problem("launch.gpus_per_node", f"a multi-node Modal job runs as a "
                             f"cluster whose every container takes all {CLUSTER_GPUS} GPUs of "
                             f"its host (got {launch.gpus_per_node}); set "
                             f"`gpus_per_node: {CLUSTER_GPUS}` or `nodes: 1`"))
    return found


def _volume_problems(spec: Spec) -> list[Problem]:
    found = selector_problems(spec) + mode_problems(spec, NAME, "Modal")
    for mounted in volumes_on(spec, NAME):
        volume, key = mounted.volume, mounted.key
        if volume.name and (not OBJECT_NAME.match(volume.name) or APP_ID.match(volume.name)):
            found.append(Problem(f"{key}.name", "a Modal Volume name has at most 64 letters, "
                                 "digits, dashes, dots and underscores"))
        if volume.source:
            found.append(Problem(f"{key}.source", "Modal mounts its own named Volumes, not "
                                 "host paths or bucket URLs; give `name` (a Modal Volume, "
                                 "created if missing) instead, or keep this entry to other "
                                 "backends with `backends: [...]`"))
    mounts = [PurePosixPath(WORKDIR), *(PurePosixPath(m.volume.path)
                                        for m in volumes_on(spec, NAME) if m.volume.name)]
    for key in ("output_dir", "dataset_prepared_path"):
        value = getattr(spec.training, key, None)
        path = PurePosixPath(value) if value else None
        if path and path.is_absolute() and not any(path.is_relative_to(m) for m in mounts):
            found.append(Problem(key, f"{value} is outside every Modal Volume, so it is lost "
                                 "when the container exits; " + FIX[0].lower() + FIX[1:]))
    return found
