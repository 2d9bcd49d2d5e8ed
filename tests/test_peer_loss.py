"""A node that drops off the network mid-training (its eth0 taken down inside its network
namespace, as a cut cable or a dead switch port would): the job ends within
`launch.timeouts.peer` plus a margin, names that node, and a stop signal during the wait
says what the ranks are waiting on instead of blaming a slow save. Also the timeouts'
validation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from orchestrator.process import run_cmd
from tests.cli_runner import REPO, run_ft
from tests.support.isolation_checks import assert_removed, launch_namespaces, needs_isolation
from tests.train_helpers import free_port, write_tiny_spec
from trainer.torch_free.liveness import PEER_LOST_EXIT_CODE

PEER_S = 16
# On top of `peer`: a heartbeat period (peer/4) to notice, then torchrun and ft launch
# tearing both nodes down, on a loaded 2-core CI machine. The collective timeout (10m here)
# and the stop grace (10m) are far beyond it: only the heartbeats can end the job in time.
MARGIN_S = 40


class _Lines:
    """The job's merged output, read in the background so the test can act on time."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text():
            ended = self.proc.poll() is not None and not self.thread.is_alive()
            assert time.monotonic() < deadline and not ended, \
                f"no {needle!r} in:\n{self.text()[-4000:]}"
            time.sleep(0.2)


@needs_isolation
def test_a_node_whose_link_goes_down_is_named_and_the_job_ends(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000,
                           eval_steps=100000, launch={
                               "nodes": 2, "stop_grace": "10m", "env": {"OMP_NUM_THREADS": "1"},
                               "timeouts": {"collective": "10m", "peer": f"{PEER_S}s"}})
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
                             "--backend", "local", "--master-port", str(free_port())],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    output = _Lines(proc)
    try:
        output.wait_for("'loss'", timeout_s=300)
        stem = launch_namespaces(output.text())
        cut = run_cmd(["ip", "-n", f"{stem}-n1", "link", "set", "eth0", "down"])
        assert cut.returncode == 0, cut.stderr
        cut_at = time.monotonic()
        # A stop while the ranks wait on the silent node: ft node says so when they know it.
        time.sleep(PEER_S / 4)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=PEER_S + MARGIN_S + 60)
        ended_after = time.monotonic() - cut_at
    finally:
        proc.kill()
        proc.wait()
    output.thread.join(10)
    log = output.text()
    # Kept by pytest for a look after a failure.
    (tmp_path / "job.log").write_text(f"{log}\nended {ended_after:.1f} s after the cut, "
                                      f"exit {code}\n")
    print(f"link down: the job ended {ended_after:.0f} s after the cut, exit {code}")
    assert code == PEER_LOST_EXIT_CODE, log[-4000:]  # a lost peer, not a crash
    assert ended_after < PEER_S + MARGIN_S, f"{ended_after:.0f} s\n{log[-4000:]}"
    assert "ft: collectives time out after 600 s in steady training, 3600 s during start-up " \
           f"and saves; a peer silent for {PEER_S} s is named and ends the job" in log
    # Node 0 names the node that went silent, by rank, hostname and address.
    assert "ft: node 1 (node1, 10.210.0.2) stopped answering" in log, log[-4000:]
    # Node 1, cut off, names the node it cannot reach.
    assert "ft: node 1 (node1, 10.210.0.2) cannot reach node 0 (node0, 10.210.0.1), which " \
           "holds the job's rendezvous store" in log, log[-4000:]
    # The stop signal was told the truth: a wait on that node, not a slow save.
    assert "the ranks are waiting on an unreachable peer, not saving: node 1 (node1, " \
           "10.210.0.2) stopped answering" in log, log[-4000:]
    assert "raise launch.stop_grace" not in log
    assert_removed(stem)


def test_nonsense_timeouts_are_refused_with_the_field_named(tmp_path):
    spec = write_tiny_spec(tmp_path, tmp_path / "no-model", launch={"timeouts": {
        "collective": "soon", "peer": "1s"}})
    result = run_ft("validate", str(spec), cwd=tmp_path)
    said = result.stdout + result.stderr
    assert result.returncode == 2, said
    assert "Traceback" not in said
    assert "launch.timeouts.collective" in said and "`collective: soon` is not a duration" in said
    assert "launch.timeouts.peer" in said and "`peer: 1s` is too short; use at least 5s" in said
    spec = write_tiny_spec(tmp_path, tmp_path / "no-model", launch={"timeouts": {
        "collective": "20m", "slow_phase": "5m"}})
    result = run_ft("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "`slow_phase: 5m` is shorter than `collective: 20m`" in result.stdout + result.stderr
