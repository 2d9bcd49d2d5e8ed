"""One experiment-tracking run per job, continued across restarts and requeues.

Without a fixed run id, W&B and MLflow open a new run on every restart of a preempted job,
so one training shows up as a dozen short runs. The id here is derived from the job, so
every attempt of it computes the same one:

- the spec's `wandb_run_id` when set;
- else a hash of the job's identity and the absolute `output_dir`. The job identity is the
  scheduler's job id, as `ft node` exports it (FT_JOB_ID, trainer/torch_free/job_identity.py):
  the one id that survives the job's restarts and requeues. A new submission gets a new
  run (it resumes the model from the checkpoints, but it is a new attempt to track);
  outside a scheduler's job (`ft train` by hand) the output directory alone names the run.

W&B takes the id up front (WANDB_RUN_ID with WANDB_RESUME=allow). MLflow assigns ids
itself, so the first attempt records its id in `<output_dir>/ft-tracking.json` and later
attempts of the same job hand it back through MLFLOW_RUN_ID.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from transformers import TrainerCallback

from trainer.torch_free.job_identity import job_identity
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.tracking")

RECORD = "ft-tracking.json"


def tracking_run_id(cfg: TrainingConfig, env: Mapping[str, str]) -> str:
    if cfg.wandb_run_id:
        return cfg.wandb_run_id
    payload = json.dumps([job_identity(env), str(Path(cfg.output_dir).resolve())])
    return "ft-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def tracking_env(cfg: TrainingConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The variables the transformers W&B / MLflow callbacks read. The spec's keys win over
    the environment; a run id the user exported wins over the derived one."""
    out: dict[str, str] = {}
    run_id = tracking_run_id(cfg, env)
    if cfg.wandb_project:
        out.update(_present(WANDB_PROJECT=cfg.wandb_project, WANDB_ENTITY=cfg.wandb_entity,
                            WANDB_MODE=cfg.wandb_mode))
        out["WANDB_RUN_ID"] = env.get("WANDB_RUN_ID") or run_id
        out["WANDB_RESUME"] = env.get("WANDB_RESUME") or "allow"
    if cfg.mlflow_tracking_uri:
        out.update(_present(MLFLOW_TRACKING_URI=cfg.mlflow_tracking_uri,
                            MLFLOW_EXPERIMENT_NAME=cfg.mlflow_experiment_name))
        recorded = _recorded_mlflow_run(Path(cfg.output_dir), run_id)
        if mlflow_run := env.get("MLFLOW_RUN_ID") or recorded:
            out["MLFLOW_RUN_ID"] = mlflow_run
    return out


def apply_tracking_env(cfg: TrainingConfig) -> dict[str, str]:
    """Set tracking_env in this process, before the Trainer creates its callbacks."""
    values = tracking_env(cfg, os.environ)
    os.environ.update(values)
    if "WANDB_RUN_ID" in values:
        log.info("W&B run id %s (resumed if it exists)", values["WANDB_RUN_ID"])
    return values


def _present(**values: str | None) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _recorded_mlflow_run(output_dir: Path, run_id: str) -> str | None:
    try:
        record = json.loads((output_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record.get("mlflow_run_id") if record.get("job_run_id") == run_id else None


class TrackingRunRecorder(TrainerCallback):
    """Records the MLflow run this attempt logs to, for the next attempt of the job."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def on_train_begin(self, args, state, control, **kwargs):
        mlflow = sys.modules.get("mlflow")  # imported by transformers' MLflowCallback
        active = mlflow.active_run() if mlflow is not None else None
        if state.is_world_process_zero and active is not None:
            record = {"job_run_id": self.run_id, "mlflow_run_id": active.info.run_id}
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.output_dir) / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return control
