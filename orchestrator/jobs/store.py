"""The state file: every job ft launched, so that status/logs/cancel need only a name or id.

It lives in the user's data dir (`$FT_STATE_DIR`, else `$XDG_DATA_HOME/ft`, else
`~/.local/share/ft`), is rewritten atomically (temp file + rename) under an flock, so two
`ft launch` running at once both land and a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from orchestrator.backends.job_model import JobRecord
from orchestrator.output_files import write_atomic
from trainer.torch_free.errors import UserError

STATE_FILE = "jobs.json"
FORMAT_VERSION = 1


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("FT_STATE_DIR"):
        return Path(environ["FT_STATE_DIR"])
    if environ.get("XDG_DATA_HOME"):
        return Path(environ["XDG_DATA_HOME"]) / "ft"
    return Path.home() / ".local" / "share" / "ft"


def state_path() -> Path:
    return state_dir() / STATE_FILE


def load_records() -> list[JobRecord]:
    """All remembered jobs, oldest first; no file yet means no jobs."""
    path = state_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserError(f"cannot read ft's job list {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        return [JobRecord.from_json(item) for item in data["jobs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"ft's job list {path} is damaged ({exc}); move it away to start a "
                        "new one (the jobs themselves are not affected)") from None


def add_record(record: JobRecord) -> None:
    with _locked():
        records = [r for r in load_records() if r.ref != record.ref]  # a reused id replaces
        _write([*records, record])


def _write(records: list[JobRecord]) -> None:
    data = {"version": FORMAT_VERSION, "jobs": [r.to_json() for r in records]}
    write_atomic(state_path(), json.dumps(data, indent=2) + "\n", 0o600)


@contextmanager
def _locked() -> Iterator[None]:
    directory = state_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / f"{STATE_FILE}.lock", "w")  # noqa: SIM115 (held below)
    except OSError as exc:
        raise UserError(f"cannot write ft's job list in {directory}: {exc.strerror}; "
                        "set FT_STATE_DIR to a writable directory") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def find_record(ref: str | None) -> JobRecord:
    """The job named by `ref`: BACKEND:ID, an id, or a job name (newest wins); None: newest."""
    records = load_records()
    if not records:
        raise UserError("ft has launched no jobs yet (from this user account); "
                        "start one with `ft launch SPEC --backend ...`")
    if ref is None:
        return records[-1]
    exact = [r for r in records if ref in (r.ref, r.job_id)]
    if len({r.ref for r in exact}) > 1:
        choices = ", ".join(sorted({r.ref for r in exact}))
        raise UserError(f"job {ref!r} is ambiguous: say which backend ({choices})")
    if exact:
        return exact[-1]
    by_name = [r for r in records if r.name == ref]
    if by_name:
        return by_name[-1]
    recent = ", ".join(r.ref for r in records[-5:])
    raise UserError(f"no job {ref!r} in ft's job list (recent: {recent}); "
                    "`ft list` shows them all")
