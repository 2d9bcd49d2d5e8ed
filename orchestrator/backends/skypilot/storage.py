"""What SkyPilot mounts, and what a multi-node SkyPilot job can share.

Facts from SkyPilot 0.14.1: bucket `file_mounts` take the URL schemes of
`sky/data/storage.py` `Storage._validate_source` (Azure is `https://ACCOUNT.blob.core.
windows.net/CONTAINER`, not az://), in mode MOUNT, MOUNT_CACHED or COPY; the two MOUNT modes
take a whole bucket, not a folder of it (except https:// and cos://). A bucket mount is the
same bucket on every node and outlives the cluster. COPY copies the bucket onto each node at
start and never writes back. Named `volumes` exist only on Kubernetes (a PVC; several nodes
need `access_mode: ReadWriteMany`, the default is ReadWriteOnce) and RunPod (network volumes)
(`sky/volumes/volume.py`): elsewhere the launch fails with VolumeNotFoundError.
"""

from __future__ import annotations

from orchestrator.backends.storage import (
    HOST_PATH,
    Mounted,
    emulated_output_problems,
    holding,
    keep_to,
    output_dir,
    output_holder,
    selector_problems,
    unshared_output,
    volumes_on,
)
from orchestrator.spec.load import Spec
from orchestrator.spec.problem_lines import located
from trainer.torch_free.errors import Problem

NAME = "skypilot"
STORES = ("s3", "gs", "https", "r2", "cos", "oci", "nebius", "cw", "vastdata", "hf")
SUBPATH_MOUNTABLE = ("https", "cos", "hf")  # the schemes MOUNT takes a folder of
VOLUME_CLOUDS = ("kubernetes", "runpod")
# Rank 0 waits this long for the other nodes' shards to appear in a MOUNT_CACHED bucket
# (uploaded after each rank's write returns) before it marks a checkpoint complete.
CACHED_VISIBILITY_WAIT_S = 900
VISIBILITY_WAIT = "FT_CHECKPOINT_VISIBILITY_WAIT_S"  # trainer/checkpoint/save.py
FIX = ("On SkyPilot, mount a bucket on every node (`launch.volumes: [{source: "
       "s3://my-checkpoints, path: /checkpoints}]`) and put `output_dir` under its path "
       "(e.g. /checkpoints/run1).")


def mode(spec: Spec, mounted: Mounted) -> str:
    """The bucket's mount mode: as given, else MOUNT_CACHED for the one holding `output_dir`
    (writes go to local disk and upload behind: checkpoints write at disk speed), else MOUNT."""
    if mounted.volume.mode:
        return mounted.volume.mode
    holder = holding(spec, NAME, output_dir(spec))
    return "mount_cached" if holder and holder.index == mounted.index else "mount"


def problems(spec: Spec) -> list[Problem]:
    found = selector_problems(spec)
    for mounted in volumes_on(spec, NAME):
        if mounted.volume.source:
            found += _bucket_problems(spec, mounted)
        else:
            found += _volume_problems(spec, mounted)
    found += _output_problems(spec)
    return located(spec, found)


def _bucket_problems(spec: Spec, mounted: Mounted) -> list[Problem]:
    source, key = mounted.volume.source or "", f"{mounted.key}.source"
    scheme = source.partition("://")[0].lower()
    if "://" not in source:
        return [Problem(key, "SkyPilot mounts object storage (s3://, gs://, ...) or named "
                        "volumes, not host paths; use a bucket URL or `name`"
                        f"{keep_to(HOST_PATH, NAME)}")]
    if scheme not in STORES:
        return [Problem(key, f"SkyPilot mounts no {scheme}:// storage; use one of "
                        f"{', '.join(s + '://' for s in STORES)} (Azure: https://ACCOUNT."
                        "blob.core.windows.net/CONTAINER)")]
    chosen = mode(spec, mounted)
    if chosen == "copy" or scheme in SUBPATH_MOUNTABLE:
        return []
    bucket, _, folder = source.partition("://")[2].partition("/")
    if folder.strip("/"):
        return [Problem(key, f"SkyPilot mounts a whole bucket in `mode: {chosen}`, not a "
                        f"folder of it; use `source: {scheme}://{bucket}` and put the folder "
                        "in `output_dir` (or `mode: copy`, which does not write back)")]
    return []


def _volume_problems(spec: Spec, mounted: Mounted) -> list[Problem]:
    found = []
    if mounted.volume.mode:
        found.append(Problem(f"{mounted.key}.mode", "`mode` is how SkyPilot mounts a bucket "
                             "(`source`); a named volume mounts as it is: remove it"))
    cloud = (spec.launch.skypilot.cloud or "").lower()
    if cloud not in VOLUME_CLOUDS:
        said = f"`launch.skypilot.cloud` is {cloud}" if cloud else \
            "`launch.skypilot.cloud` is not pinned"
        found.append(Problem(f"{mounted.key}.name", (
            f"SkyPilot volumes exist only on Kubernetes and RunPod, and {said}; use an "
            f"object-store bucket instead (`source: s3://my-bucket` in place of `name`, "
            f"mounted on every node), or pin `launch.skypilot.cloud: kubernetes` (or runpod)")))
    return found


def _output_problems(spec: Spec) -> list[Problem]:
    found, holder = output_holder(spec, NAME, relative_shared=False, fix=FIX)
    if holder is None:
        return found
    if holder.volume.source and mode(spec, holder) == "copy":
        return [unshared_output(spec, f"on {holder.key} in `mode: copy` (each node gets its "
                                "own copy of the bucket at start; writes never reach it)",
                                "Use `mode: mount_cached` (or mount) for the checkpoint bucket.")]
    return []


def emulated_problems(spec: Spec) -> list[Problem]:
    return emulated_output_problems(spec, NAME, relative_shared=False, fix=FIX)


def notes(spec: Spec) -> list[str]:
    found = []
    if spec.launch.nodes > 1 and (spec.launch.skypilot.cloud or "").lower() == "kubernetes":
        found += [f"{m.key}: the Kubernetes volume {m.volume.name} must have been created "
                  "with `access_mode: ReadWriteMany` for all nodes to mount it (SkyPilot's "
                  "default is ReadWriteOnce)"
                  for m in volumes_on(spec, NAME) if m.volume.name]
    return found


def file_mounts(spec: Spec) -> list[tuple[str, str, str]]:
    """(path, source, MODE) of each bucket mount."""
    return [(m.volume.path, m.volume.source or "", mode(spec, m).upper())
            for m in volumes_on(spec, NAME) if m.volume.source]


def named_volumes(spec: Spec) -> list[tuple[str, str]]:
    return [(m.volume.path, m.volume.name or "") for m in volumes_on(spec, NAME)
            if m.volume.name]


def extra_env(spec: Spec) -> dict[str, str]:
    """A longer visibility wait where the checkpoint bucket uploads behind the writes."""
    holder = holding(spec, NAME, output_dir(spec))
    if spec.launch.nodes < 2 or holder is None or not holder.volume.source or \
            mode(spec, holder) != "mount_cached" or VISIBILITY_WAIT in spec.launch.env:
        return {}
    return {VISIBILITY_WAIT: str(CACHED_VISIBILITY_WAIT_S)}
