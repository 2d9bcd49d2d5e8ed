"""What `ft validate` and `ft launch` print about the data-parallel layout: the layout ft
chose where the spec leaves it open (orchestrator/spec/layout_fit.py), and for a job on
several nodes of GPUs the inter-node bytes per optimizer step of each layout that applies
(orchestrator/spec/internode_table.py)."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.spec.internode_table import table
from orchestrator.spec.layout_choice import apply_layout
from orchestrator.spec.layout_fit import spec_layouts
from orchestrator.spec.load import Spec
from orchestrator.spec.model_shapes import Found, find_shape
from trainer.torch_free.memory_estimate import count_params


def layout_report(spec: Spec) -> tuple[Spec, list[str]]:
    """The spec as it will train (the layout applied: its memory estimate is the one to
    print; the job itself still ships the spec as written, and `ft train` decides again
    from the same inputs), and the lines to print."""
    found = find_shape(spec.training)
    layout, with_liger = spec_layouts(spec, found)
    trained = replace(spec, training=apply_layout(spec.training, layout))
    lines = [layout.line] if layout else []
    if with_liger:
        lines.append(f"where liger-kernel is in the image (ft uses it on a GPU), its kernels "
                     f"change the choice: {with_liger.line}")
    return trained, lines + traffic_lines(spec, found)


def traffic_lines(spec: Spec, found: Found) -> list[str]:
    t, launch = spec.training, spec.launch
    if launch.nodes < 2 or launch.gpus_per_node < 1 or t.deepspeed:
        return []
    rows = table(t, found.shape, launch.nodes, launch.gpus_per_node)
    if not rows:
        return []
    if found.shape is None:
        what = "adapter parameter" if t.adapter else "model parameter"
        head = (f"inter-node traffic per optimizer step, out of each node (NCCL ring "
                f"estimate): bytes per {what}, the model's shape being unknown "
                f"({found.source})")
    else:
        billions = count_params(found.shape).total / 1e9
        head = (f"inter-node traffic per optimizer step, out of each node (NCCL ring "
                f"estimate, GB; {billions:.2f}B parameters, shape: {found.source})")
    return [head, *(f"  {row}" for row in rows)]
