"""A resume that changes what its checkpoint was trained with is refused, naming each
field, before the data or the model is loaded; `--override` resumes with the new values,
and the new learning rate is the one really used (it used to be the saved scheduler's)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import yaml

from tests.cli_runner import run_ft
from tests.train_helpers import TINY_DATA, train_losses, write_tiny_spec
from trainer.checkpoint.output_lease import LEASE_FILE
from trainer.checkpoint.resume import COMPLETE_MARKER, checkpoint_problem


def _lr_by_step(out) -> dict[int, float]:
    history = json.loads((out / "ft-train-summary.json").read_text())["log_history"]
    return {entry["step"]: entry["learning_rate"] for entry in history if "loss" in entry}


def test_a_changed_spec_is_refused_by_field_and_override_applies_the_new_values(
        tmp_path, tiny_model_dir):
    data = tmp_path / "alpaca.jsonl"
    shutil.copy(TINY_DATA / "alpaca.jsonl", data)
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=4, save_steps=2,
                           eval_steps=100, lr_scheduler="constant", learning_rate=0.02,
                           save_total_limit=None,
                           datasets=[{"path": str(data), "type": "alpaca"}])
    first = run_ft("train", str(spec))
    assert first.returncode == 0, first.stderr[-3000:]
    out, prepared = tmp_path / "out", tmp_path / "prepared"
    recorded = json.loads((out / "checkpoint-4" / COMPLETE_MARKER).read_text())["trained_with"]
    assert recorded["learning_rate"] == 0.02 and recorded["global_batch_size"] == 4
    assert set(_lr_by_step(out).values()) == {0.02}

    # Train on to step 8 (a constant schedule: a longer run is no change) with a smaller
    # micro batch, half the learning rate and a data file that lost its last row.
    edited = yaml.safe_load(spec.read_text())
    edited.update(max_steps=8, micro_batch_size=2, learning_rate=0.01)
    spec.write_text(yaml.safe_dump(edited, sort_keys=False))
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))
    cache_before = sorted(p.name for p in prepared.iterdir())
    refused = run_ft("train", str(spec))
    assert refused.returncode == 2, refused.stderr[-3000:]
    said = refused.stderr
    assert f"resuming from {out / 'checkpoint-4'} would change what it was trained with:" in said
    for line in ("  micro_batch_size: 4 -> 2", "  learning_rate: 0.02 -> 0.01",
                 "  global_batch_size: 4 -> 2", "  datasets[0].content: \""):
        assert line in said, (line, said[-3000:])
    assert "max_steps" not in said and "Traceback" not in said
    assert "new directory" in said and "ft train --override" in said
    # Refused before the data was prepared (the new file would be a new cache entry).
    assert sorted(p.name for p in prepared.iterdir()) == cache_before
    assert checkpoint_problem(out / "checkpoint-4") is None and not (out / "checkpoint-6").exists()
    assert not (out / LEASE_FILE).exists(), "a run that failed kept output_dir's lease"

    resumed = run_ft("train", str(spec), "--override")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "with --override: the new values apply from here on" in resumed.stderr
    assert "  learning_rate: 0.02 -> 0.01" in resumed.stderr
    rates = _lr_by_step(out)  # steps 1-4 come from the checkpoint's own history
    assert sorted(rates) == list(range(1, 9)) and sorted(train_losses(out)) == list(range(1, 9))
    assert [rates[step] for step in range(1, 9)] == pytest.approx([0.02] * 4 + [0.01] * 4)
    marker = json.loads((out / "checkpoint-8" / COMPLETE_MARKER).read_text())
    assert marker["trained_with"]["learning_rate"] == 0.01
    assert marker["trained_with"]["micro_batch_size"] == 2


def _cfg(tmp_path, **changes):
    from orchestrator.spec.load import load_spec

    spec = write_tiny_spec(tmp_path, tmp_path / "model", **changes)
    return load_spec(spec).training


def test_what_is_recorded_and_what_counts_as_a_change(tmp_path, caplog):
    """A run's length counts only where the schedule depends on it; a checkpoint without a
    record resumes, said to be unchecked."""
    from trainer.checkpoint.resume_guard import changes, check_resume, trained_with

    cosine = trained_with(_cfg(tmp_path, lr_scheduler="cosine", max_steps=8), 2)
    assert cosine["max_steps"] == 8 and cosine["global_batch_size"] == 8
    longer = trained_with(_cfg(tmp_path, lr_scheduler="cosine", max_steps=16), 2)
    assert changes(cosine, longer) == [("max_steps", 8, 16)]
    steady = trained_with(_cfg(tmp_path, lr_scheduler="constant", max_steps=8), 1)
    assert "max_steps" not in steady and "num_epochs" not in steady
    assert steady == trained_with(_cfg(tmp_path, lr_scheduler="constant", max_steps=16), 1)
    with caplog.at_level(logging.WARNING, logger="ft.checkpoint"):
        assert check_resume(tmp_path, {"step": 4}, steady, override=False) == {}
    assert "records nothing about the spec it was trained with" in caplog.text
