"""The SkyPilot adapter against SkyPilot 0.14.1's captured outputs.

No cloud is reachable here: the error and empty-result captures are real CLI runs; the job
tables (`*-model-dump`) and submit hints (`*-hint`) come from SkyPilot's own models and
ux_utils (see tests/fixtures/tool_outputs/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator import process
from orchestrator.backends import base
from orchestrator.backends.job_model import JobRecord, JobState
from orchestrator.backends.skypilot import BACKEND as SKYPILOT
from orchestrator.backends.skypilot.jobs import SkyJob
from orchestrator.backends.tool_output import json_after_chatter
from orchestrator.jobs.submit import submit
from orchestrator.spec.load import parse_spec
from tests.fixtures.tool_outputs.replay import captured
from trainer.torch_free.errors import UserError

REPO = Path(__file__).resolve().parent.parent
V = "sky-0.14.1"


def rec(job_id: str, cluster: str | None = "tiny", managed: bool = False) -> JobRecord:
    return JobRecord("skypilot", job_id, "tiny", "/w/s.yaml", "ab" * 32, "/w/r",
                     "2026-11-23T11:00", "/w",
                     extra=SkyJob(None if managed else cluster, managed).extra())


def tiny_spec(managed: bool):
    data = yaml.safe_load((REPO / "examples/tiny/tiny.yaml").read_text())
    data["launch"].update(gpus_per_node=1, gpu="A10G", skypilot={"managed": managed})
    return parse_spec(yaml.safe_dump(data), "tiny.yaml", for_launch=True)


@pytest.fixture
def fake(fake, monkeypatch: pytest.MonkeyPatch):
    """The shared fake runner, with `sky` on PATH as far as the adapter can tell."""
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return fake


def test_json_is_found_after_the_progress_lines() -> None:
    assert json_after_chatter(captured(f"{V}-queue-json-unknown-cluster").stdout) == {}
    assert json_after_chatter(captured(f"{V}-status-json-no-clusters").stdout) == []


def test_cluster_job_states(fake) -> None:
    runner = fake({("sky", "queue"): captured(f"{V}-queue-json-model-dump")})
    found = SKYPILOT.statuses([rec("1"), rec("2"), rec("3"), rec("9")])
    assert runner.calls == [("sky", "queue", "tiny", "-o", "json")]
    assert [found[f"skypilot:{i}"].label for i in "1239"] == [
        "SUCCEEDED", "RUNNING", "PENDING", "UNKNOWN (not found)"]


def test_a_torn_down_cluster_is_reported_not_an_error(fake) -> None:
    fake({("sky", "queue"): captured(f"{V}-queue-json-unknown-cluster")})
    status = SKYPILOT.statuses([rec("1", cluster="ftcap")])["skypilot:1"]
    assert (status.state, status.raw) == (JobState.UNKNOWN, "no cluster")
    assert "cluster ftcap is down or gone" in status.detail


def test_managed_job_states(fake) -> None:
    runner = fake({("sky", "jobs", "queue"): captured(f"{V}-jobs-queue-json-model-dump")})
    found = SKYPILOT.statuses([rec("4", managed=True), rec("5", managed=True)])
    assert runner.calls == [("sky", "jobs", "queue", "--all", "-o", "json")]
    assert (found["skypilot:4"].label, found["skypilot:4"].elapsed) == ("RUNNING", "1:05")
    assert found["skypilot:5"].label == "FAILED (FAILED_NO_RESOURCE)"
    assert found["skypilot:5"].detail == "no capacity"


def test_no_jobs_controller_is_unknown_with_the_reason(fake) -> None:
    fake({("sky", "jobs", "queue"): captured(f"{V}-jobs-queue-json-no-controller")})
    status = SKYPILOT.statuses([rec("4", managed=True)])["skypilot:4"]
    assert status.state == JobState.UNKNOWN
    assert "No in-progress managed jobs" in status.detail


@pytest.mark.parametrize("managed, hint, argv_tail, expected", [
    (False, "launch-hint", ("--detach-run", ".ft/rendered/tiny/tiny.sky.yaml"),
     ("1", "tiny", False)),
    (True, "jobs-launch-hint", ("--yes", "--detach-run", ".ft/rendered/tiny/tiny.sky.yaml"),
     ("4", None, True)),
])
def test_submit_reads_the_job_id(fake, tmp_path, monkeypatch, managed, hint, argv_tail,
                                 expected) -> None:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    runner = fake({("sky",): captured(f"{V}-{hint}")})
    spec = tiny_spec(managed)
    record = submit(SKYPILOT, SKYPILOT.render(spec), Path(".ft/rendered/tiny"), spec)
    assert runner.calls[-1][-len(argv_tail):] == argv_tail
    sky = SkyJob.of(record)
    assert (record.job_id, sky.cluster, sky.managed) == expected


def test_no_cloud_says_run_sky_check(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake({("sky",): captured(f"{V}-launch-no-cloud")})
    spec = tiny_spec(False)
    with pytest.raises(UserError, match="Cloud access is not set up") as err:
        submit(SKYPILOT, SKYPILOT.render(spec), Path(".ft/rendered/tiny"), spec)
    assert "To fix: run `sky check`" in str(err.value)
    assert "\x1b[" not in str(err.value), "colour codes are stripped"


def test_logs_and_cancel_commands(fake, monkeypatch) -> None:
    runner = fake({("sky", "logs"): captured(f"{V}-logs-unknown-cluster"),
                   ("sky", "cancel"): captured(f"{V}-cancel-unknown-cluster"),
                   ("sky", "jobs", "cancel"): captured(f"{V}-jobs-cancel-no-controller"),
                   ("sky", "jobs", "logs"): captured(f"{V}-jobs-logs-no-controller")})
    adapter = SKYPILOT
    with pytest.raises(UserError, match="Cluster 'ftcap' does not exist"):
        list(adapter.log_lines(rec("1", cluster="ftcap"), follow=False))
    with pytest.raises(UserError, match="Cluster 'ftcap' does not exist"):
        adapter.cancel(rec("1", cluster="ftcap"))
    with pytest.raises(UserError, match="No in-progress managed jobs"):
        adapter.cancel(rec("4", managed=True))
    assert list(adapter.log_lines(rec("4", managed=True), follow=False)) == []
    assert runner.calls == [("sky", "logs", "ftcap", "1", "--no-follow"),
                            ("sky", "cancel", "ftcap", "1", "--yes"),
                            ("sky", "jobs", "cancel", "4", "--yes"),
                            ("sky", "jobs", "logs", "4", "--no-follow")]
    streamed = []
    monkeypatch.setattr(process, "STREAMER", lambda argv: streamed.append(tuple(argv)) or iter(()))
    list(adapter.log_lines(rec("2"), follow=True))
    assert streamed == [("sky", "logs", "tiny", "2", "--follow")]


def test_every_flag_ft_uses_is_in_the_real_help() -> None:
    used = {"launch": ["--cluster", "--secret", "--yes", "--detach-run"],
            "jobs-launch": ["--name", "--secret", "--yes", "--detach-run"],
            "queue": ["--output"], "jobs-queue": ["--all", "--output"],
            "logs": ["--follow", "--no-follow"], "jobs-logs": ["--follow", "--no-follow"],
            "cancel": ["--yes"], "jobs-cancel": ["--yes"]}
    for cmd, flags in used.items():
        text = captured(f"{V}-{cmd}-help").stdout
        for flag in flags:
            assert re.search(rf"(^|[\s,/]){re.escape(flag)}\b", text), (cmd, flag)
        if "queue" in cmd:
            assert "-o, --output [table|json]" in text
