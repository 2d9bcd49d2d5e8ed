"""Which dataset paths are local files: the trainer reads them from disk (never the hub), and
the orchestrator tells the user where a backend's container finds them. Torch-free, so both
sides share the one rule."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

BUILDER_OF_EXT = {
    ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv",
    ".arrow": "arrow", ".txt": "text",
}


def looks_local(path: str) -> bool:
    """A path that starts with `.`/`/`/`~` or ends with a data-file extension: a typo in it
    is a clear "not found", never a hub lookup."""
    return (path.startswith((".", "/", "~")) or PurePosixPath(path).suffix.lower()
            in BUILDER_OF_EXT or path.lower().endswith((".json.gz", ".jsonl.gz")))


def missing_local_dataset(path: str, base: Path) -> Path | None:
    """Where the trainer looks for dataset `path` and finds nothing; None when it is there, or
    when it is a hub dataset. Relative paths are relative to `base`, the directory the job
    runs in (as in Axolotl): the trainer passes its working directory, validation the
    directory `ft` runs in, which is where a local job runs and what a launched one ships."""
    local = base / Path(path).expanduser()
    if local.exists() or not looks_local(path):
        return None
    return local
