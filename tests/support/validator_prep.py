"""Prepare the backend validators' venvs in the background, and say so on the terminal.

A cold `.cache/validators/` costs minutes of pip (mostly waiting on the package index, so
two installs overlap well). Left to the first fixture that needs a venv, that time is
silent and serial; instead, right after collection, conftest starts one thread per
missing venv, moves the tests that need them to the end of the run, and the fixtures only
wait, printing what they wait for (through pytest's terminal, past output capture).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import backend_validators as bv

# Which fixture needs which venv.
FIXTURE_PINS = {"dstack_validator": bv.DSTACK_PIN, "skypilot_validator": bv.SKYPILOT_PIN}
HEARTBEAT_S = 15.0


@dataclass
class _Build:
    pin: str
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    python: Path | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    announced: bool = False

    def run(self) -> None:
        try:
            self.python = bv.ensure_venv(self.pin)
        except BaseException as exc:  # re-raised in the test that needs this venv
            self.error = exc
        self.finished = time.monotonic()


_builds: dict[str, _Build] = {}


def pins_needed(items: Iterable[pytest.Item]) -> list[str]:
    names = {name for item in items for name in getattr(item, "fixturenames", ())}
    return sorted({pin for fixture, pin in FIXTURE_PINS.items() if fixture in names})


def run_validator_tests_last(items: list[pytest.Item]) -> None:
    """Stable reorder: tests using a validator go last, so their venvs build meanwhile."""
    items.sort(key=lambda item: bool(set(getattr(item, "fixturenames", ())) & FIXTURE_PINS.keys()))


def start(pins: Iterable[str], say: Callable[[str], None]) -> None:
    """One background build per venv that is not ready yet."""
    missing = [pin for pin in pins if not bv.is_ready(pin) and pin not in _builds]
    if not missing:
        return
    say(f"preparing backend validators in the background: {', '.join(missing)} -> "
        f"{bv.cache_root()} (first run only; their tests run last)")
    for pin in missing:
        build = _Build(pin)
        build.thread = threading.Thread(target=build.run, name=f"venv {pin}", daemon=True)
        _builds[pin] = build
        build.thread.start()


def wait(pin: str, say: Callable[[str], None]) -> Path:
    """The venv's python, once built; prints while it waits so a cold run is never silent."""
    build = _builds.get(pin)
    if build is None:  # not started at collection (e.g. the fixture was used indirectly)
        if bv.is_ready(pin):
            return bv.ensure_venv(pin)
        start([pin], say)
        build = _builds[pin]
    assert build.thread is not None
    if build.thread.is_alive():
        say(f"waiting for the {pin} validator venv (pip install, "
            f"{time.monotonic() - build.started:.0f} s so far)")
        while build.thread.is_alive():
            build.thread.join(HEARTBEAT_S)
            if build.thread.is_alive():
                say(f"  ... still installing {pin}: {time.monotonic() - build.started:.0f} s")
    if not build.announced:
        build.announced = True
        outcome = "failed" if build.error else "ready"
        say(f"{pin} validator venv {outcome}: built in {build.finished - build.started:.0f} s")
    if build.error is not None:
        raise build.error
    assert build.python is not None
    return build.python


def terminal_say(config: pytest.Config) -> Callable[[str], None]:
    """A line on the terminal, even from inside a test's captured output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def say(message: str) -> None:
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[ft tests] {message}", flush=True)

    return say
