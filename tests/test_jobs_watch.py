"""`ft launch --watch` on a Slurm job: captured squeue states, the real training log files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.backends.job_model import JobRecord
from orchestrator.jobs.watch import watch
from tests.fixtures.tool_outputs.replay import FakeRunner, captured, text

V = "slurm-22.05.8"
LOG = "ft-train-transformers-5.23.0-slurm-22.05.8-2node"


def job(tmp_path: Path, job_id: str) -> JobRecord:
    out, err = tmp_path / f"tiny-{job_id}.out", tmp_path / f"tiny-{job_id}.err"
    return JobRecord("slurm", job_id, "tiny", "/w/tiny.yaml", "ab" * 32, "/w/r",
                     "2026-11-23T11:00:00+00:00", str(tmp_path), [str(out), str(err)])


def test_watch_follows_state_and_loss_until_success(tmp_path, monkeypatch) -> None:
    record = job(tmp_path, "1")
    Path(record.log_files[0]).write_text(text(f"{LOG}.out.txt"))
    Path(record.log_files[1]).write_text(text(f"{LOG}.err.txt"))
    running, completed = captured(f"{V}-squeue-running"), captured(f"{V}-squeue-completed")
    monkeypatch.setattr(process, "RUNNER", FakeRunner({
        ("squeue",): [running, running, completed],
        ("scontrol",): captured(f"{V}-scontrol-show-job-unknown")}))
    out = io.StringIO()
    code = watch(record, total_steps=30, logging_steps=5, out=out, sleep=lambda s: None)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert lines[0] == "slurm:1 RUNNING"
    assert lines[3] == "[########................] ~10/30  loss 6.089  lr 0.01766  epoch 0.9091"
    assert lines[-2] == "slurm:1 SUCCEEDED (COMPLETED)"
    assert lines[-1] == "slurm:1 finished; loss 6.247 -> 5.971"


def test_watch_of_a_failed_job_shows_the_log_tail(tmp_path, monkeypatch) -> None:
    record = job(tmp_path, "3")
    Path(record.log_files[0]).write_text("node 0\nTraceback (most recent call last):\nBoom\n")
    monkeypatch.setattr(process, "RUNNER", FakeRunner({
        ("squeue",): captured(f"{V}-squeue-failed"),
        ("scontrol",): captured(f"{V}-scontrol-show-job-unknown")}))
    out = io.StringIO()
    assert watch(record, out=out, sleep=lambda s: None) == 1
    text_out = out.getvalue()
    assert "slurm:3 FAILED: NonZeroExitCode" in text_out
    assert "  Boom" in text_out and "`ft logs slurm:3` shows the whole log" in text_out


def test_ctrl_c_leaves_the_job_running(tmp_path, monkeypatch) -> None:
    def interrupted(argv, input_text=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(process, "RUNNER", interrupted)
    out = io.StringIO()
    assert watch(job(tmp_path, "1"), out=out) == 130
    assert "the job keeps running (`ft cancel slurm:1` stops it)" in out.getvalue()


@pytest.mark.parametrize("final", [True, False])
def test_tail_files_reads_whole_lines_and_carriage_returns(tmp_path, final) -> None:
    from orchestrator.backends.slurm.log_tail import FileTail

    path = tmp_path / "log"
    path.write_text("a\r b\npart")
    tail = FileTail(path)
    assert tail.read_lines(final=final) == (["a", " b", "part"] if final else ["a", " b"])
    with path.open("a") as handle:
        handle.write("ial\n")
    assert tail.read_lines() == (["ial"] if final else ["partial"])
