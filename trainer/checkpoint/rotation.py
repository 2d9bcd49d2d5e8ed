"""`save_total_limit`, applied by ft after a checkpoint is marked complete.

transformers rotates inside its save, before ft has confirmed the new checkpoint: with
`save_total_limit: 1`, a kill in that window leaves no complete checkpoint at all, and the
run silently starts over. Here the just-marked checkpoint is always kept and only older
marked ones beyond the limit go, so at every instant at least one complete checkpoint
exists. Checkpoints set aside as incomplete go too (they can never be resumed from and
may be what filled the disk), but only when a limit asks for bounded disk use.

Rotation is housekeeping: a checkpoint it cannot delete (read-only, permission denied, a
busy mount) is named in a warning and left, and training goes on to its final model.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from trainer.checkpoint.resume import COMPLETE_MARKER, SET_ASIDE_PREFIX, complete_checkpoints

log = logging.getLogger("ft.checkpoint")


def rotate(output_dir: Path, limit: int | None, newest: Path,
           best: str | None = None) -> list[Path]:
    """Delete what `limit` no longer needs; returns the deleted paths. Never `newest`, nor
    `best` (the Trainer's best_model_checkpoint: `load_best_model_at_end` loads it)."""
    if not limit:
        return []
    kept = {newest.name} | ({Path(best).name} if best else set())
    older = [p for p in complete_checkpoints(output_dir) if p.name not in kept]
    room = max(0, limit - len(kept))  # the best one may take a place beyond the limit
    doomed = older[:max(0, len(older) - room)]
    doomed += sorted(p for p in output_dir.iterdir()
                     if p.is_dir() and p.name.startswith(SET_ASIDE_PREFIX))
    return [path for path in doomed if _delete(path)]


def _delete(path: Path) -> bool:
    """Delete one old checkpoint; False (with a warning) when it cannot be."""
    errors: list[str] = []
    try:
        # Marker first: a kill half-way through leaves an unmarked directory, which the
        # next start sets aside, never a marked one with files missing.
        (path / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(path, onerror=lambda _f, failed, info: errors.append(f"{failed}: {info[1]}"))
    except OSError as exc:
        errors.append(str(exc))
    if errors:
        log.warning("save_total_limit: could not delete %s (%s); left in place, training "
                    "goes on", path, errors[0])
        return False
    return True
