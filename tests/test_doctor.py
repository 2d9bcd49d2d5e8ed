"""`ft doctor` / `launch.preflight`: real all-reduces between emulated nodes (gloo on CPU)."""

from __future__ import annotations

import json
import os

import pytest

from orchestrator.backends.local.isolation import unavailable_reason
from tests.cli_runner import run_ft
from tests.train_helpers import free_port, write_tiny_spec
from trainer.preflight.links_measure import bus_bandwidth, groups_to_measure


def _doctor_json(log: str) -> dict:
    line = next(line for line in log.splitlines() if "FT_DOCTOR_JSON " in line)
    return json.loads(line.split("FT_DOCTOR_JSON ", 1)[1])


def test_every_node_pair_is_measured_on_its_own():
    two = groups_to_measure({0: [0], 1: [1]})
    assert two == [("pair", [0, 1])]
    three = groups_to_measure({0: [0, 1], 1: [2, 3], 2: [4, 5]})
    assert [kind for kind, _ in three].count("node") == 3
    assert [nodes for kind, nodes in three if kind == "pair"] == [[0, 1], [0, 2], [1, 2]]
    assert three[-1] == ("world", [0, 1, 2])
    # Beyond 8 nodes, all pairs would be 45+ measurements: neighbours in a ring instead.
    ring = [nodes for kind, nodes in groups_to_measure({n: [n] for n in range(10)})
            if kind == "pair"]
    assert len(ring) == 10 and [0, 9] in ring and [4, 5] in ring


def test_bus_bandwidth_follows_nccl_tests():
    # 1 GB in 10 ms over 2 ranks: algbw 100 GB/s, busbw x 2(n-1)/n = 1.
    assert bus_bandwidth(10**9, 0.01, 2) == pytest.approx(100)
    assert bus_bandwidth(10**9, 0.01, 8) == pytest.approx(175)
    assert bus_bandwidth(10**9, 0.01, 1) == 0


def test_doctor_measures_two_emulated_nodes(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    result = run_ft("doctor", str(spec), "--nodes", "2", "--iters", "3", "--master-port",
                    str(free_port()), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "ft doctor: 2 rank(s) on 2 node(s), gloo" in result.stdout
    report = _doctor_json(result.stdout)
    assert report["expected_internode_busbw_gbs"] == 2  # the tiny spec's tcp profile
    (pair,) = report["results"]
    assert pair["kind"] == "pair" and pair["nodes"] == [0, 1] and pair["busbw_gbs"] > 0
    assert report["single_host"] and all(f["ok"] for f in report["findings"])
    if unavailable_reason() is None:  # isolated nodes: own hostnames, still one machine
        assert pair["hosts"] == ["node0", "node1"]


def test_a_failing_preflight_stops_the_job_before_training(tmp_path, tiny_model_dir):
    """An expectation no loopback can meet: the check fails, training never starts."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={
        "nodes": 2, "preflight": True, "env": {"FT_DOCTOR_EXPECT_GBS": "100000"}})
    result = run_ft("launch", str(spec), "--backend", "local", "--master-port",
                    str(free_port()), cwd=tmp_path, env={**os.environ})
    assert result.returncode == 78, result.stdout[-3000:] + result.stderr[-2000:]
    assert "FAIL link" in result.stdout and "the link to node 1 (" in result.stdout
    assert "under 0.5 x the 100000 GB/s FT_DOCTOR_EXPECT_GBS expects" in result.stdout
    assert "pre-flight failed: " in result.stdout
    assert not list((tmp_path / "out").glob("checkpoint-*"))
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_doctor_through_accelerate_with_a_single_process(tmp_path, tiny_model_dir):
    """accelerate starts one plain process (no RANK): the rank still knows it is inside the
    job and measures, instead of emulating nodes again."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={"launcher": "accelerate"})
    result = run_ft("doctor", str(spec), "--iters", "2", "--master-port", str(free_port()),
                    cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "accelerate launch" in result.stdout and "doctor" in result.stdout
    assert "ft doctor: one process in all: nothing to all-reduce with" in result.stdout
    assert _doctor_json(result.stdout)["results"] == []
