"""The same W&B / MLflow run across restarts of one job: the id is derived from the job.

What is tested: the derivation, the variables the transformers callbacks read
(WANDB_RUN_ID/WANDB_RESUME, MLFLOW_RUN_ID), that the Trainer's report_to names the trackers
the spec asks for and, where wandb is installed, a real restart in W&B's offline mode.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from orchestrator import backends
from orchestrator.node.job_id import job_id_env
from tests.cli_runner import run_ft
from tests.fixtures_tiny import make_cfg
from tests.support import kill_before_mark
from tests.train_helpers import write_tiny_spec
from trainer.loop.run_identity import RECORD, job_identity, tracking_env, tracking_run_id

DATA = [{"path": "x.jsonl", "type": "alpaca"}]


def _cfg(tmp_path, **fields):
    return make_cfg(tmp_path / "model", DATA, output_dir=str(tmp_path / "out"), **fields)


def _rank_env(backend: str, **variables: str) -> dict[str, str]:
    """A rank's environment in a job of `backend` that sets `variables`: those, plus the
    job id `ft node` exports from them (orchestrator/node/job_id.py, the real code)."""
    return {**variables, **job_id_env(backends.get(backend), variables)}


def test_a_requeued_slurm_job_keeps_its_run_and_a_new_job_gets_a_new_one(tmp_path):
    cfg = _cfg(tmp_path, wandb_project="ft")
    first = _rank_env("slurm", SLURM_JOB_ID="4242", SLURM_RESTART_COUNT="0")
    requeued = _rank_env("slurm", SLURM_JOB_ID="4242", SLURM_RESTART_COUNT="1")
    assert tracking_run_id(cfg, first) == tracking_run_id(cfg, requeued)
    assert tracking_run_id(cfg, first) != tracking_run_id(cfg, _rank_env("slurm",
                                                                         SLURM_JOB_ID="4243"))


def test_each_backend_names_the_job_by_its_restart_surviving_variable():
    assert job_identity(_rank_env("dstack", DSTACK_RUN_NAME="tiny-1")) == \
        "DSTACK_RUN_NAME=tiny-1"
    assert job_identity(_rank_env("skypilot", SKYPILOT_TASK_ID="sky-x_2")) == \
        "SKYPILOT_TASK_ID=sky-x_2"
    assert job_identity(_rank_env("slurm", SLURM_JOB_ID="7")) == "SLURM_JOB_ID=7"
    # Modal's: the train function call's id, which the rendered app hands to `ft node`.
    assert job_identity(_rank_env("modal", FT_MODAL_JOB_ID="fc-01J")) == \
        "FT_MODAL_JOB_ID=fc-01J"
    assert job_identity({}) is None
    # The trainer reads only what `ft node` exports, never a scheduler's own variable.
    assert job_identity({"SLURM_JOB_ID": "7"}) is None


def test_without_a_backend_the_output_dir_names_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = make_cfg(tmp_path / "model", DATA, output_dir="out")
    absolute = _cfg(tmp_path)
    assert tracking_run_id(relative, {}) == tracking_run_id(absolute, {})
    other = make_cfg(tmp_path / "model", DATA, output_dir="elsewhere")
    assert tracking_run_id(other, {}) != tracking_run_id(absolute, {})


def test_the_specs_run_id_wins(tmp_path):
    cfg = _cfg(tmp_path, wandb_project="ft", wandb_run_id="my-run")
    env = tracking_env(cfg, _rank_env("slurm", SLURM_JOB_ID="1"))
    assert env["WANDB_RUN_ID"] == "my-run" and env["WANDB_RESUME"] == "allow"


def test_wandb_gets_the_specs_project_and_a_resumable_run(tmp_path):
    cfg = _cfg(tmp_path, wandb_project="ft", wandb_entity="team", wandb_mode="offline")
    job = _rank_env("dstack", DSTACK_RUN_NAME="tiny")
    env = tracking_env(cfg, job)
    assert env == {"WANDB_PROJECT": "ft", "WANDB_ENTITY": "team", "WANDB_MODE": "offline",
                   "WANDB_RUN_ID": tracking_run_id(cfg, job),
                   "WANDB_RESUME": "allow"}
    assert tracking_env(cfg, {"WANDB_RUN_ID": "mine"})["WANDB_RUN_ID"] == "mine"
    assert tracking_env(_cfg(tmp_path), {}) == {}, "no tracker asked for: nothing set"


def test_mlflow_continues_the_run_recorded_by_an_earlier_attempt_of_the_same_job(tmp_path):
    cfg = _cfg(tmp_path, mlflow_tracking_uri="file:///tmp/mlruns",
               mlflow_experiment_name="ft")
    job = _rank_env("slurm", SLURM_JOB_ID="9")
    assert "MLFLOW_RUN_ID" not in tracking_env(cfg, job)  # first attempt: MLflow assigns it
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / RECORD).write_text(json.dumps(
        {"job_run_id": tracking_run_id(cfg, job), "mlflow_run_id": "abc"}))
    env = tracking_env(cfg, job)
    assert env["MLFLOW_RUN_ID"] == "abc" and env["MLFLOW_EXPERIMENT_NAME"] == "ft"
    assert "MLFLOW_RUN_ID" not in tracking_env(cfg, _rank_env("slurm", SLURM_JOB_ID="10")), \
        "a new job must not log into the previous job's run"


def test_the_trainer_reports_to_the_trackers_the_spec_names(tmp_path):
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.loop.hf_trainer import build_training_args
    from trainer.models.load import choose_precision

    cfg = _cfg(tmp_path, wandb_project="ft", mlflow_tracking_uri="file:///tmp/mlruns")
    args = build_training_args(cfg, choose_precision(cfg), train_rows=8,
                               world=WorldRanks.from_env({}), has_eval=False, plan=None)
    assert args.report_to == ["wandb", "mlflow"]
    assert args.save_total_limit is None, "ft rotates checkpoints itself, after marking"


def test_a_restarted_job_logs_to_the_same_wandb_run(tmp_path, tiny_model_dir):
    """Real W&B in offline mode (skipped where wandb is not installed): an attempt killed
    at step 4 and its restart write their offline runs under one run id, the job's. Started
    as a user's own launcher would (no `ft node`): `ft train` reads the job id itself."""
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed")
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=4, save_steps=2,
                           wandb_project="ft-test", wandb_mode="offline")
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "SLURM_JOB_ID": "4242"}
    killed = run_ft("train", str(spec), env={**env, **kill_before_mark.env(4)})
    assert killed.returncode == 137, killed.stderr[-3000:]
    resumed = run_ft("train", str(spec), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    expected = tracking_run_id(_cfg(tmp_path), _rank_env("slurm", SLURM_JOB_ID="4242"))
    assert len(runs) == 2 and all(run.name.endswith(f"-{expected}") for run in runs), runs
