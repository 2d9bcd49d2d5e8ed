"""Fabric detection on fake sysfs trees (real file parsing), and how its env is merged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.clusters import DEFAULT_ENV, load_profile
from orchestrator.node.fabric import FabricReport, detect_fabric, node_env
from trainer.torch_free.liveness import Timeouts


def add_hca(sysfs: Path, name: str, ports: dict[int, tuple[str, str | None]]) -> None:
    """ports: number -> (link_layer, state file content or None for no state file)."""
    for number, (link_layer, state) in ports.items():
        port = sysfs / "class" / "infiniband" / name / "ports" / str(number)
        port.mkdir(parents=True)
        (port / "link_layer").write_text(f"{link_layer}\n")
        if state is not None:
            (port / "state").write_text(f"{state}\n")


def add_nic(sysfs: Path, name: str, operstate: str) -> None:
    nic = sysfs / "class" / "net" / name
    nic.mkdir(parents=True)
    (nic / "operstate").write_text(f"{operstate}\n")


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A node with the usual clutter: loopback, docker bridge, a veth, a down NIC, eth0 up."""
    for name, state in [("lo", "unknown"), ("docker0", "up"), ("veth1a2b", "up"),
                        ("br-5f1e", "up"), ("virbr0", "up"), ("eth1", "down"), ("eth0", "up")]:
        add_nic(tmp_path, name, state)
    return tmp_path


def test_infiniband_lists_active_hcas_exactly(sysfs: Path) -> None:
    add_hca(sysfs, "mlx5_0", {1: ("InfiniBand", "4: ACTIVE")})
    add_hca(sysfs, "mlx5_1", {1: ("InfiniBand", "4: ACTIVE")})
    add_hca(sysfs, "mlx5_2", {1: ("InfiniBand", "1: DOWN")})
    report = detect_fabric(sysfs, environ={})
    assert report.fabric == "infiniband"
    assert report.hcas == ["mlx5_0", "mlx5_1"]
    assert report.env == {"NCCL_IB_HCA": "=mlx5_0,mlx5_1"}
    assert "mlx5_2: skipped (no ACTIVE InfiniBand or Ethernet port)" in report.notes


def test_roce_is_an_hca_with_an_ethernet_link_layer(sysfs: Path) -> None:
    add_hca(sysfs, "mlx5_bond_0", {1: ("Ethernet", "4: ACTIVE")})
    report = detect_fabric(sysfs, environ={})
    assert (report.fabric, report.hcas) == ("roce", ["mlx5_bond_0"])
    assert report.env == {"NCCL_IB_HCA": "=mlx5_bond_0"}


def test_infiniband_wins_over_a_roce_frontend_nic(sysfs: Path) -> None:
    add_hca(sysfs, "mlx5_0", {1: ("InfiniBand", "4: ACTIVE")})
    add_hca(sysfs, "mlx5_9", {1: ("Ethernet", "4: ACTIVE")})
    report = detect_fabric(sysfs, environ={})
    assert (report.fabric, report.hcas) == ("infiniband", ["mlx5_0"])
    assert any("RoCE HCAs mlx5_9 left out" in note for note in report.notes)


def test_port_without_state_file_counts_as_active(sysfs: Path) -> None:
    add_hca(sysfs, "mlx4_0", {1: ("InfiniBand", None), 2: ("InfiniBand", "1: DOWN")})
    assert detect_fabric(sysfs, environ={}).hcas == ["mlx4_0"]


@pytest.mark.parametrize("device", ["efa_0", "rdmap16s27"])
def test_efa_devices(sysfs: Path, device: str) -> None:
    add_hca(sysfs, device, {1: ("Unspecified", "4: ACTIVE")})
    report = detect_fabric(sysfs, environ={})
    assert (report.fabric, report.hcas) == ("efa", [device])
    assert report.env == {"FI_PROVIDER": "efa", "NCCL_IB_DISABLE": "1"}


def test_efa_from_fi_provider_alone(sysfs: Path) -> None:
    report = detect_fabric(sysfs, environ={"FI_PROVIDER": "efa"})
    assert report.fabric == "efa"
    assert "FI_PROVIDER=efa" in report.notes[0]


def test_no_rdma_means_tcp_on_the_first_up_interface(sysfs: Path) -> None:
    add_hca(sysfs, "mlx5_0", {1: ("InfiniBand", "1: DOWN")})  # present but dead: still tcp
    report = detect_fabric(sysfs, environ={})
    assert (report.fabric, report.hcas, report.socket_ifname) == ("tcp", [], "eth0")
    assert report.env == {"NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "=eth0",
                          "GLOO_SOCKET_IFNAME": "eth0"}


def test_several_up_interfaces_pick_the_first_and_say_so(sysfs: Path) -> None:
    add_nic(sysfs, "ens5", "up")
    report = detect_fabric(sysfs, environ={})
    assert report.socket_ifname == "ens5"
    assert any("also up: eth0" in note for note in report.notes)


def test_unknown_operstate_is_second_choice(tmp_path: Path) -> None:
    add_nic(tmp_path, "lo", "unknown")
    add_nic(tmp_path, "eth0", "down")
    add_nic(tmp_path, "tun0", "unknown")
    assert detect_fabric(tmp_path, environ={}).socket_ifname == "tun0"


def test_no_usable_interface_leaves_the_choice_to_nccl(tmp_path: Path) -> None:
    add_nic(tmp_path, "lo", "unknown")
    add_nic(tmp_path, "docker0", "up")
    report = detect_fabric(tmp_path, environ={})
    assert report.socket_ifname is None
    assert report.env == {"NCCL_IB_DISABLE": "1"}
    assert any("NCCL picks one itself" in note for note in report.notes)


def test_empty_sysfs_is_tcp(tmp_path: Path) -> None:
    assert detect_fabric(tmp_path, environ={}).fabric == "tcp"


@pytest.mark.parametrize("master", ["127.0.0.1", "localhost", "::1"])
def test_loopback_master_means_one_host_over_lo(sysfs: Path, master: str) -> None:
    add_hca(sysfs, "mlx5_0", {1: ("InfiniBand", "4: ACTIVE")})
    report = detect_fabric(sysfs, environ={}, master_addr=master)
    assert (report.fabric, report.socket_ifname, report.single_host) == ("tcp", "lo", True)
    assert report.env["NCCL_SOCKET_IFNAME"] == "=lo"


def test_real_sysfs_is_readable() -> None:
    """Whatever this machine has, detection parses it without error."""
    assert detect_fabric().fabric in {"infiniband", "roce", "efa", "tcp"}


# --- node_env: profile and detection merged, explicit environment wins ----------------------


def ib_report() -> FabricReport:
    return FabricReport("infiniband", ["mlx5_0", "mlx5_1"], None,
                        {"NCCL_IB_HCA": "=mlx5_0,mlx5_1"})


def tcp_report() -> FabricReport:
    return FabricReport("tcp", [], "eth0", {"NCCL_IB_DISABLE": "1",
                                            "NCCL_SOCKET_IFNAME": "=eth0",
                                            "GLOO_SOCKET_IFNAME": "eth0"})


def test_profile_plus_detection() -> None:
    profile = load_profile("infiniband")
    env, notes = node_env(profile, ib_report(), environ={})
    assert env == {**DEFAULT_ENV, **profile.env, "NCCL_IB_HCA": "=mlx5_0,mlx5_1"}
    assert notes == []


def test_explicit_environment_wins_and_is_noted() -> None:
    environ = {"NCCL_IB_HCA": "mlx5_4", "NCCL_NET_GDR_LEVEL": "SYS", "NCCL_IB_TIMEOUT": "22"}
    env, notes = node_env(load_profile("infiniband"), ib_report(), environ)
    assert not set(environ) & set(env)  # nothing already set is overridden
    assert "NCCL_IB_HCA: keeping 'mlx5_4' from the environment (ft would set " \
           "'=mlx5_0,mlx5_1')" in notes
    assert any(note.startswith("NCCL_NET_GDR_LEVEL: keeping 'SYS'") for note in notes)
    # Same value as ft's: nothing worth a note (the rendered file exports the profile's env).
    assert not any(note.startswith("NCCL_IB_TIMEOUT") for note in notes)


def test_the_specs_timeouts_reach_the_ranks_unless_the_environment_sets_them() -> None:
    timeouts = Timeouts(collective="2m", peer="30s")
    env, notes = node_env(load_profile("tcp"), tcp_report(), {"FT_PEER_TIMEOUT_S": "9"},
                          timeouts.env())
    assert (env["FT_COLLECTIVE_TIMEOUT_S"], env["FT_SLOW_PHASE_TIMEOUT_S"]) == ("120", "3600")
    assert "FT_PEER_TIMEOUT_S" not in env
    assert "FT_PEER_TIMEOUT_S: keeping '9' from the environment (ft would set '30')" in notes


def test_profile_beats_detection_and_a_mismatch_is_loud() -> None:
    env, notes = node_env(load_profile("infiniband"), tcp_report(), environ={})
    assert env["NCCL_IB_DISABLE"] == "0"  # the profile's reviewed setting
    assert env["NCCL_SOCKET_IFNAME"] == "=eth0"  # detection fills what the profile leaves open
    assert len(notes) == 1
    assert notes[0].startswith("WARNING: cluster profile 'infiniband' expects infiniband but "
                               "this node shows tcp (no RDMA devices)")


def test_tcp_profile_on_an_infiniband_node_is_also_flagged() -> None:
    _, notes = node_env(load_profile("tcp"), ib_report(), environ={})
    assert notes[0].startswith("WARNING: cluster profile 'tcp' expects tcp but this node shows "
                               "infiniband (HCAs mlx5_0, mlx5_1)")


def test_auto_profile_never_warns() -> None:
    env, notes = node_env(load_profile("auto"), tcp_report(), environ={})
    assert notes == []
    assert env == {**DEFAULT_ENV, **tcp_report().env}


def test_single_host_runs_do_not_warn() -> None:
    report = FabricReport("tcp", socket_ifname="lo", env={"NCCL_IB_DISABLE": "1"},
                          single_host=True)
    assert node_env(load_profile("roce"), report, environ={})[1] == []


def test_efa_profile_keeps_its_socket_exclusions() -> None:
    report = FabricReport("efa", ["rdmap16s27"], env={"FI_PROVIDER": "efa",
                                                      "NCCL_IB_DISABLE": "1"})
    env, notes = node_env(load_profile("aws-efa"), report, environ={})
    assert env["NCCL_SOCKET_IFNAME"] == "^docker,lo,veth"
    assert env["FI_EFA_USE_DEVICE_RDMA"] == "1"
    assert notes == []


# --- NCCL's log, and the fabric the ranks should find NCCL using --------------------------

def test_ft_points_nccls_log_at_a_file_only_when_the_user_set_no_nccl_debug(tmp_path) -> None:
    from orchestrator.node.nccl_log_files import nccl_log_env

    profile = load_profile("infiniband")
    expected = {"FT_FABRIC_EXPECTED": "infiniband",
                "FT_FABRIC_EXPECTED_BY": "the cluster profile `infiniband`",
                "FT_FABRIC_EXPECTED_BUSBW_GBS": "150"}  # what the pre-flight holds pairs to
    env, notes = nccl_log_env({}, tmp_path, profile, ib_report())
    assert env == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET",
                   "NCCL_DEBUG_FILE": f"{tmp_path}/nccl.%h.%p.log", "FT_NCCL_LOG": "ft",
                   **expected}
    assert notes[0].startswith(f"NCCL's INFO log (INIT,NET) goes to {tmp_path}/nccl.<host>")
    # The user's own NCCL_DEBUG: nothing of NCCL's is touched, and the note says what follows.
    env, notes = nccl_log_env({"NCCL_DEBUG": "WARN"}, tmp_path, profile, ib_report())
    assert env == expected and "the transport NCCL chooses is not reported" in notes[0]
    env, notes = nccl_log_env({"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": "/l/%p"}, tmp_path,
                              profile, ib_report())
    assert env == expected and "the transport line reads NCCL_DEBUG_FILE" in notes[0]
    # Nor a subsystem list of the user's.
    env, _ = nccl_log_env({"NCCL_DEBUG_SUBSYS": "ALL"}, tmp_path, profile, ib_report())
    assert "NCCL_DEBUG_SUBSYS" not in env and env["NCCL_DEBUG"] == "INFO"


@pytest.mark.parametrize(("profile", "report", "expected"), [
    ("roce", ib_report(), ("roce", "the cluster profile `roce`")),
    ("auto", ib_report(), ("infiniband", "ft node, which found HCAs mlx5_0, mlx5_1 on this "
                                         "node")),
    ("auto", tcp_report(), ("tcp", "ft node, which found no RDMA device on this node")),
    ("infiniband", FabricReport("tcp", single_host=True),
     ("single-host", "ft node (every node runs on this host)")),
])
def test_the_fabric_the_ranks_should_see(profile, report, expected) -> None:
    from orchestrator.node.nccl_log_files import expected_fabric

    assert expected_fabric(load_profile(profile), report) == expected


def test_warnings_of_this_host_since_the_start(tmp_path) -> None:
    from orchestrator.node.nccl_log_files import failure_report, warnings_since

    warn = "h:1:2 [0] transport/net_ib.cc:1 NCCL WARN NET/IB : Got completion with error 12"
    (tmp_path / "nccl.node3.11.log").write_text(f"x NCCL INFO Using network IB\n\n{warn}\n")
    (tmp_path / "nccl.node4.12.log").write_text(warn + "\n")  # another node's, shared dir
    old = tmp_path / "nccl.node3.10.log"  # an earlier attempt's
    old.write_text(warn + " (old)\n")
    os.utime(old, (1, 1))
    assert warnings_since(tmp_path, since=100, hostname="node3.cluster") == [warn]
    assert failure_report({}, tmp_path, 100) is None  # NCCL_DEBUG was the user's


def test_nccls_log_folder_falls_back_to_the_temp_folder(tmp_path, monkeypatch) -> None:
    """NCCL logs INFO to the console when it cannot open its file: a folder that cannot be
    made is replaced by one in the temp folder; a dry run makes none."""
    from orchestrator.node.nccl_log_files import log_dir

    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder would go
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    assert log_dir({}, blocked, create=True) == tmp_path / "tmp" / "ft-nccl"
    assert log_dir({}, tmp_path, create=True) == tmp_path / ".ft" / "nccl"
    assert (tmp_path / ".ft" / "nccl").is_dir()
    assert log_dir({"FT_NCCL_LOG_DIR": str(tmp_path / "x")}, tmp_path, create=False) \
        == tmp_path / "x" and not (tmp_path / "x").exists()
