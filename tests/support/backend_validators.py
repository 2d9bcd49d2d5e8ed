"""Validate rendered launch files with the backends' own parsers.

dstack and SkyPilot pin dependencies (pydantic, etc.) that conflict with ours, so each is
installed into its own virtualenv, built on first use and cached under ``.cache/validators``
(override with ``FT_VALIDATOR_CACHE``). All files for one backend are checked in a single
child process because ``import sky`` alone takes seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DSTACK_PIN = "dstack==0.22.5"
# `dstack server` (SQLite, no compute) to plan ft's tasks for real; its own venv: the
# server extra pulls a web stack the parser-only venv does not need.
DSTACK_SERVER_PIN = "dstack[server]==0.22.5"
# What a pin's own requirements leave open and a later release broke. sentry-sdk 3.0 (on
# the index since 2026-12-07) dropped `start_transaction`, which dstack 0.22.5's server wraps
# every background task in: its runs never leave `submitted`, so the server tests waited out.
COMPANIONS: dict[str, tuple[str, ...]] = {DSTACK_SERVER_PIN: ("sentry-sdk<3",)}
SKYPILOT_PIN = "skypilot==0.14.1"

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_SCRIPT = Path(__file__).with_name("_validate_in_venv.py")
# Written last into a finished venv: a directory without it is never trusted.
MARKER = ".ft-validator-ready"
# Interpreter the venvs are built from; the backends support 3.10/3.11.
BASE_PYTHON = os.environ.get("FT_VALIDATOR_PYTHON", "python3")


@dataclass(frozen=True)
class ValidationResult:
    """Outcome for one file: ``error`` is None when the parser accepted it."""

    error: str | None
    parsed: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def cache_root() -> Path:
    env = os.environ.get("FT_VALIDATOR_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "validators"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_dir(pin: str) -> Path:
    # `dstack[server]==0.22.5` -> dstack-server-0.22.5: brackets in the venv's path break
    # dstack's server, whose log lines are rich markup.
    # A companion changes what is installed, so it is part of the venv's name: a venv built
    # before the companion was added is not reused.
    extra = "".join(f"-{c.replace('<', '-lt').replace('>', '-gt').replace('=', '')}"
                    for c in COMPANIONS.get(pin, ()))
    return cache_root() / (pin.replace("==", "-").replace("[", "-").replace("]", "") + extra)


def is_ready(pin: str) -> bool:
    """Built and complete (the marker is written last)."""
    return (_venv_dir(pin) / MARKER).is_file()


def ensure_venv(pin: str) -> Path:
    """Return the python of a venv with ``pin`` installed, building it if needed.

    Safe under concurrent callers (pytest-xdist workers, parallel CI jobs): an exclusive
    flock serialises builders, the venv is built in a temp dir and renamed into place only
    after the marker is written, so a half-installed venv is never visible at the final path.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = _venv_dir(pin)
    name = final.name
    if (final / MARKER).is_file():  # fast path, no lock needed
        return _venv_python(final)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if (final / MARKER).is_file():  # another process finished it while we waited
            return _venv_python(final)
        if final.exists():  # leftover without marker: not trusted
            shutil.rmtree(final)
        # We hold the lock, so any temp dir for this pin is from a killed builder.
        for stale in root.glob(f"{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it 0700; a shared CI cache must stay readable
        try:
            _build(tmp, pin)
            (tmp / MARKER).write_text(pin + "\n")
            # Same filesystem, so rename is atomic. A venv's python locates its
            # site-packages from pyvenv.cfg next to the binary, so moving it is fine
            # (only bin/ console scripts keep the old path, and we never use them).
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _venv_python(final)


def _build(venv: Path, pin: str) -> None:
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True)
    py = str(_venv_python(venv))
    # pyyaml is a dependency of both backends; named explicitly because the child uses it.
    # --prefer-binary: an sdist newer than the newest wheel would otherwise be built here.
    cmd = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--prefer-binary",
           pin, *COMPANIONS.get(pin, ()), "pyyaml"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {pin} failed:\n{proc.stdout}\n{proc.stderr}")


def _child_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        # Both tools create config/state dirs under ~ on import; keep the user's home clean.
        HOME=home,
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        # No telemetry / update checks: the tests must work offline.
        SKYPILOT_DISABLE_USAGE_COLLECTION="1",
        SKYPILOT_DEBUG="0",
        DSTACK_CLI_DISABLE_UPDATE_CHECK="1",
        DO_NOT_TRACK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _run_child(pin: str, backend: str, texts: dict[str, str]) -> dict[str, ValidationResult]:
    if not texts:
        return {}
    python = ensure_venv(pin)
    with tempfile.TemporaryDirectory(prefix="ft-validator-home-") as home:
        proc = subprocess.run(
            [str(python), str(CHILD_SCRIPT), backend],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            env=_child_env(home),
            cwd=home,  # SkyPilot resolves relative workdir/file_mounts against cwd
            timeout=300,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} validator crashed (rc={proc.returncode}):\n{proc.stderr}")
    raw = json.loads(proc.stdout)
    return {label: ValidationResult(r["error"], r["parsed"]) for label, r in raw.items()}


def validate_dstack(texts: dict[str, str]) -> dict[str, ValidationResult]:
    """{label: yaml} -> {label: result}; ``parsed`` is the configuration's JSON dump."""
    return _run_child(DSTACK_PIN, "dstack", texts)


def validate_skypilot(texts: dict[str, str]) -> dict[str, ValidationResult]:
    """{label: yaml} -> {label: result}; ``parsed`` summarises the resulting sky.Task."""
    return _run_child(SKYPILOT_PIN, "skypilot", texts)


def validate_skypilot_as_server(texts: dict[str, str]) -> dict[str, ValidationResult]:
    """Like validate_skypilot, with the API server's strict check of a task's `config:`."""
    return _run_child(SKYPILOT_PIN, "skypilot-server", texts)
