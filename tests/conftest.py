"""Shared fixtures: the repo root, spec discovery, golden-file switch, backend validators."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tool_outputs.replay import fake  # noqa: F401
from tests.fixtures_tiny import tiny_model_dir, tiny_tokenizer  # noqa: F401
from tests.support.fixtures import dstack_validator, skypilot_validator  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="Rewrite tests/golden/ from the current renderer output.")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repo root so spec paths in headers are the short relative ones."""
    monkeypatch.chdir(REPO)
    return REPO
