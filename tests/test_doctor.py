"""`ft doctor` / `launch.preflight`: the pre-flight's checks on real emulated nodes (gloo on CPU).
The all-reduce arithmetic the link check judges by is tested in test_preflight_links.py."""

from __future__ import annotations

import json
import os
import socket

from orchestrator.backends.local.isolation import unavailable_reason
from tests.cli_runner import run_ft
from tests.train_helpers import free_port, write_tiny_spec
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE


def preflight_json(log: str) -> dict:
    """The record the pre-flight prints into the job's log."""
    line = next(line for line in log.splitlines() if "FT_PREFLIGHT_JSON " in line)
    return json.loads(line.split("FT_PREFLIGHT_JSON ", 1)[1])


def test_doctor_measures_two_emulated_nodes(tmp_path, tiny_model_dir):
    """`ft doctor --nodes 2`: the pre-flight's checks on two emulated nodes, nothing trained."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    result = run_ft("doctor", str(spec), "--nodes", "2", "--master-port", str(free_port()),
                    cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = preflight_json(result.stdout)
    assert report["ok"] and report["phase"] == "nodes"
    hosts = ["node0", "node1"] if unavailable_reason() is None else [socket.gethostname()] * 2
    assert report["nodes"] == [{"node_rank": n, "host": hosts[n], "ok": True} for n in (0, 1)]
    gpu = {f["node_rank"]: f for f in report["findings"] if f["check"] == "gpu"}
    assert set(gpu) == {0, 1}
    for finding in gpu.values():  # measured: a real rate on each node's CPU
        (device,) = finding["data"]["devices"]
        assert device["device"] == "CPU" and device["gflops"] > 0
    assert {f["node_rank"] for f in report["findings"] if f["check"] == "software"} == {0, 1}
    links = {f["node_rank"]: f for f in report["findings"] if f["check"] == "link"}
    assert set(links) >= {0, 1} and all(f["ok"] for f in links.values())  # the one pair
    for node in (0, 1):
        assert f"ft pre-flight: node {node} ({hosts[node]}): OK" in result.stdout
    assert not list((tmp_path / "out").glob("checkpoint-*"))  # nothing trained


def test_a_failing_preflight_stops_the_job_before_training(tmp_path, tiny_model_dir):
    """A threshold no pair of GPUs can meet (every GPU at least the median: with two, the
    slower one is under it): the check fails, every node ends with exit 78, training never
    starts."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={
        "nodes": 2, "preflight": {"gpu_fraction": 1.0}})
    result = run_ft("launch", str(spec), "--backend", "local", "--master-port",
                    str(free_port()), cwd=tmp_path, env={**os.environ})
    log = result.stdout + result.stderr
    assert result.returncode == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    assert "FAILED: gpu: CPU: fp32 matmul" in log
    assert "launch.preflight.gpu_fraction 1)" in log
    for node in (0, 1):
        assert f"[node{node}] ft node: the pre-flight failed (said above); training did not " \
            "start: exit 78" in log
        # Said once per node (by its local rank 0), not once per rank.
        assert log.count(f"[node{node}] error: pre-flight failed: node ") == 1
    assert "ft launch: exit 78: the pre-flight failed (said above); training did not start" \
        in log
    assert "Traceback" not in log
    assert not list((tmp_path / "out").glob("checkpoint-*"))
    assert not preflight_json(result.stdout)["ok"]


def test_doctor_through_accelerate_with_a_single_process(tmp_path, tiny_model_dir):
    """accelerate starts one plain process (no RANK): the rank still knows it is inside the
    job and checks, instead of emulating nodes again."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={"launcher": "accelerate"})
    result = run_ft("doctor", str(spec), "--master-port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "accelerate launch" in result.stdout and "doctor" in result.stdout
    report = preflight_json(result.stdout)
    (gpu,) = [f for f in report["findings"] if f["check"] == "gpu"]
    assert gpu["ok"] and "one rank in all: nothing to compare with" in gpu["detail"]


def test_doctor_on_a_backend_submits_a_job_whose_nodes_only_check(tmp_path, tiny_model_dir):
    """`ft doctor --backend X`: the rendered job is the training job with FT_DOCTOR_ONLY=1
    in its environment, and `ft node` there starts ranks that run `ft doctor --in-job`."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    rendered = run_ft("doctor", str(spec), "--backend", "dstack", "--dry-run", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stdout[-2000:] + rendered.stderr[-2000:]
    assert "FT_DOCTOR_ONLY: '1'" in rendered.stdout or "FT_DOCTOR_ONLY=1" in rendered.stdout
    assert "ft node " in rendered.stdout
    node_env = {**os.environ, "FT_DOCTOR_ONLY": "1", "DSTACK_MASTER_NODE_IP": "10.0.0.5",
                "DSTACK_NODE_RANK": "0", "DSTACK_NODES_NUM": "1", "DSTACK_GPUS_PER_NODE": "1"}
    node = run_ft("node", str(spec), "--backend", "dstack", "--dry-run", cwd=tmp_path,
                  env=node_env)
    assert node.returncode == 0, node.stderr[-2000:]
    launch_line = next(line for line in node.stderr.splitlines() if "ft node: launch:" in line)
    assert "doctor" in launch_line and "--in-job" in launch_line and " train " not in launch_line
    # On emulated nodes there is nothing to print: said, not ignored.
    here = run_ft("doctor", str(spec), "--dry-run", cwd=tmp_path)
    assert here.returncode == 2 and "ft doctor --dry-run prints the job" in here.stderr
