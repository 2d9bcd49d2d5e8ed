"""The memory answers orchestrator/spec/layout_choice.py decides by, from the model's shape and
one GPU's memory, with the estimate `ft validate` prints (orchestrator/spec/memory_fit.py).

`ft validate` / `ft launch` call it with `launch.gpu`'s memory and the launch block's GPU
count; `ft train` with the same `launch.gpu` (or, unnamed, the GPU it runs on) and the ranks
torchrun started (orchestrator/cli/train_layout.py). Same spec, same GPUs, same answer: a job
requeued onto the same kind of nodes resumes in the layout its checkpoints were written in.

Kernels: `ft train` counts Liger's fused loss and RMSNorm where liger-kernel is installed and
a GPU trains (as trainer/kernels/plan.py turns them on); `ft validate`, which cannot see the
image, judges with the plain kernels and also says what Liger's would choose when that
differs. The same image on every restart gives the same answer.
"""

from __future__ import annotations

from orchestrator.spec.layout_choice import (
    DDP,
    HSDP,
    Fits,
    Layout,
    apply_layout,
    choose_layout,
    is_open,
)
from orchestrator.spec.load import Spec
from orchestrator.spec.memory_fit import GIB, evaluate, gpu_memory
from orchestrator.spec.model_shapes import Found
from trainer.torch_free.memory_estimate import Shape
from trainer.torch_free.training import TrainingConfig


def fits_for(t: TrainingConfig, shape: Shape | None, nodes: int, gpus_per_node: int,
             total_bytes: int | None, gpu_name: str, no_shape: str = "",
             liger: bool = False) -> Fits:
    """`no_shape`: why `shape` is None (said in the printed line). `liger`: Liger's kernels
    are there for ft to turn on (trainer/kernels/plan.py), so the estimate counts them where
    the spec does not turn them off."""
    if shape is None:
        return Fits(unjudged=f"no model shape ({no_shape})" if no_shape else "no model shape")
    if total_bytes is None:
        return Fits()
    world = nodes * gpus_per_node
    judged = f"{gpu_name}, {total_bytes / GIB:.1f} GiB"
    whole = whole_gib = None
    if t.adapter:
        # DDP pays where it fits with no more recomputed layers than the spec's own FSDP2
        # (a recomputed layer costs a third of its FLOPs, more than the all-gathers save).
        ddp = evaluate(shape, apply_layout(t, Layout(DDP, "")), 1, total_bytes, liger)
        sharded = evaluate(shape, t, world, total_bytes, liger)
        whole = ddp.fits and ddp.peak.checkpointed <= sharded.peak.checkpointed
        whole_gib = ddp.peak.total / GIB
    node = apply_layout(t, Layout(HSDP, "", dp_shard_size=gpus_per_node))
    node_shard = evaluate(shape, node, world, total_bytes, liger).fits \
        if nodes >= 2 and gpus_per_node >= 2 else None
    return Fits(whole=whole, node_shard=node_shard, judged_by=judged, whole_gib=whole_gib)


def layout_for(t: TrainingConfig, shape: Shape | None, nodes: int, gpus_per_node: int,
               total_bytes: int | None, gpu_name: str, no_shape: str = "",
               liger: bool = False) -> Layout | None:
    return choose_layout(t, nodes, gpus_per_node, fits_for(
        t, shape, nodes, gpus_per_node, total_bytes, gpu_name, no_shape, liger))


def spec_layouts(spec: Spec, found: Found) -> tuple[Layout | None, Layout | None]:
    """What `ft validate` / `ft launch` print: the layout with the plain kernels, and the one
    `ft train` chooses where liger-kernel is in the image, when that differs (None when it
    does not). From the launch block's GPUs (a CPU job runs one process per node),
    `launch.gpu`'s memory and the shape orchestrator/spec/model_shapes.py found."""
    t, launch = spec.training, spec.launch
    if not is_open(t):
        return None, None
    gpu = gpu_memory(launch.gpu)
    args = (t, found.shape, launch.nodes, max(launch.gpus_per_node, 1),
            gpu.total_bytes if gpu else None, gpu.name if gpu else "", found.source)
    plain, liger = layout_for(*args), layout_for(*args, liger=True)
    same = plain is None or liger is None or (plain.kind, plain.dp_shard_size) == \
        (liger.kind, liger.dp_shard_size)
    return plain, None if same else liger
