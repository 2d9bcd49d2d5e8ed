"""ft reports which transport NCCL chose, read from NCCL's own INFO log: the parser on real
log excerpts (tests/fixtures/nccl, each citing the log it comes from), where the log is,
and who prints what. No GPU needed; tests/test_gpu.py checks the line on real GPUs."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from trainer.distributed.nccl_log import (
    expand_debug_file,
    log_to_read,
    parse,
    summary,
    transport_report,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nccl"


def _parsed(name: str):
    return parse((FIXTURES / name).read_text().splitlines())


@pytest.mark.parametrize(("name", "line"), [
    ("ib_gdr.log", "NET/IB (mlx5_0:1, mlx5_1:1, mlx5_4:1, mlx5_5:1, GDR on); within the node: "
                   "P2P/CUMEM"),
    ("ib_no_gdr.log", "NET/IB (GDR off); within the node: P2P/direct pointer"),
    ("roce.log", "NET/IB (mlx5_10:1, mlx5_11:1, RoCE)"),
    ("efa.log", "NET/OFI (aws-ofi-nccl 1.4.0aws, provider efa, GDR on); within the node: "
                "P2P/IPC"),
    ("efa_shared.log", "NET/OFI (aws-ofi-nccl 1.11.0-aws, GDR on); within the node: P2P/CUMEM"),
    ("socket_fallback.log", "NET/Socket (eth0) - TCP, no RDMA; within the node: P2P/IPC"),
])
def test_the_transport_between_nodes_from_real_logs(name, line):
    assert summary(_parsed(name), nodes=2)[0] == f"NCCL transport between nodes: {line}"


@pytest.mark.parametrize(("name", "fabric"), [
    ("ib_gdr.log", "infiniband"), ("ib_no_gdr.log", "infiniband"), ("roce.log", "roce"),
    ("efa.log", "efa"), ("efa_shared.log", "efa"), ("socket_fallback.log", "socket"),
    ("one_node.log", None)])
def test_the_fabric_nccl_chose(name, fabric):
    assert _parsed(name).fabric == fabric


def test_one_node_reports_the_transport_within_it():
    assert summary(_parsed("one_node.log"), nodes=1) == \
        ["NCCL transport within the node: P2P/CUMEM, SHM/direct"]


@pytest.mark.parametrize("expected", ["infiniband", "roce", "efa"])
def test_a_fall_back_to_tcp_under_an_rdma_profile_is_a_warning(expected):
    lines = summary(_parsed("socket_fallback.log"), 2, expected,
                    f"the cluster profile `{expected}`")
    assert lines[1].startswith("WARNING: NCCL fell back to TCP sockets between nodes, but the "
                               f"cluster profile `{expected}` expects {expected}")
    assert ("aws-ofi-nccl" in lines[1]) == (expected == "efa")


@pytest.mark.parametrize(("name", "expected"), [
    ("socket_fallback.log", "tcp"), ("socket_fallback.log", None), ("ib_gdr.log", "infiniband"),
    ("roce.log", "roce"), ("efa.log", "efa"), ("ib_gdr.log", "tcp")])
def test_no_warning_when_nccl_uses_what_was_expected(name, expected):
    assert len(summary(_parsed(name), 2, expected)) == 1


def test_another_rdma_fabric_than_expected_is_a_note():
    lines = summary(_parsed("roce.log"), 2, "infiniband", "the cluster profile `infiniband`")
    assert lines[1] == ("note: NCCL uses roce between nodes; the cluster profile `infiniband` "
                        "expects infiniband")


def test_nodes_sharing_one_host_use_no_network():
    lines = summary(_parsed("one_node.log"), 2, "single-host")
    assert lines == ["NCCL transport between nodes: P2P/CUMEM, SHM/direct (every node runs on "
                     "this host: no network fabric is involved)"]


def test_nccl_warnings_are_collected():
    assert _parsed("warn.log").warnings == ["NET/OFI Couldn't open AV. RC: -22, ERROR: Invalid "
                                            "argument"]


@pytest.mark.parametrize(("pattern", "path"), [
    ("/logs/nccl.%h.%p.log", "/logs/nccl.ip-10-0-0-1.4242.log"),
    ("/logs/100%%/%x-%p", "/logs/100%/%x-4242"),
    ("/logs/trailing%", "/logs/trailing%"),
])
def test_the_file_name_is_expanded_as_nccl_does(pattern, path):
    assert expand_debug_file(pattern, "ip-10-0-0-1.ec2.internal", 4242) == path


def test_which_log_is_read():
    assert log_to_read({}, "h", 1) == (None, "")
    path, _ = log_to_read({"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": "/l/n.%h.%p"}, "h.x", 7)
    assert path == Path("/l/n.h.7")
    for own in ({"NCCL_DEBUG": "WARN"}, {"NCCL_DEBUG": "INFO"}):  # WARN, or INFO on the console
        path, why = log_to_read(own, "h", 1)
        assert path is None and why.startswith(f"NCCL_DEBUG={own['NCCL_DEBUG']} is set (not by "
                                               "ft), so NCCL logs where you asked")


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": f"{tmp_path}/nccl.%h.%p.log",
            "FT_FABRIC_EXPECTED": "infiniband",
            "FT_FABRIC_EXPECTED_BY": "the cluster profile `infiniband`", **more}


def test_local_rank_zero_reads_its_own_file_and_warns(tmp_path):
    shutil.copy(FIXTURES / "socket_fallback.log", tmp_path / "nccl.node7.4242.log")
    lines = transport_report(_env(tmp_path), "node7.cluster", 4242, nodes=2, local_rank=0,
                             rank=8)
    assert lines[0].startswith("NCCL transport between nodes: NET/Socket (eth0)")
    assert lines[1].startswith("WARNING: NCCL fell back to TCP sockets between nodes, but the "
                               "cluster profile `infiniband` expects infiniband")
    assert lines[2] == f"(NCCL's log of this rank: {tmp_path}/nccl.node7.4242.log)"
    assert transport_report(_env(tmp_path), "node7", 4242, 2, local_rank=1, rank=9) == []


def test_a_missing_log_is_said_not_hidden(tmp_path):
    (line,) = transport_report(_env(tmp_path), "node7", 1, 2, local_rank=0, rank=0)
    assert line.startswith(f"NCCL transport not reported: cannot read NCCL's log {tmp_path}")


def test_a_users_nccl_debug_is_said_once(tmp_path):
    env = {"NCCL_DEBUG": "WARN"}
    assert transport_report(env, "h", 1, 2, local_rank=0, rank=0)[0].startswith(
        "NCCL_DEBUG=WARN is set (not by ft)")
    assert transport_report(env, "h", 1, 2, local_rank=0, rank=8) == []


def test_on_cpu_gloo_prints_nothing(capsys, monkeypatch):
    """The transport line is NCCL's: a CPU (gloo) group joins without it."""
    import torch.distributed as dist

    from trainer.distributed.process_group import init_world
    from trainer.distributed.world_ranks import WorldRanks

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    try:
        assert init_world(60, WorldRanks()).type == "cpu"
    finally:
        dist.destroy_process_group()
    assert "NCCL transport" not in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def test_the_readme_shows_the_line_ft_prints_for_a_real_log():
    page = (Path(__file__).resolve().parent.parent / "docs" / "sharded-training.md").read_text()
    (line,) = summary(_parsed("ib_gdr.log"), nodes=2)
    assert f"`ft: node 0: {line}`" in page
    assert "`.ft/nccl/nccl.<host>.<pid>.log`" in page and "INFO\nlog (`INIT,NET`)" in page


def test_libfabric_without_efa_is_a_warning_under_the_efa_profile():
    """aws-ofi-nccl loaded, but on libfabric's tcp provider (no EFA device): the real line
    format of NVIDIA/nccl#527 with the provider libfabric picked instead."""
    log = ["ip-10-216-179-119:416602:416643 [1] NCCL INFO NET/OFI Selected Provider is tcp",
           "ip-10-216-179-119:416602:416643 [1] NCCL INFO Using network AWS Libfabric"]
    transport = parse(log)
    assert transport.fabric == "ofi"
    lines = summary(transport, 2, "efa", "the cluster profile `aws-efa`")
    assert lines[0] == "NCCL transport between nodes: NET/OFI (aws-ofi-nccl, provider tcp)"
    assert lines[1].startswith("WARNING: NCCL's libfabric plugin runs on the tcp provider, "
                               "not EFA, but the cluster profile `aws-efa` expects efa")
