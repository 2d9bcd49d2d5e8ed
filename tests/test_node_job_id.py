"""The scheduler's job id reaches the trainer as one variable, FT_JOB_ID: each backend names
the variable that survives its restarts (`node_vars.job_id`), `ft node` exports it before
starting the launcher, and `ft train` under a launcher of the user's own reads it itself.

Through the real code paths: `ft node` runs in a child process as on a node and starts a
`torchrun` shim that records its environment; `ft train` runs for real until it takes the
output_dir lease, which records the job it belongs to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import backends
from orchestrator.node.job_id import job_id_outside_node
from tests.cli_runner import REPO
from tests.train_helpers import write_tiny_spec
from trainer.checkpoint.output_lease import LEASE_FILE
from trainer.torch_free.job_identity import JOB_ID_ENV

# Each backend's variable that names a job across its restarts and requeues.
JOB_VARIABLES = {"local": "FT_LOCAL_JOB_ID", "dstack": "DSTACK_RUN_NAME",
                 "skypilot": "SKYPILOT_TASK_ID", "slurm": "SLURM_JOB_ID",
                 "modal": "FT_MODAL_JOB_ID"}

CHILD = """
import sys
from pathlib import Path
from orchestrator.spec.launch_schema import LaunchSpec
from orchestrator.node.entry import run_node
sys.exit(run_node(LaunchSpec(nodes=1, gpus_per_node=0, cluster="tcp"), sys.argv[1], None,
                  sys.argv[2], sysfs_root=Path(sys.argv[3])))
"""

SHIM = """#!/bin/sh
python3 -c 'import json, os; json.dump(dict(os.environ), open(os.environ["SHIM_OUT"], "w"))'
"""


def test_every_backend_declares_its_job_variable():
    assert {name: backends.get(name).node_vars.job_id for name in backends.names()} == \
        JOB_VARIABLES


def _launcher_env(backend: str, environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment `ft node --backend NAME` starts the launcher with, on a node whose
    scheduler set `environ`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "torchrun").write_text(SHIM)
    (bin_dir / "torchrun").chmod(0o755)
    spec = tmp_path / "ft-job.yaml"
    spec.write_text("base_model: tiny\n")
    out = tmp_path / "launcher-env.json"
    env = {**environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "SHIM_OUT": str(out)}
    result = subprocess.run([sys.executable, "-c", CHILD, str(spec), backend,
                             str(tmp_path / "sys")], env=env, capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"ft node: backend {backend}" in result.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", sorted(JOB_VARIABLES))
def test_ft_node_exports_the_backends_job_id_as_ft_job_id(name, tmp_path):
    """Node 0 of a one-node job with the variables the backend sets (as `--emulate` gives
    them), its job variable holding a requeued job's id, and a stale FT_JOB_ID inherited
    from the submitting shell: the launcher gets the scheduler's id."""
    backend = backends.get(name)
    variable = backend.node_vars.job_id
    environ = {**backend.emulated_env(rank=0, nodes=1, gpus_per_node=0, job_name="job"),
               variable: "4242", JOB_ID_ENV: "stale-from-the-shell"}
    seen = _launcher_env(name, environ, tmp_path)
    assert seen[JOB_ID_ENV] == f"{variable}=4242"


@pytest.mark.parametrize("name", sorted(JOB_VARIABLES))
def test_the_emulated_nodes_of_one_launch_are_one_job_named_by_the_launch(name):
    """Every node of `ft launch --backend local [--emulate NAME]` gets the launch's job id
    (its process id in it): the next launch is another job, which must not take the running
    one's output_dir lease as its own restart's."""
    backend = backends.get(name)
    ids = {backend.emulated_env(rank, 2, 0, "job")[backend.node_vars.job_id] for rank in (0, 1)}
    (job,) = ids
    assert str(os.getpid()) in job


def test_ft_train_outside_ft_node_takes_the_job_id_from_the_scheduler():
    """A user's own `srun torchrun ... ft train`: the same FT_JOB_ID as under `ft node`; one
    that is set already (by `ft node`, or the user's own launcher) stays; no scheduler, none."""
    assert job_id_outside_node({"SLURM_JOB_ID": "7", "SLURM_NODEID": "0"}) == \
        {JOB_ID_ENV: "SLURM_JOB_ID=7"}
    assert job_id_outside_node({"DSTACK_RUN_NAME": "tiny-1"}) == \
        {JOB_ID_ENV: "DSTACK_RUN_NAME=tiny-1"}
    assert job_id_outside_node({"SLURM_JOB_ID": "7", JOB_ID_ENV: "mine"}) == {}
    assert job_id_outside_node({"HOME": "/root"}) == {}


def test_a_real_ft_train_in_a_slurm_job_without_ft_node_leases_as_that_job(tmp_path,
                                                                           tiny_model_dir):
    """`ft train` started as by a user's own launcher inside Slurm job 4242: the output_dir
    lease it takes names the job, so a requeued attempt takes it over at once."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLURM_JOB_ID": "4242"}
    env.pop(JOB_ID_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "train", str(spec)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lease = tmp_path / "out" / LEASE_FILE
    try:
        deadline = time.monotonic() + 240
        while not lease.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        held = json.loads(lease.read_text()) if lease.exists() else None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        stderr = proc.communicate()[1]
    assert held is not None, stderr[-3000:]
    assert held["job"] == "SLURM_JOB_ID=4242"

