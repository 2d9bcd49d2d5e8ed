"""One writer per output_dir, on real runs of the tiny model: a second launch on a busy
output_dir is refused with the holder named (it used to resume from the first run's
checkpoints and rotate them away); a SIGKILLed run's lease does not block the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.cli_runner import REPO, run_ft
from tests.train_helpers import free_port, shared_volumes, summary, write_tiny_spec
from trainer.checkpoint.output_lease import LEASE_FILE
from trainer.checkpoint.resume import COMPLETE_MARKER, checkpoint_problem
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE

# Slow, endless steps: the first run is surely still training when the second one starts.
ENDLESS = {"max_steps": 100000, "lr_scheduler": "constant", "save_steps": 100000,
           "eval_steps": 100000}
SLOW = {"FT_TRAINER_HOOKS": "tests.support.slow_steps:install", "FT_TEST_STEP_DELAY_S": "0.5"}


def _start(argv: list[str], cwd) -> subprocess.Popen:
    env = {**os.environ, **SLOW, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *argv], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _until_training(proc: subprocess.Popen) -> str:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "'loss'" in line:
            return "".join(lines)
    raise AssertionError("the first run ended before training:\n" + "".join(lines)[-4000:])


def test_a_second_launch_on_a_busy_output_dir_is_refused_naming_the_holder(tmp_path,
                                                                           tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, **ENDLESS,
                           launch={"env": {"OMP_NUM_THREADS": "1"},
                                   "volumes": shared_volumes(tmp_path)})
    # Emulating dstack, whose job identity is a run name: two launches of one spec are still
    # two jobs, so the second one must not take the first one's lease as its own restart's.
    first = _start(["launch", str(spec), "--backend", "local", "--emulate", "dstack",
                    "--master-port", str(free_port())], tmp_path)
    try:
        log = _until_training(first)
        # Bounded: without a lease the second run trains on as long as the first one.
        second = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "launch", str(spec), "--backend",
             "local", "--emulate", "dstack", "--master-port", str(free_port())], cwd=tmp_path,
            capture_output=True,
            text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        first.send_signal(signal.SIGTERM)
        log += first.communicate(timeout=180)[0]
    said = second.stdout + second.stderr
    # A user error: the rank says it once, `ft node` and `ft launch` end with its code.
    assert second.returncode == 2, said[-4000:]
    assert "Traceback" not in said, said[-4000:]
    assert f"output_dir {tmp_path / 'out'} is in use by another run" in said, said[-4000:]
    # The holder: the first launch's (emulated dstack) run, its host and pid, since when.
    assert "job DSTACK_RUN_NAME=" in said and f"-{first.pid}, since 20" in said, said[-4000:]
    assert "last heartbeat" in said
    assert "ft launch ... --force" in said
    assert "resuming from" not in said and "'loss'" not in said, "the second run trained"
    # The first run was not disturbed: it stops cleanly and gives the lease back.
    assert first.returncode == RESUMABLE_EXIT_CODE, log[-4000:]
    assert not (tmp_path / "out" / LEASE_FILE).exists()


def test_a_sigkilled_runs_lease_is_taken_by_the_next_run(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, **ENDLESS)
    killed = _start(["train", str(spec)], tmp_path)
    try:
        _until_training(killed)
        lease = (tmp_path / "out" / LEASE_FILE).read_text()
        # While it lives, a second `ft train` is a user error: exit 2, no traceback.
        refused = run_ft("train", str(spec), cwd=tmp_path)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert f'"pid": {killed.pid}' in lease
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"is in use by another run (host {os.uname().nodename}, pid {killed.pid}, job " \
        "none (no backend job)" in refused.stderr
    assert "Traceback" not in refused.stderr
    spec.write_text(spec.read_text().replace("max_steps: 100000", "max_steps: 2"))
    result = run_ft("train", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"from host {os.uname().nodename}, pid {killed.pid}, job none (no backend job)" \
        in result.stderr
    assert f"its process (pid {killed.pid} on this host) is gone" in result.stderr
    assert summary(tmp_path / "out")["global_step"] == 2
    assert not (tmp_path / "out" / LEASE_FILE).exists()
    # Marked while the lease was held: the final model's file list leaves it out.
    assert checkpoint_problem(tmp_path / "out") is None
    assert LEASE_FILE not in (tmp_path / "out" / COMPLETE_MARKER).read_text()
