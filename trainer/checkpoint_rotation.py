"""`save_total_limit`, applied by ft after a checkpoint is marked complete.

transformers rotates inside its save, before ft has confirmed the new checkpoint: with
`save_total_limit: 1`, a kill in that window leaves no complete checkpoint at all, and the
run silently starts over. Here the just-marked checkpoint is always kept and only older
marked ones beyond the limit go, so at every instant at least one complete checkpoint
exists. Checkpoints set aside as incomplete go too (they can never be resumed from and
may be what filled the disk), but only when a limit asks for bounded disk use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trainer.checkpoint import COMPLETE_MARKER, SET_ASIDE_PREFIX, complete_checkpoints


def rotate(output_dir: Path, limit: int | None, newest: Path) -> list[Path]:
    """Delete what `limit` no longer needs; returns the deleted paths. Never `newest`."""
    if not limit:
        return []
    older = [p for p in complete_checkpoints(output_dir) if p.name != newest.name]
    doomed = older[:max(0, len(older) - (limit - 1))]
    doomed += sorted(p for p in output_dir.iterdir()
                     if p.is_dir() and p.name.startswith(SET_ASIDE_PREFIX))
    for path in doomed:
        # Marker first: a kill half-way through leaves an unmarked directory, which the
        # next start sets aside, never a marked one with files missing.
        (path / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
    return doomed
