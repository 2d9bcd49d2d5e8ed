"""Prepare the backend validators' venvs in the background, and say so on the terminal.

A cold `.cache/validators/` costs minutes of pip. Left to the first fixture that needs a
venv, that time was silent and blocked the run near its start; instead, right after
collection, conftest starts one background thread that builds the missing venvs, moves
the tests that need them to the end of the run, and the fixtures only wait, printing what
they wait for (through pytest's terminal, past output capture).

Under pytest-xdist the controller process builds them (it owns the terminal; it collects
no tests, so it builds every pin) and announces each when ready; a worker's fixture finds
the venv ready or waits on its build lock (backend_validators.ensure_venv).

One thread, the venvs one after the other: on a 2-core machine two pip installs at once
took no less time (measured back to back: 232 s in parallel, 218 s in sequence), and a
single build leaves more CPU to the tests running meanwhile.
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
FIXTURE_PINS = {"dstack_validator": bv.DSTACK_PIN, "skypilot_validator": bv.SKYPILOT_PIN,
                "dstack_server_python": bv.DSTACK_SERVER_PIN}
HEARTBEAT_S = 15.0


@dataclass
class _Build:
    pin: str
    queued: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    python: Path | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    announced: bool = False

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            self.python = bv.ensure_venv(self.pin)
        except BaseException as exc:  # re-raised in the test that needs this venv
            self.error = exc
        self.finished = time.monotonic()
        self.done.set()

    def outcome(self) -> str:
        state = "failed" if self.error else "ready"
        return f"{self.pin} validator venv {state}: pip took {self.finished - self.started:.0f} s"


_builds: dict[str, _Build] = {}


def pins_needed(items: Iterable[pytest.Item]) -> list[str]:
    names = {name for item in items for name in getattr(item, "fixturenames", ())}
    return sorted({pin for fixture, pin in FIXTURE_PINS.items() if fixture in names})


def run_validator_tests_last(items: list[pytest.Item]) -> None:
    """Stable reorder: tests using a validator go last, so their venvs build meanwhile."""
    items.sort(key=lambda item: bool(set(getattr(item, "fixturenames", ())) & FIXTURE_PINS.keys()))


def is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def start(pins: Iterable[str], say: Callable[[str], None], announce_done: bool = False) -> None:
    """Build every venv that is not ready yet, in order, in one background thread
    (announce_done: say each one's outcome when it is built, for a process whose tests do
    not wait on it, i.e. the xdist controller)."""
    queue = [_Build(pin) for pin in pins if not bv.is_ready(pin) and pin not in _builds]
    if not queue:
        return
    say(f"building backend validator venvs in the background: "
        f"{', '.join(build.pin for build in queue)} -> {bv.cache_root()} "
        f"(first run only; their tests run last)")
    _builds.update((build.pin, build) for build in queue)
    threading.Thread(target=_run_in_order, args=(queue, say if announce_done else None),
                     name="validator venvs", daemon=True).start()


def _run_in_order(queue: list[_Build], say: Callable[[str], None] | None) -> None:
    for build in queue:
        build.run()
        if say is not None:
            build.announced = True
            say(build.outcome())


def wait(pin: str, say: Callable[[str], None]) -> Path:
    """The venv's python, once built; prints while it waits so a cold run is never silent."""
    build = _builds.get(pin)
    if build is None:  # not started at collection (e.g. the fixture was used indirectly)
        if bv.is_ready(pin):
            return bv.ensure_venv(pin)
        start([pin], say)
        build = _builds[pin]
    if not build.done.is_set():
        say(f"waiting for the {pin} validator venv ({_progress(build)})")
        while not build.done.wait(HEARTBEAT_S):
            say(f"  ... still waiting for {pin}: {_progress(build)}")
    if not build.announced:
        build.announced = True
        say(build.outcome())
    if build.error is not None:
        raise build.error
    assert build.python is not None
    return build.python


def _progress(build: _Build) -> str:
    if build.started is None:
        return f"queued {time.monotonic() - build.queued:.0f} s ago behind the other venv"
    return f"pip install running for {time.monotonic() - build.started:.0f} s"


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
