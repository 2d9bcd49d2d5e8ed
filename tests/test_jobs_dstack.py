"""The dstack adapter against dstack 0.22.5's captured outputs (tests/fixtures/tool_outputs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.backends import base
from orchestrator.backends.dstack import BACKEND as DSTACK
from orchestrator.backends.dstack.jobs import run_status, runs_by_name
from orchestrator.backends.job_model import JobRecord, JobState
from orchestrator.jobs.submit import submit
from orchestrator.spec.load import load_spec
from tests.fixtures.tool_outputs.replay import captured
from trainer.torch_free.errors import UserError

REPO = Path(__file__).resolve().parent.parent
V = "dstack-0.22.5"


def rec(name: str = "ftcap") -> JobRecord:
    return JobRecord("dstack", name, name, "/w/s.yaml", "ab" * 32, "/w/r", "2026-11-23T11:00",
                     "/w")


def test_run_states_from_ps_json() -> None:
    failed = runs_by_name(captured(f"{V}-ps-json-failed-no-fleets").stdout)["ftcap"]
    status = run_status(failed)
    assert (status.state, status.raw, status.nodes) == (JobState.FAILED,
                                                         "failed: job_failed", "2")
    assert status.detail.startswith("No matching fleet found")
    submitted = run_status(runs_by_name(captured(f"{V}-ps-json-submitted").stdout)["ftcap2"])
    assert (submitted.state, submitted.raw) == (JobState.PENDING, "submitted")
    stopping = run_status(runs_by_name(captured(f"{V}-ps-json-after-stop").stdout)["ftcap2"])
    assert stopping.label == "RUNNING (terminating: stopped_by_user)"
    stopped = run_status(runs_by_name(captured(f"{V}-ps-json-stopped").stdout)["ftcap2"])
    assert stopped.label == "CANCELLED (terminated: stopped_by_user)"
    assert re.fullmatch(r"\d+:\d\d", stopped.elapsed)


def test_statuses_use_one_ps_call(fake) -> None:
    runner = fake({("dstack", "ps"): captured(f"{V}-ps-json-stopped")})
    found = DSTACK.statuses([rec("ftcap"), rec("ftcap2"), rec("gone")])
    assert runner.calls == [("dstack", "ps", "--all", "--json")]
    assert found["dstack:ftcap"].state == JobState.FAILED
    assert found["dstack:ftcap2"].state == JobState.CANCELLED
    assert found["dstack:gone"].state == JobState.UNKNOWN
    assert "DSTACK_PROJECT" in found["dstack:gone"].detail


def test_submit_reads_the_run_name(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    runner = fake({("dstack", "ps"): captured(f"{V}-ps-json-last-1"),
                   ("dstack", "apply"): captured(f"{V}-apply-detached")})
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", for_launch=True)
    record = submit(DSTACK, DSTACK.render(spec), Path(".ft/rendered/tiny"), spec)
    assert runner.calls == [("dstack", "ps", "--json", "--last", "1"),
                            ("dstack", "apply", "-f", ".ft/rendered/tiny/tiny.dstack.yml", "-y",
                             "-d")]
    assert record.ref == "dstack:ftcap2"  # the name dstack says it submitted


def test_unconfigured_dstack_says_how_to_fix(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    fake({("dstack", "ps"): captured(f"{V}-ps-last-1-no-project")})
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", for_launch=True)
    with pytest.raises(UserError, match="No default project") as err:
        submit(DSTACK, DSTACK.render(spec), Path(".ft/rendered/tiny"), spec)
    assert "dstack server" in str(err.value) and "dstack project add" in str(err.value)
    assert not (tmp_path / ".ft").exists()


def test_logs_stop_and_errors(fake, monkeypatch) -> None:
    runner = fake({("dstack", "logs", "ftcap"): captured(f"{V}-logs-failed-run"),
                   ("dstack", "logs", "nosuch"): captured(f"{V}-logs-unknown-run"),
                   ("dstack", "stop", "ftcap2"): captured(f"{V}-stop-active-run"),
                   ("dstack", "stop", "nosuch"): captured(f"{V}-stop-unknown-run"),
                   ("dstack", "ps"): captured(f"{V}-ps-json-stopped")})
    adapter = DSTACK
    assert list(adapter.log_lines(rec("ftcap"), follow=False)) == []
    with pytest.raises(UserError, match="Run nosuch not found"):
        list(adapter.log_lines(rec("nosuch"), follow=False))
    assert adapter.cancel(rec("ftcap2")) == "Stopped"
    assert ("dstack", "stop", "ftcap2", "-y") in runner.calls
    with pytest.raises(UserError, match="Run nosuch not found"):
        adapter.cancel(rec("nosuch"))
    # Following a finished run prints its stored logs: `attach --logs` would refuse it.
    monkeypatch.setattr(process, "STREAMER", lambda argv: pytest.fail(f"streamed {argv}"))
    assert list(adapter.log_lines(rec("ftcap"), follow=True)) == []


def test_follow_a_live_run_streams_attach_logs(fake, monkeypatch) -> None:
    fake({("dstack", "ps"): captured(f"{V}-ps-json-submitted")})
    streamed = []
    monkeypatch.setattr(process, "STREAMER",
                        lambda argv: streamed.append(tuple(argv)) or iter(["hello"]))
    assert list(DSTACK.log_lines(rec("ftcap2"), follow=True)) == ["hello"]
    assert streamed == [("dstack", "attach", "--logs", "ftcap2")]


def test_every_flag_ft_uses_is_in_the_real_help() -> None:
    helps = {cmd: captured(f"{V}-{cmd}-help").stdout for cmd in ("apply", "ps", "logs",
                                                                  "attach", "stop")}
    used = {"apply": ["-f", "-y", "-d"], "ps": ["--all", "--json", "--last"],
            "attach": ["--logs"], "stop": ["-y"], "logs": []}
    for cmd, flags in used.items():
        for flag in flags:
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", helps[cmd]), (cmd, flag)
    assert json.loads(captured(f"{V}-ps-json-last-1").stdout)["runs"]
