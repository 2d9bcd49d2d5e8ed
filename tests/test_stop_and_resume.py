"""A stop signal travels through every layer of a local two-node job: `ft launch` -> each
node's `ft node` -> its ranks (past torchrun) -> a complete checkpoint, the one resumable
exit code, no process left behind; a relaunch continues the same loss curve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.backends.local.isolation import unavailable_reason
from tests.cli_runner import REPO, run_ft
from tests.support import late_stop_signal
from tests.support.isolation_checks import assert_removed, launch_namespaces
from tests.train_helpers import free_port, shared_volumes, train_losses, write_tiny_spec
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE

pytestmark = pytest.mark.slow
LAUNCH = {"nodes": 2, "env": {"OMP_NUM_THREADS": "1"}, "stop_grace": "60s"}
# A constant learning rate: the schedule does not depend on max_steps, so a run stopped
# early and resumed with a smaller max_steps follows the same curve as one that never stopped.
STEADY = {"lr_scheduler": "constant", "save_steps": 100000, "eval_steps": 100000}


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _launch(spec: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
                             "--backend", "local", "--master-port", str(free_port())],
                            cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_sigterm_to_a_local_launch_saves_everywhere_and_resumes_the_same_curve(
        tmp_path, tiny_model_dir):
    stopped_dir, reference_dir = tmp_path / "stopped", tmp_path / "reference"
    stopped_dir.mkdir()
    reference_dir.mkdir()
    # The checkpoint is on storage both nodes share, as a multi-node resume needs.
    spec = write_tiny_spec(stopped_dir, tiny_model_dir, max_steps=100000,
                           launch={**LAUNCH, "volumes": shared_volumes(stopped_dir)}, **STEADY)
    proc = _launch(spec, stopped_dir)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if sum("'loss'" in x for x in lines) >= 3:
            break
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    rest = proc.communicate(timeout=180)[0]
    log = "".join(lines) + rest
    assert proc.returncode == RESUMABLE_EXIT_CODE, log[-4000:]
    assert time.monotonic() - started < 120
    for node in (0, 1):
        assert f"[node{node}] ft node: all 1 rank(s) saved a complete checkpoint" in log, log
    assert _processes_mentioning(str(spec.parent)) == [], "a node or rank outlived the launch"
    if unavailable_reason() is None:  # the isolated nodes' network went with them
        assert_removed(launch_namespaces(log))
    out = stopped_dir / "out"
    (checkpoint,) = [p for p in out.iterdir() if p.name.startswith("checkpoint-")]
    assert (checkpoint / "ft-complete.json").is_file()
    saved_at = int(checkpoint.name.split("-")[1])

    # Resume to 3 steps past the save, and compare with a run that was never stopped. This
    # run also gets a stop signal after its last step (node 1's ft node, while the rank saves
    # the final model): it finishes all the same, exit 0, not a crash.
    final = saved_at + 3
    spec.write_text(spec.read_text().replace("max_steps: 100000", f"max_steps: {final}"))
    resumed = run_ft("launch", str(spec), "--backend", "local", "--master-port",
                     str(free_port()), cwd=stopped_dir,
                     env={**os.environ, **late_stop_signal.env(rank=1)})
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert f"resuming from {checkpoint}" in resumed.stdout
    assert ("[node1] ft node: SIGTERM received" in resumed.stdout and
            "SIGTERM received after the last step: finishing the final save" in
            resumed.stdout + resumed.stderr), resumed.stdout[-4000:]
    reference = write_tiny_spec(reference_dir, tiny_model_dir, max_steps=final,
                                launch={**LAUNCH, "volumes": shared_volumes(reference_dir)},
                                **STEADY)
    baseline = run_ft("launch", str(reference), "--backend", "local", "--master-port",
                      str(free_port()), cwd=reference_dir)
    assert baseline.returncode == 0, baseline.stdout[-4000:]
    after = {step: loss for step, loss in train_losses(out).items() if step > saved_at}
    expected = train_losses(reference_dir / "out")
    assert sorted(after) == list(range(saved_at + 1, final + 1))
    for step, loss in after.items():
        assert loss == pytest.approx(expected[step], abs=1e-4), (step, after, expected)
