"""The Modal adapter against modal 1.6.4's outputs, through the process seam.

No Modal account is reachable here: the `*-no-token` captures are real runs (the rendered
tiny app through `modal run` up to authentication); the app list, logs and stop outputs are
modal's own CLI code answering from a stubbed server (capture_modal.py, see
tests/fixtures/tool_outputs/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.backends import base
from orchestrator.backends.job_model import JobRecord, JobState
from orchestrator.backends.modal import BACKEND as MODAL
from orchestrator.backends.modal.markers import APP_ID_MARK
from orchestrator.jobs.submit import submit
from orchestrator.process import Completed
from orchestrator.spec.load import load_spec
from orchestrator.status_text import format_seconds
from tests.fixtures.tool_outputs.replay import captured
from trainer.torch_free.errors import UserError

V = "modal-1.6.4"
REPO = Path(__file__).resolve().parent.parent
RUNNING, DONE = "ap-AbCdEfGhIjKlMnOpQrStUv", "ap-0123456789abcdefghijkl"
FAILED, STOPPED = "ap-FailedFailedFailed0001", "ap-StoppedByUserStopped12"
INITIALIZING = "ap-Initializing0000000001"


def rec(app_id: str) -> JobRecord:
    return JobRecord("modal", app_id, "tiny", "/w/s.yaml", "ab" * 32, "/w/r",
                     "2026-11-23T11:00", "/w")


@pytest.fixture
def fake(fake, monkeypatch: pytest.MonkeyPatch):
    """The shared fake runner, with `modal` on PATH as far as the adapter can tell."""
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return fake


def _logs_search(app_id: str) -> tuple[str, ...]:
    return ("modal", "app", "logs", app_id, "--search", "ft-modal-result:")


def test_app_states_and_how_stopped_apps_ended(fake) -> None:
    runner = fake({("modal", "app", "list"): captured(f"{V}-app-list-json"),
                   _logs_search(DONE): captured(f"{V}-app-logs-search-succeeded"),
                   _logs_search(FAILED): captured(f"{V}-app-logs-search-failed"),
                   _logs_search(STOPPED): captured(f"{V}-app-logs-search-none")})
    ids = [RUNNING, INITIALIZING, DONE, FAILED, STOPPED, "ap-NotListedNotListed00"]
    found = MODAL.statuses([rec(app_id) for app_id in ids])
    states = [found[f"modal:{app_id}"] for app_id in ids]
    assert [s.state for s in states] == [JobState.RUNNING, JobState.PENDING,
                                         JobState.SUCCEEDED, JobState.FAILED,
                                         JobState.CANCELLED, JobState.UNKNOWN]
    assert states[0].raw == "ephemeral (detached)" and states[0].nodes == "2 container(s)"
    assert states[2].elapsed == format_seconds(420)  # created 10:50:00, stopped 10:57:00
    assert states[3].detail == "failed in train"
    assert "stopped before its last stage reported" in states[4].detail
    assert "recently stopped apps only" in states[5].detail
    # One list for every job, and the logs only of the apps that stopped.
    assert runner.calls[0] == ("modal", "app", "list", "--json")
    assert sorted(runner.calls[1:]) == sorted(_logs_search(a) for a in (DONE, FAILED, STOPPED))


def test_submit_without_a_token_says_run_modal_setup(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(REPO)
    runner = fake({("modal", "run"): captured(f"{V}-run-no-token")})
    spec = load_spec("examples/tiny/tiny.yaml", for_launch=True)
    directory = tmp_path / "rendered"
    with pytest.raises(UserError, match="Token missing") as err:
        submit(MODAL, MODAL.render(spec), directory, spec)
    assert "To fix: run `modal setup`" in str(err.value)
    assert runner.calls == [("modal", "run", "--detach", f"{directory}/tiny_modal.py::launch",
                             "--stages", "preprocess,train")]
    assert not (tmp_path / "state").exists(), "a failed submit records no job"


def test_submit_records_the_app_id_the_app_prints(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(REPO)
    # What `modal run --detach` prints first (real, from the capture), then the app's line.
    note = captured(f"{V}-run-no-token").stdout
    fake({("modal", "run"): Completed((), 0, f"{note}{APP_ID_MARK} {RUNNING}\n", "")})
    spec = load_spec("examples/tiny/tiny.yaml", for_launch=True)
    record = submit(MODAL, MODAL.render(spec), tmp_path / "rendered", spec)
    assert record.ref == f"modal:{RUNNING}"


def test_status_without_a_token_is_an_error_with_the_fix(fake) -> None:
    fake({("modal", "app", "list"): captured(f"{V}-app-list-no-token")})
    with pytest.raises(UserError, match="Token missing") as err:
        MODAL.statuses([rec(RUNNING)])
    assert "To fix: run `modal setup`" in str(err.value)


def test_logs_and_stop(fake, monkeypatch) -> None:
    runner = fake({("modal", "app", "logs"): captured(f"{V}-app-logs-tail"),
                   ("modal", "app", "stop", RUNNING): captured(f"{V}-app-stop"),
                   ("modal", "app", "stop", DONE): captured(f"{V}-app-stop-already-stopped")})
    lines = list(MODAL.log_lines(rec(FAILED), follow=False))
    assert lines[0] == "ft-modal: ft preprocess .ft/tiny.yaml"
    assert lines[-1] == "ft-modal-result: failed in train"
    assert MODAL.cancel(rec(RUNNING)) == ""
    assert MODAL.cancel(rec(DONE)).startswith("App is already stopped.")  # not an error
    assert runner.calls == [("modal", "app", "logs", FAILED),
                            ("modal", "app", "stop", RUNNING, "--yes"),
                            ("modal", "app", "stop", DONE, "--yes")]
    streamed = []
    monkeypatch.setattr(process, "STREAMER", lambda argv: streamed.append(tuple(argv)) or iter(()))
    list(MODAL.log_lines(rec(RUNNING), follow=True))
    assert streamed == [("modal", "app", "logs", RUNNING, "--follow")]


def test_every_flag_ft_uses_is_one_modal_defines() -> None:
    """Read from the installed modal's own click commands."""
    from modal.cli.app import list_, logs, stop
    from modal.cli.run import run

    def flags(command) -> set[str]:
        return {opt for param in command.params for opt in param.opts}

    assert {"--detach"} <= flags(run)
    assert {"--json"} <= flags(list_)
    assert {"--follow", "--search"} <= flags(logs)
    assert {"--yes"} <= flags(stop)
