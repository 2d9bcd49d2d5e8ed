"""Shared fixtures: the repo root, spec discovery, golden-file switch, backend validators."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.tool_outputs.replay import fake  # noqa: F401
from tests.fixtures_tiny import tiny_lora_run, tiny_model_dir, tiny_tokenizer  # noqa: F401
from tests.support import run_order, validator_prep
from tests.support.fixtures import (  # noqa: F401
    dstack_server_python,
    dstack_validator,
    skypilot_validator,
)

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="Rewrite tests/golden/ from the current renderer output.")


def pytest_configure(config: pytest.Config) -> None:
    # One OpenMP thread for torch here and in every `ft` the tests start (they inherit it),
    # as the tiny example's launch.env gives its ranks. torch's default, a thread per core,
    # made each `ft train` spin against the other xdist worker's threads on a 2-core machine
    # (measured under load: 32 s of train_runtime for 8 tiny steps, 2 s with one thread).
    # Before collection, i.e. before any test module imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_order.disable_xdist_reorder(config)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under `-p no:xdist`
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    return run_order.auto_workers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if validator_prep.is_xdist_worker(config):  # what the workers collect is the run's order
        run_order.longest_files_first(items)
    validator_prep.run_validator_tests_last(items)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist (`-n`), the controller builds the validators' venvs and says so on
    the terminal (workers have none); the workers' fixtures wait on the venv's lock. Here,
    not at configure time: only now are xdist's scheduler and the terminal registered."""
    config = session.config
    if validator_prep.is_xdist_controller(config) and not config.option.collectonly:
        validator_prep.start(list(validator_prep.FIXTURE_PINS.values()),
                             validator_prep.terminal_say(config), announce_done=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the backend validators' venvs while the other tests run (see validator_prep)."""
    if session.config.option.collectonly or validator_prep.is_xdist_worker(session.config):
        return
    validator_prep.start(validator_prep.pins_needed(session.items),
                         validator_prep.terminal_say(session.config))


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repo root so spec paths in headers are the short relative ones."""
    monkeypatch.chdir(REPO)
    return REPO
