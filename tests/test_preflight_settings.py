"""`launch.preflight`: on by default, `true`/`false` or settings, and a bad value is named with
its YAML path and line like every other key."""

from __future__ import annotations

import json
import textwrap

import pytest

from orchestrator.spec.load import parse_spec
from trainer.torch_free.errors import SpecError
from trainer.torch_free.preflight_settings import PREFLIGHT_ENV, Preflight

BASE = """\
base_model: ./model
datasets:
  - path: data.jsonl
    type: alpaca
launch:
  nodes: 2
"""


def _launch(text: str):
    return parse_spec(textwrap.dedent(BASE + text), "spec.yaml", for_launch=True).launch


def test_on_by_default_and_its_settings_reach_the_ranks():
    settings = _launch("").preflight
    assert settings.enabled and settings.checkpoint_rehearsal
    assert Preflight.model_validate(json.loads(settings.env()[PREFLIGHT_ENV])) == settings


@pytest.mark.parametrize("value, enabled", [("false", False), ("true", True)])
def test_a_bool_turns_it_off_or_on(value, enabled):
    settings = _launch(f"  preflight: {value}\n").preflight
    assert settings.enabled is enabled
    assert bool(settings.env()) is enabled  # off: the ranks are told nothing, run nothing


@pytest.mark.parametrize("value, words", [
    ("2s", "`storage_window: 2s` is too short; use at least 5s"),
    ("soon", "`storage_window: soon` is not a duration"),
])
def test_a_bad_storage_window_is_named_with_its_path_and_line(value, words):
    with pytest.raises(SpecError) as info:
        _launch(f"  preflight:\n    storage_window: {value}\n")
    (problem,) = info.value.problems
    assert problem.path == "launch.preflight.storage_window" and problem.line == 8
    assert words in problem.message


def test_an_unknown_setting_is_refused_not_ignored():
    with pytest.raises(SpecError) as info:
        _launch("  preflight:\n    gpu_fractoin: 0.5\n")
    assert [p.path for p in info.value.problems] == ["launch.preflight.gpu_fractoin"]
