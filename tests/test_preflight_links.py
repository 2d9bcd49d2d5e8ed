"""The pre-flight's collectives check: the verdict on measured links (which node or pair is
slow), the transport NCCL chose on real NCCL log lines, and, on 3 isolated emulated nodes
with one node's link shaped by `tc`, a job that names that node and stops before training."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.cli_runner import run_ft
from tests.support.isolation_checks import needs_isolation
from tests.train_helpers import free_port, shared_volumes, write_tiny_spec
from trainer.preflight.links_measure import (
    LinkMeasurements,
    Measurement,
    bus_bandwidth,
    groups_to_measure,
    sized,
)
from trainer.preflight.links_transport import judge as judge_transport
from trainer.preflight.links_transport import read_own
from trainer.preflight.links_verdict import blamed_nodes, judge, relative_reference
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE, PREFLIGHT_RECORD

NCCL_LOGS = Path(__file__).resolve().parent / "fixtures" / "nccl"
# 100 Mbit/s (12.5 MB/s) each way on node 2's link; the others run at hundreds of MB/s over
# the emulated switch even on a busy host. tbf, not netem: this kernel has no sch_netem.
SLOW_LINK = "2=tbf rate 100mbit burst 64kb latency 100ms"


def _found(pairs: dict[tuple[int, int], float], within: dict[int, float] | None = None,
           single_host: bool = True) -> LinkMeasurements:
    nodes = sorted({n for pair in pairs for n in pair} | set(within or {}))
    hosts = {n: f"host{n}" for n in nodes}
    results = [Measurement("node", [n], [hosts[n]], 8, 2**20, gbs)
               for n, gbs in (within or {}).items()]
    results += [Measurement("pair", [a, b], [hosts[a], hosts[b]], 2, 2**20, gbs)
                for (a, b), gbs in pairs.items()]
    return LinkMeasurements(hosts, {n: [n] for n in nodes}, ["cpu"], single_host, results)


def _failed(findings) -> list[tuple[int | None, str]]:
    return [(f.node_rank, f.detail) for f in findings if not f.ok]


# --- What is measured, and the verdict -----------------------------------------------------

def test_every_node_pair_is_measured_on_its_own():
    three = groups_to_measure({0: [0, 1], 1: [2, 3], 2: [4, 5]})
    assert [kind for kind, _ in three].count("node") == 3
    assert [nodes for kind, nodes in three if kind == "pair"] == [[0, 1], [0, 2], [1, 2]]
    assert three[-1] == ("world", [0, 1, 2])
    # Beyond 8 nodes all pairs would be 45+ measurements: neighbours in a ring instead.
    ring = [nodes for kind, nodes in groups_to_measure({n: [n] for n in range(10)})
            if kind == "pair"]
    assert len(ring) == 10 and [0, 9] in ring and [4, 5] in ring
    assert groups_to_measure({0: [0], 1: [1]}) == [("pair", [0, 1])]  # no world for two


def test_bus_bandwidth_follows_nccl_tests():
    assert bus_bandwidth(10**9, 0.01, 2) == pytest.approx(100)  # algbw 100, x 2(n-1)/n = 1
    assert bus_bandwidth(10**9, 0.01, 8) == pytest.approx(175)
    assert bus_bandwidth(10**9, 0.01, 1) == 0


def test_a_slow_link_is_measured_with_less_data():
    """The probe's speed sizes the all-reduces: about 0.2 s each, powers of two."""
    assert sized(2**20, 0.0001, 0.2, 256 * 2**20) == 256 * 2**20  # NVLink/IB: the plateau
    assert sized(2**20, 0.084, 0.2, 256 * 2**20) == 2 * 2**20  # 100 Mbit/s
    assert sized(2**20, 5.0, 0.2, 256 * 2**20) == 2**20  # never under the probe


def test_one_slow_node_of_three_is_named_not_its_pairs():
    """2 of the 3 pairs hold the slow node: the median pair is a slow one, so the reference
    is the median of each node's fastest pair."""
    pairs = {(0, 1): 1.0, (0, 2): 0.1, (1, 2): 0.12}
    assert relative_reference(pairs) == 1.0
    findings = judge(_found(pairs), 0.5, None, absolute=False)
    ((node, detail),) = _failed(findings)
    assert node == 2
    assert detail == ("every pair with it is slow: node 0 (host0) 0.1 GB/s, node 1 (host1) "
                      "0.12 GB/s; under 0.5 x the others' 1 GB/s")
    assert [f.ok for f in findings if f.node_rank in (0, 1)] == [True, True]


def test_one_bad_cable_names_the_pair():
    pairs = {(a, b): 10.0 for a in range(4) for b in range(a + 1, 4)}
    pairs[(1, 3)] = 2.0
    ((node, detail),) = _failed(judge(_found(pairs), 0.5, None, absolute=False))
    assert (node, detail) == (1, "the link to node 3 (host3) is slow: 2 GB/s, under 0.5 x "
                                 "the others' 10 GB/s")


def test_the_node_in_every_slow_pair_is_named():
    pairs = {(a, b): 10.0 for a in range(5) for b in range(a + 1, 5)}
    pairs[(0, 2)] = pairs[(2, 4)] = 3.0  # node 2 is slow towards two of its four peers
    assert blamed_nodes(pairs, {(0, 2), (2, 4)}) == [2]
    ((node, detail),) = _failed(judge(_found(pairs), 0.5, None, absolute=False))
    assert node == 2 and detail.startswith("it is in every slow pair: node 0 (host0) 3 GB/s")


def test_nodes_on_one_host_are_not_held_to_a_fabric_figure():
    healthy = {(0, 1): 1.0, (0, 2): 0.9, (1, 2): 1.1}
    assert _failed(judge(_found(healthy), 0.5, 150.0, absolute=False)) == []
    # Noise well inside the fraction is no finding.
    assert _failed(judge(_found({(0, 1): 1.0, (0, 2): 0.6, (1, 2): 0.7}), 0.5, None,
                         absolute=False)) == []


def test_a_real_fabric_is_held_to_the_profile():
    """Two nodes: no pair to compare with, the profile's figure alone."""
    ((node, detail),) = _failed(judge(_found({(0, 1): 3.7}, single_host=False), 0.5, 150.0,
                                      absolute=True))
    assert node == 0 and detail == ("the link to node 1 (host1) is slow: 3.7 GB/s, under 0.5 "
                                    "x the 150 GB/s the cluster profile expects")
    assert _failed(judge(_found({(0, 1): 120.0}, single_host=False), 0.5, 150.0,
                         absolute=True)) == []


def test_every_pair_slow_is_the_fabric_not_a_node():
    pairs = {(0, 1): 3.5, (0, 2): 3.7, (1, 2): 3.6}
    ((node, detail),) = _failed(judge(_found(pairs, single_host=False), 0.5, 150.0,
                                      absolute=True))
    assert node is None
    assert detail.startswith("every node pair is slow (median 3.6 GB/s, under 0.5 x the 150 "
                             "GB/s the cluster profile expects): the fabric, not one node")


def test_a_slow_node_inside_is_named():
    findings = judge(_found({}, within={0: 300.0, 1: 310.0, 2: 40.0}), 0.5, None, False)
    ((node, detail),) = _failed(findings)
    assert node == 2 and detail == ("its own 8 ranks all-reduce at 40 GB/s, under 0.5 x the "
                                    "median node's 300 GB/s (NVLink/PCIe)")


# --- The transport NCCL chose, from real NCCL log lines --------------------------------------

def _node_log(tmp_path: Path, fixture: str, node: int, expected: str):
    """A node's NCCL log where ft node puts it (NCCL_DEBUG_FILE with %h and %p), holding a
    real log excerpt, read as the check reads it."""
    (tmp_path / f"nccl.host{node}.4242.log").write_text((NCCL_LOGS / fixture).read_text())
    env = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": str(tmp_path / "nccl.%h.%p.log"),
           "FT_FABRIC_EXPECTED": expected,
           "FT_FABRIC_EXPECTED_BY": f"the cluster profile `{expected}`"}
    return read_own(env, node, nodes=3, pid=4242, hostname=f"host{node}.cluster")


@pytest.mark.parametrize("expected", ["infiniband", "roce", "efa"])
def test_a_node_on_tcp_sockets_under_an_rdma_profile_fails(tmp_path, expected):
    good = {"infiniband": "ib_gdr.log", "roce": "roce.log", "efa": "efa.log"}[expected]
    reports = [_node_log(tmp_path, good, 0, expected),
               _node_log(tmp_path, "socket_fallback.log", 1, expected),
               _node_log(tmp_path, good, 2, expected)]
    findings = judge_transport(reports, uses_nccl=True)
    assert [f.ok for f in findings] == [True, False, True]
    bad = findings[1]
    assert (bad.node_rank, bad.host, bad.data["fabric"]) == (1, "host1.cluster", "socket")
    assert bad.detail.startswith("NCCL transport between nodes: NET/Socket (eth0) - TCP, no "
                                 "RDMA; within the node: P2P/IPC; NCCL fell back to TCP "
                                 f"sockets between nodes, but the cluster profile `{expected}` "
                                 f"expects {expected}")
    assert bad.detail.endswith(f"(NCCL's log: {tmp_path}/nccl.host1.4242.log)")


def test_sockets_are_fine_where_tcp_is_expected(tmp_path):
    (finding,) = judge_transport([_node_log(tmp_path, "socket_fallback.log", 0, "tcp")], True)
    assert finding.ok and "NET/Socket (eth0)" in finding.detail


def test_an_efa_profile_on_another_libfabric_provider_fails(tmp_path):
    log = (NCCL_LOGS / "efa.log").read_text().replace("Selected Provider is efa",
                                                      "Selected Provider is tcp")
    (tmp_path / "custom.log").write_text(log)
    report = read_own({"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": str(tmp_path / "custom.log"),
                       "FT_FABRIC_EXPECTED": "efa"}, 0, 2, 1, "h")
    (finding,) = judge_transport([report], True)
    assert not finding.ok and finding.data["fabric"] == "ofi"


def test_no_log_to_read_is_said_not_failed(tmp_path):
    report = read_own({"NCCL_DEBUG": "WARN"}, 0, 2, 1, "h")
    (finding,) = judge_transport([report], True)
    assert finding.ok and finding.detail.startswith("not checked: NCCL_DEBUG=WARN is set")


def test_gloo_has_no_nccl_to_judge():
    (finding,) = judge_transport([], uses_nccl=False)
    assert finding.ok and finding.detail.startswith("gloo (no NCCL)")


# --- The check itself, on three real gloo ranks ----------------------------------------------

def _rank(rank: int, port: int, env: dict[str, str], out) -> None:
    """One rank of a 3-node world on this host (forked: no second torch import)."""
    import torch
    import torch.distributed as dist

    from trainer.distributed.world_ranks import WorldRanks
    from trainer.preflight import links_check
    from trainer.preflight.runner import Context
    from trainer.torch_free.preflight_settings import Preflight

    torch.set_num_threads(1)  # no OpenMP pool across the fork
    os.environ.update(env)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=3)
    world = WorldRanks(rank=rank, world_size=3, node_rank=rank)
    context = Context(Preflight(), None, world, torch.device("cpu"), Path("."))
    try:
        findings = links_check.check(context)
        if rank == 0:
            out.put([f.record() for f in findings])
    finally:
        dist.destroy_process_group()


def _check_three_ranks(env: dict[str, str]) -> list[dict]:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    out, port = context.Queue(), free_port()
    procs = [context.Process(target=_rank, args=(r, port, env, out)) for r in range(3)]
    for proc in procs:
        proc.start()
    try:
        return out.get(timeout=60)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            proc.kill()


def test_three_healthy_ranks_pass_and_name_every_node():
    records = _check_three_ranks({})
    links = [r for r in records if r["check"] == "link"]
    assert [(r["node_rank"], r["ok"]) for r in links] == [(0, True), (1, True), (2, True),
                                                         (None, True)]
    assert set(links[0]["data"]["pairs_gbs"]) == {"1", "2"}
    assert links[-1]["data"]["seconds"] < 5  # 3 pairs and the world, on two busy cores
    assert records[-1]["detail"].startswith("gloo (no NCCL)")


def test_a_pinned_expectation_holds_any_run_to_it():
    """FT_DOCTOR_EXPECT_GBS: an expectation no loopback reaches, every pair under it."""
    records = _check_three_ranks({"FT_DOCTOR_EXPECT_GBS": "100000"})
    (failed,) = [r for r in records if not r["ok"]]
    assert failed["node_rank"] is None
    assert failed["detail"].startswith("every node pair is slow (median ")
    assert "under 0.5 x the 100000 GB/s FT_DOCTOR_EXPECT_GBS expects" in failed["detail"]


# --- On emulated nodes: a shaped link -------------------------------------------------------

@pytest.mark.parametrize("wanted", ["tbf rate 1mbit", "3=tbf rate 1mbit", "1=", "x=tbf"])
def test_a_bad_link_shaping_is_refused_before_any_tc(wanted):
    from orchestrator.backends.local.network import NodeNetwork, shape_links
    from trainer.torch_free.errors import UserError

    net = NodeNetwork("sw", ("n0", "n1", "n2"), ("10.210.0.1", "10.210.0.2", "10.210.0.3"))
    with pytest.raises(UserError, match=r"FT_LOCAL_LINK_QDISC=.*write `<node rank>=<tc "
                                        r"qdisc>`.*node ranks 0\.\.2"):
        shape_links(net, wanted)


def _launch(tmp_path: Path, tiny_model_dir: Path, env: dict[str, str], **spec):
    spec_path = write_tiny_spec(tmp_path, tiny_model_dir, launch={
        "nodes": 3, "volumes": shared_volumes(tmp_path)}, **spec)
    return run_ft("launch", str(spec_path), "--backend", "local", "--isolate", "--master-port",
                  str(free_port()), cwd=tmp_path, env={**os.environ, **env})


def _record(tmp_path: Path) -> list[dict]:
    return json.loads((tmp_path / "out" / PREFLIGHT_RECORD).read_text())["nodes"]["findings"]


@needs_isolation
def test_a_node_with_a_slow_link_is_named_and_the_job_stops(tmp_path, tiny_model_dir):
    """Node 2's veth shaped to 100 Mbit/s both ways (12.5 MB/s; the other pair runs at
    hundreds of MB/s over the emulated switch even on a busy host)."""
    result = _launch(tmp_path, tiny_model_dir, {"FT_LOCAL_LINK_QDISC": SLOW_LINK})
    log = result.stdout + result.stderr
    assert result.returncode == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    assert re.search(r"FAIL link\s+node 2 \(node2\): every pair with it is slow: node 0 "
                     r"\(node0\) [\d.e-]+ GB/s, node 1 \(node1\)", log), log[-4000:]
    links = {f["node_rank"]: f for f in _record(tmp_path) if f["check"] == "link"}
    assert links[0]["ok"] and links[1]["ok"] and not links[2]["ok"]
    healthy, shaped = links[0]["data"]["pairs_gbs"]["1"], links[0]["data"]["pairs_gbs"]["2"]
    assert healthy > 5 * shaped
    assert links[2]["data"]["measured_again"] == ["0", "1"]  # named only after a 2nd look
    assert links[0]["data"]["measured_again"] == ["2"]
    assert not list((tmp_path / "out").glob("checkpoint-*"))  # no step was trained
