"""Which dataset paths are local files: the trainer reads them from disk (never the hub), and
the orchestrator tells the user where a backend's container finds them. Torch-free, so both
sides share the one rule."""

from __future__ import annotations

from pathlib import PurePosixPath

BUILDER_OF_EXT = {
    ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv",
    ".arrow": "arrow", ".txt": "text",
}


def looks_local(path: str) -> bool:
    """A path that starts with `.`/`/`/`~` or ends with a data-file extension: a typo in it
    is a clear "not found", never a hub lookup."""
    return (path.startswith((".", "/", "~")) or PurePosixPath(path).suffix.lower()
            in BUILDER_OF_EXT or path.lower().endswith((".json.gz", ".jsonl.gz")))
