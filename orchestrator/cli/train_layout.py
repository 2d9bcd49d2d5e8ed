"""`ft train`'s share of the automatic layout (orchestrator/spec/layout_choice.py): decided
once at start, before the process group, the model or the Trainer exist, so DDP reaches
transformers as a spec without FSDP (its own DDP path) and HSDP as a spec with
`dp_shard_size`; nothing has been wrapped that would have to be undone.

Every rank decides alone, from inputs that are the same on every rank and on every restart
of the job: the spec, the ranks torchrun started (WORLD_SIZE, LOCAL_WORLD_SIZE), the GPU's
memory (`launch.gpu`'s figure, as `ft validate` judged it; unnamed, this machine's GPU), the
kernels the image has (Liger's, which the estimate counts where ft will turn them on) and
the model's config.json (read through transformers: a failure there raises on every rank
alike, never a silent difference). So a requeued job resumes in the layout its checkpoints
were written in.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.spec.layout_choice import Layout, apply_layout, is_open
from orchestrator.spec.layout_fit import layout_for
from orchestrator.spec.load import Spec
from orchestrator.spec.memory_fit import Gpu, gpu_memory
from trainer.torch_free.training import TrainingConfig


def settle_layout(spec: Spec, environ: Mapping[str, str]) -> tuple[TrainingConfig, Layout | None]:
    """The training config as this job trains it, and the layout ft chose (None: nothing to
    choose)."""
    t = spec.training
    world = int(environ.get("WORLD_SIZE", "1"))
    if not is_open(t) or world < 2:
        return t, None
    per_node = max(int(environ.get("LOCAL_WORLD_SIZE", str(world))), 1)
    gpu = gpu_memory(spec.launch.gpu) or _this_gpu(int(environ.get("LOCAL_RANK", "0")))
    layout = layout_for(t, _shape(t), max(world // per_node, 1), per_node,
                        gpu.total_bytes if gpu else None, gpu.name if gpu else "",
                        liger=_liger_here())
    return apply_layout(t, layout), layout


def _this_gpu(local_rank: int) -> Gpu | None:
    """This rank's own GPU, the one it will train on (a job's nodes have one kind of GPU)."""
    from trainer.distributed.this_gpu import this_gpu

    found = this_gpu(local_rank)
    return Gpu(*found) if found else None


def _liger_here() -> bool:
    """Liger's kernels will be on where the spec leaves them to ft, so the estimate counts
    them."""
    from trainer.distributed.this_gpu import liger_will_run

    return liger_will_run()


def _shape(t: TrainingConfig):
    from trainer.models.activation_memory import shape_of
    from trainer.models.source import load_config

    return shape_of(load_config(t))
