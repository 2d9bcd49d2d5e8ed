"""The pre-flight's frame and its GPU and software checks (trainer/preflight/): what rank 0
judges from every rank's numbers, and on real isolated emulated nodes that a CPU-capped node
or a node running another ft is named and stops the job (exit 78, nothing trained), while a
healthy launch passes, says so, records it and trains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from tests.cli_runner import REPO
from tests.support import cpu_cap
from tests.support.isolation_checks import needs_isolation
from tests.support.slow_node import HOOK, READY, SLOW_CGROUP_ENV, SLOW_NODE_ENV
from tests.test_doctor import preflight_json
from tests.train_helpers import free_port, shared_volumes, write_tiny_spec
from trainer.preflight import gpu_check, software_check
from trainer.preflight.findings import Finding
from trainer.preflight.placement import Place
from trainer.preflight.report import table, verdicts
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE, PREFLIGHT_RECORD

GIB = 2**30


def _gpu(rank, node, gflops, free_gib=70.0, local=0):
    return gpu_check.Reading(Place(rank, node, local, f"host{node}"), f"GPU {local}",
                             "NVIDIA H100", gflops, int(free_gib * GIB), 80 * GIB)


def test_a_gpu_well_under_the_median_is_named_with_its_node_and_index():
    readings = [_gpu(r, r // 2, 700.0, local=r % 2) for r in range(8)]
    readings[5] = _gpu(5, 2, 200.0, local=1)  # node 2, its second GPU
    findings = gpu_check.judge(readings, 0.7)
    assert [f.ok for f in findings] == [True, True, False, True]
    bad = findings[2]
    assert (bad.node_rank, bad.host) == (2, "host2")
    assert bad.detail.startswith("GPU 1: bf16 matmul 200.0 GFLOP/s, 29% of the median")
    assert "launch.preflight.gpu_fraction 0.7" in bad.detail
    assert "job median 700.0 GFLOP/s" in findings[0].detail


def test_a_gpu_whose_memory_another_process_holds_is_named():
    readings = [_gpu(r, r, 700.0) for r in range(3)] + [_gpu(3, 3, 700.0, free_gib=10.0)]
    findings = gpu_check.judge(readings, 0.7)
    assert [f.ok for f in findings] == [True, True, True, False]
    assert "GPU 0: 10.0 GiB free, 14% of the median 70.0 GiB" in findings[3].detail


def test_one_rank_in_all_has_nothing_to_compare_with():
    (finding,) = gpu_check.judge([_gpu(0, 0, 5.0)], 0.7)
    assert finding.ok and "one rank in all: nothing to compare with" in finding.detail


def _prints(**changes):
    base = {"ft": "aaaa", "torch": "2.13.0", "cuda": "12.8", "nccl": "2.27.3",
            "driver": "570.1", "python": "3.11.7", "transformers": "5.25.0", "peft": "0.21.2",
            "spec": "5pec"}
    return {**base, **changes}


def test_the_node_that_differs_from_the_majority_is_named_with_both_values():
    nodes = {0: ("a", _prints()), 1: ("b", _prints(torch="2.12.0")), 2: ("c", _prints())}
    findings = software_check.judge(nodes)
    assert [f.ok for f in findings] == [True, False, True]
    assert findings[1].detail == "differs: torch 2.12.0 here, 2.13.0 on node(s) 0, 2"
    assert findings[0].detail.startswith("same as the other 2 node(s): ft aaaa, torch 2.13.0")
    # Two nodes, no majority: node 0 speaks for the job, the other is named.
    two = software_check.judge({0: ("a", _prints()), 1: ("b", _prints(ft="bbbb"))})
    assert [f.ok for f in two] == [True, False]
    assert two[1].detail == "differs: ft bbbb here, aaaa on node(s) 0"


def test_ft_code_hash_follows_the_sources_it_imports(tmp_path):
    """Another copy of ft, first on PYTHONPATH with one line changed, hashes differently."""
    copy = tmp_path / "image"
    for package in software_check.FT_PACKAGES:
        shutil.copytree(REPO / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = "from trainer.preflight.software_check import ft_code_hash; print(ft_code_hash())"

    def hashed() -> str:
        env = {**os.environ, "PYTHONPATH": str(copy)}
        # From tmp_path: `python -c` puts its working directory first on sys.path.
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert hashed() == software_check.ft_code_hash()
    with (copy / "trainer" / "preflight" / "findings.py").open("a") as f:
        f.write("# patched on this node\n")
    assert hashed() != software_check.ft_code_hash()


def test_the_table_and_a_verdict_line_name_every_node():
    places = [Place(0, 0, 0, "node0"), Place(1, 1, 0, "node1")]
    findings = [Finding("gpu", 0, "node0", True, "fine"),
                Finding("gpu", 1, "node1", False, "GPU 0: slow"),
                Finding("link", None, None, True, "world all-reduce fine")]
    assert verdicts(findings, places) == {0: ("node0", "OK"),
                                          1: ("node1", "FAILED: gpu: GPU 0: slow")}
    lines = table(findings, "nodes", places, 1.25).splitlines()
    assert lines[0] == "ft pre-flight (nodes): 2 node(s), 2 rank(s), 2 check(s) in 1.2 s"
    assert lines[2] == "ft pre-flight: FAIL gpu        node 1 (node1): GPU 0: slow"
    assert lines[3] == "ft pre-flight: ok   link       job: world all-reduce fine"


@pytest.mark.parametrize("local_rank", ["0", "1"])
def test_a_failed_preflight_is_said_and_reported_by_each_nodes_local_rank_0_only(
        local_rank, tmp_path, monkeypatch, capsys):
    """Every rank raises the same verdict: only local rank 0 prints it and leaves the report
    `ft node` ends the node by (exit 78); the others leave quietly, so a node of 8 GPUs says
    it once."""
    from orchestrator.cli.train_commands import _user_error_under_ft_node
    from trainer.preflight.runner import PreflightFailed
    from trainer.torch_free.exit_codes import STOP_REPORT_DIR, USER_ERROR_REPORT

    monkeypatch.setenv(STOP_REPORT_DIR, str(tmp_path))
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setenv("RANK", str(8 + int(local_rank)))
    with pytest.raises(SystemExit) as ended:
        _user_error_under_ft_node(PreflightFailed("pre-flight failed: node 1 (b): gpu: slow"))
    assert ended.value.code == 0
    said = capsys.readouterr().err
    reports = list(tmp_path.glob(USER_ERROR_REPORT.format(rank="*")))
    if local_rank == "0":
        assert said == "error: pre-flight failed: node 1 (b): gpu: slow\n"
        assert json.loads(reports[0].read_text())["exit_code"] == PREFLIGHT_FAILED_EXIT_CODE
    else:
        assert said == "" and reports == []


# ---- real emulated nodes -----------------------------------------------------------------

def _launch(spec: Path, cwd: Path, env: dict, on_line=None) -> tuple[int, str]:
    """`ft launch --backend local`, its output read as it comes (`on_line` sees each line)."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
                             "--backend", "local", "--master-port", str(free_port())],
                            cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if on_line:
            on_line(line)
    return proc.wait(timeout=120), "".join(lines)


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


@needs_isolation
@pytest.mark.skipif(cpu_cap.unavailable_reason() is not None,
                    reason=str(cpu_cap.unavailable_reason()))
def test_a_cpu_capped_node_is_named_and_the_job_stops_before_training(tmp_path,
                                                                       tiny_model_dir):
    # One thread per rank: a quota shared by several threads is handed out in per-CPU
    # slices, which blurs a small cap.
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={
        "nodes": 2, "env": {"OMP_NUM_THREADS": "1"}})
    with cpu_cap.capped_cgroup(percent_of_a_core=2) as (cgroup, procs):
        marker = {SLOW_CGROUP_ENV: cgroup, "GROUP_RANK": "1"}

        def cap_when_ready(line: str) -> None:
            if READY in line:  # node 1's rank waits in its hook until it is moved
                threading.Thread(target=cpu_cap.move,
                                 args=(cpu_cap.processes_with(marker), procs)).start()

        code, log = _launch(spec, tmp_path, _env(FT_TRAINER_HOOKS=HOOK, **{
            SLOW_NODE_ENV: "1", SLOW_CGROUP_ENV: cgroup}), cap_when_ready)
    assert code == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    assert "[node1] ft pre-flight: node 1 (node1): FAILED: gpu: CPU: fp32 matmul" in log
    assert "[node0] ft pre-flight: node 0 (node0): OK" in log
    report = preflight_json(log)
    assert [n["ok"] for n in report["nodes"]] == [True, False]
    (slow,) = [f for f in report["findings"] if f["check"] == "gpu" and not f["ok"]]
    assert slow["node_rank"] == 1 and slow["host"] == "node1"
    assert "ft launch: exit 78: the pre-flight failed" in log
    assert "Traceback" not in log
    assert not list((tmp_path / "out").glob("checkpoint-*"))


@needs_isolation
def test_a_node_running_another_ft_is_named_and_the_job_stops(tmp_path, tiny_model_dir):
    """Node 1's own disk holds a patched copy of ft first on its PYTHONPATH (its private
    data-cache directory; node 0 has none there): another image on one node."""
    submit, out, prepared = tmp_path / "submit", tmp_path / "out", tmp_path / "prepared"
    submit.mkdir()
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={
        "nodes": 2, "volumes": shared_volumes(out)})
    image = submit / ".ft" / "local" / "tiny" / "node1" / str(prepared).lstrip("/") / "ft"
    shutil.copytree(REPO / "trainer", image / "trainer")
    with (image / "trainer" / "preflight" / "findings.py").open("a") as f:
        f.write("# patched on node 1\n")
    code, log = _launch(spec, submit, _env(PYTHONPATH=f"{prepared / 'ft'}:{REPO}"))
    assert code == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    report = preflight_json(log)
    (other,) = [f for f in report["findings"] if f["check"] == "software" and not f["ok"]]
    assert (other["node_rank"], other["host"]) == (1, "node1")
    assert other["detail"].startswith(f"differs: ft {other['data']['ft']} here, ")
    assert other["detail"].endswith(" on node(s) 0")
    assert "[node1] ft pre-flight: node 1 (node1): FAILED: software: differs: ft " in log
    assert "Traceback" not in log
    assert not list(out.glob("checkpoint-*"))


@needs_isolation
def test_a_healthy_launch_passes_the_preflight_records_it_and_trains(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=2, save_steps=100000,
                           eval_steps=100000, launch={"nodes": 2})
    code, log = _launch(spec, tmp_path, _env())
    assert code == 0, log[-4000:]
    assert "[node0] ft pre-flight (nodes): 2 node(s), 2 rank(s)," in log
    for node in (0, 1):
        assert f"[node{node}] ft pre-flight: node {node} (node{node}): OK" in log
    record = json.loads((tmp_path / "out" / PREFLIGHT_RECORD).read_text())["nodes"]
    assert record == preflight_json(log)
    assert record["ok"] and record["seconds"] < 30
    assert {(f["check"], f["node_rank"]) for f in record["findings"]} >= \
        {("gpu", 0), ("gpu", 1), ("software", 0), ("software", 1)}
    assert (tmp_path / "out" / "ft-train-summary.json").is_file()  # and it trained


def test_a_failed_preflight_leaves_the_named_nodes_for_slurms_requeue(tmp_path, monkeypatch):
    """Rank 0 writes bad-node-<node rank> for each node a failed finding names (the batch
    script excludes them when it requeues); a finding of the whole job names no node."""
    from trainer.distributed.bad_nodes import BAD_NODE_FILE, NODE_EXITS_ENV
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.preflight.runner import Context, PreflightFailed, conclude
    from trainer.torch_free.preflight_settings import Preflight

    monkeypatch.setenv(NODE_EXITS_ENV, str(tmp_path / "exits"))
    (tmp_path / "exits").mkdir()
    context = Context(Preflight(), None, WorldRanks(), torch.device("cpu"), tmp_path / "out")
    findings = [Finding("gpu", 0, "a", True, "fine"), Finding("gpu", 2, "c", False, "slow"),
                Finding("link", None, None, False, "every pair slow")]
    with pytest.raises(PreflightFailed):
        conclude(findings, "nodes", context)
    assert sorted(p.name for p in (tmp_path / "exits").iterdir()) == \
        [BAD_NODE_FILE.format(node_rank=2)]
    assert "gpu: slow" in (tmp_path / "exits" / "bad-node-2").read_text()
