"""`ft launch / list / status / logs / cancel` end to end, with captured tool outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import process
from orchestrator.backends import base
from orchestrator.backends.job_model import JobRecord
from orchestrator.cli import app
from orchestrator.jobs import store
from tests.cli_runner import run_ft
from tests.fixtures.tool_outputs.replay import FakeRunner, captured

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "examples" / "tiny" / "tiny.yaml")
S, D = "slurm-22.05.8", "dstack-0.22.5"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return tmp_path


def fake(monkeypatch: pytest.MonkeyPatch, answers: dict, missing: tuple[str, ...] = ()):
    runner = FakeRunner(answers)

    def run(argv, input_text=None):
        if argv[0] in missing:
            raise FileNotFoundError(argv[0])
        return runner(argv, input_text)
    monkeypatch.setattr(process, "RUNNER", run)
    return runner


def ft(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def remember(backend: str, job_id: str, tmp_path: Path, **extra) -> JobRecord:
    record = JobRecord(backend, job_id, "tiny", TINY, "ab" * 32, str(tmp_path / "r"),
                       "2026-11-23T11:00:00+00:00", str(tmp_path),
                       [str(tmp_path / f"tiny-{job_id}.out")] if backend == "slurm" else [],
                       **extra)
    store.add_record(record)
    return record


def test_launch_prints_the_job_and_remembers_it(env, monkeypatch) -> None:
    runner = fake(monkeypatch, {("scontrol", "ping"): captured(f"{S}-scontrol-ping-up"),
                                ("scontrol", "show", "config"):
                                    captured(f"{S}-scontrol-show-config"),
                                ("sbatch",): captured(f"{S}-sbatch-parsable")})
    result = ft("launch", TINY, "--backend", "slurm", "--nodes", "2")
    assert result.exit_code == 0, result.output
    assert "submitted slurm:1 (tiny)" in result.output
    assert "ft logs slurm:1 -f" in result.output  # the hint (stderr)
    assert runner.calls[-1] == ("sbatch", "--parsable", ".ft/rendered/tiny/tiny.sbatch")
    assert store.find_record(None).log_files == [f"{env}/tiny-1.out", f"{env}/tiny-1.err"]


def test_list_queries_each_backend_once_and_survives_a_missing_tool(env, monkeypatch) -> None:
    remember("slurm", "1", env)
    remember("slurm", "2", env)
    remember("dstack", "ftcap", env)
    remember("skypilot", "4", env, extra={"managed": True})
    runner = fake(monkeypatch, {("squeue",): captured(f"{S}-squeue-running"),
                                ("dstack", "ps"): captured(f"{D}-ps-json-stopped")},
                  missing=("sky",))
    result = ft("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["JOB", "NAME", "STATE", "ELAPSED", "NODES", "SUBMITTED",
                                "DETAIL"]
    assert [line.split()[0] for line in lines[1:]] == ["skypilot:4", "dstack:ftcap",
                                                      "slurm:2", "slurm:1"]  # newest first
    assert "UNKNOWN" in lines[1] and "`sky` is not on PATH" in lines[1]
    assert "FAILED (failed: job_failed)" in lines[2] and "No matching fleet" in lines[2]
    assert "PENDING" in lines[3] and "Resources" in lines[3]
    assert "RUNNING" in lines[4] and "n[1-2]" in lines[4]
    assert sorted(c[0] for c in runner.calls) == ["dstack", "squeue"]


def test_status_logs_cancel(env, monkeypatch) -> None:
    remember("slurm", "1", env)
    (env / "tiny-1.out").write_text("{'loss': '6.247', 'epoch': '0.09'}\n")
    runner = fake(monkeypatch, {("squeue",): captured(f"{S}-squeue-completed"),
                                ("scontrol",): captured(f"{S}-scontrol-show-job-unknown"),
                                ("scancel",): captured(f"{S}-scancel-running")})
    status = ft("status")
    assert status.exit_code == 0
    assert "slurm:1  tiny  SUCCEEDED (COMPLETED)" in status.output
    assert f"log: {env}/tiny-1.out" in status.output and f"spec: {TINY}" in status.output
    logs = ft("logs", "tiny")
    assert logs.output == "{'loss': '6.247', 'epoch': '0.09'}\n"
    cancel = ft("cancel", "slurm:1")
    assert ("scancel", "1") in runner.calls
    assert "cancel requested for slurm:1 (tiny); now SUCCEEDED (COMPLETED)" in cancel.output


def test_no_jobs_yet_is_a_clean_message(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, FT_STATE_DIR=str(tmp_path / "state"))
    listed = run_ft("list", env=env)
    assert listed.returncode == 0 and "no jobs launched yet" in listed.stdout
    status = run_ft("status", env=env)
    assert status.returncode == 2 and "ft has launched no jobs yet" in status.stderr
    assert "Traceback" not in status.stderr
    logs = run_ft("logs", "nope", env=env)
    assert logs.returncode == 2 and "Traceback" not in logs.stderr
