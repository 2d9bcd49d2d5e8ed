"""Decisions rank 0 takes for the whole job (the output_dir lease, which checkpoint to
resume, whether resuming it is allowed), shared with every rank.

A UserError on rank 0 alone would leave the other ranks waiting in the next collective
until the timeout; here every rank raises the same error at the same point, so the job
ends at once with one message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from trainer.torch_free.errors import UserError

T = TypeVar("T")


def decided_by_rank_zero(decide: Callable[[], T]) -> T:
    """`decide()` on rank 0; its result (or its UserError) on every rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return decide()
    box: list = [None]
    failure: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            box = [("ok", decide())]
        except UserError as exc:
            box, failure = [("user error", str(exc))], exc
        except BaseException as exc:
            box, failure = [("crash", f"{type(exc).__name__}: {exc}")], exc
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    kind, value = box[0]
    if kind == "user error":
        raise UserError(value)
    if kind == "crash":
        raise RuntimeError(f"rank 0 failed deciding for the job: {value}")
    return value
