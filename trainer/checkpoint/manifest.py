"""What a complete checkpoint holds: every file with its size and a crc32, checked on resume.

A marker that only says "step N finished" trusts whatever is on disk later: a truncated
shard, a file lost with a node's disk, or a file that a crash left at its full size but
filled with zeros (delayed allocation on ext4/XFS: the rename reached the disk before the
data). Resume then crashes on the same checkpoint every retry. The manifest makes those
visible as a named reason, so resume can fall back to an older checkpoint.

Cost: crc32 over a whole file runs at about 1 GB/s on one core (README: measured here),
so a 70B full fine-tune's ~1 TB of sharded optimizer state would take rank 0 a quarter of
an hour per save. Small files (config, trainer state, RNG, scheduler, an adapter) are
checksummed whole; large ones by size plus the crc32 of their first and last MiB. Size
catches truncation and short writes; the two windows catch zero-filled and swapped files;
silent bit flips in the middle of a shard are the storage layer's job.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

WHOLE_FILE_LIMIT = 64 << 20  # checksum files up to this size completely
WINDOW = 1 << 20  # larger files: crc32 of the first and the last WINDOW bytes
_CHUNK = 8 << 20


def file_digest(path: Path) -> dict:
    """{"size", "crc32", "sampled"} of one file; sampled: only head and tail were read."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= WHOLE_FILE_LIMIT:
            crc = 0
            while chunk := handle.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
            return {"size": size, "crc32": f"{crc:08x}", "sampled": False}
        crc = zlib.crc32(handle.read(WINDOW))
        handle.seek(size - WINDOW)
        crc = zlib.crc32(handle.read(WINDOW), crc)
    return {"size": size, "crc32": f"{crc:08x}", "sampled": True}


def list_files(directory: Path, skip: frozenset[str] = frozenset(),
               recursive: bool = True) -> dict[str, int]:
    """{relative path: size} of the regular files under `directory`, leaving out the names in
    `skip` and ft's own temporaries (`.ft-*`; torch DCP's `.metadata` is a real file)."""
    found = {}
    for root, dirs, files in os.walk(directory):
        if not recursive:
            dirs.clear()
        for name in files:
            if name in skip or name.startswith(".ft-"):
                continue
            path = Path(root) / name
            found[path.relative_to(directory).as_posix()] = path.stat().st_size
    return found


def build_manifest(directory: Path, names: list[str]) -> dict[str, dict]:
    return {name: file_digest(directory / name) for name in sorted(names)}


def manifest_problem(directory: Path, manifest: dict[str, dict]) -> str | None:
    """Why `directory` no longer matches its manifest (first problem found), or None."""
    for name, recorded in sorted(manifest.items()):
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != recorded["size"]:
            return (f"{name} is {size} bytes, the marker recorded {recorded['size']} "
                    "(truncated or rewritten)")
        if file_digest(path)["crc32"] != recorded["crc32"]:
            return f"{name} has the recorded size but different content (crc32 mismatch)"
    return None


_CRC32 = re.compile(r"^[0-9a-f]{8}$")
_MARKER_KEYS = {"format", "step", "world_size", "files"}
_OPTIONAL_KEYS = {"trained_with"}  # trainer/checkpoint/resume_guard.py's record
_ENTRY_KEYS = {"size": int, "crc32": str, "sampled": bool}


def marker_shape_problem(marker: object, current_format: int) -> str | None:
    """Why a parsed marker is not exactly what ft writes, or None. Anything else (valid JSON
    of another shape, a hand edit, an older ft's step-only marker) cannot vouch for the
    checkpoint's files, so it is never trusted and never crashes the resume."""
    if not isinstance(marker, dict):
        return f"JSON {json.dumps(marker)[:40]}, not an object"
    if "format" not in marker:
        if "files" not in marker and "step" in marker:
            return ("format 1 (an older ft's step-only marker): no file list to check the "
                    "checkpoint against")
        return "missing format"
    if marker["format"] != current_format:
        return f"format {marker['format']!r}, expected {current_format}"
    keys = set(marker)
    if missing := sorted(_MARKER_KEYS - keys):
        return f"missing {', '.join(missing)}"
    if unknown := sorted(keys - _MARKER_KEYS - _OPTIONAL_KEYS):
        return f"unknown key(s) {', '.join(unknown)}"
    for key in ("step", "world_size"):
        if not _is_count(marker[key]):
            return f"`{key}` is {marker[key]!r}, not a non-negative integer"
    if "trained_with" in marker and not isinstance(marker["trained_with"], dict):
        return "`trained_with` is not an object"
    return _files_problem(marker["files"])


def _files_problem(files: object) -> str | None:
    if not isinstance(files, dict) or not files:
        return f"`files` is {files!r:.40}, not a non-empty object"
    for name, entry in files.items():
        if not name or not isinstance(entry, dict) or set(entry) != set(_ENTRY_KEYS):
            return f"`files` entry {name!r} is not {{size, crc32, sampled}}"
        wrong = [key for key, kind in _ENTRY_KEYS.items()
                 if not isinstance(entry[key], kind) or (kind is int and not _is_count(entry[key]))]
        if wrong or not _CRC32.match(entry["crc32"]):
            return f"`files` entry {name!r} has a malformed {', '.join(wrong) or 'crc32'}"
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
