"""Writing rendered files (atomically) and checking checked-in copies for staleness."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from trainer.torch_free.errors import UserError


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temp file beside `path` and rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(directory: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for name, text in files.items():
        path = directory / name
        write_atomic(path, text, 0o755 if text.startswith("#!") else 0o644)  # a script
        written.append(path)
    return written


def stale_files(directory: Path, files: dict[str, str]) -> list[str]:
    """Names of files whose checked-in copy is missing or differs from a fresh render."""
    stale = []
    for name, text in files.items():
        path = directory / name
        try:
            current = path.read_text()
        except FileNotFoundError:
            stale.append(f"{path} (missing)")
            continue
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc}") from None
        if current != text:
            stale.append(f"{path} (differs)")
    return stale
