"""What interconnect this node has, read from sysfs, and the NCCL environment it needs.

Detection only fills gaps: the cluster profile's settings beat it (a pinned profile is the
reviewed choice), and anything already in the environment beats both (explicit env wins).
When a pinned profile and the node disagree, that is a mis-wired node or a container without
its RDMA devices, the classic cause of a job that runs 10x slow; it gets a loud warning.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.clusters import ClusterProfile

EFA_PREFIXES = ("efa", "rdmap")  # AWS EFA devices under /sys/class/infiniband
# Never the inter-node path: loopback, container bridges and their veth ends, libvirt.
SKIPPED_IFNAMES = ("docker", "veth", "virbr", "br-")


@dataclass(frozen=True)
class FabricReport:
    fabric: str  # infiniband | roce | efa | tcp
    hcas: list[str] = field(default_factory=list)
    socket_ifname: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # what detection suggests
    notes: list[str] = field(default_factory=list)
    single_host: bool = False  # every node on this machine: no network fabric in play


def detect_fabric(sysfs_root: Path = Path("/sys"), environ: Mapping[str, str] = os.environ,
                  master_addr: str | None = None) -> FabricReport:
    """EFA, else InfiniBand / RoCE HCAs with an ACTIVE port, else TCP sockets."""
    if master_addr and _is_loopback(master_addr):
        return FabricReport("tcp", socket_ifname="lo", single_host=True, env=_tcp_env("lo"),
                            notes=[f"master {master_addr} is loopback: all nodes run on this "
                                   "host, so sockets go over lo and no network fabric is used"])
    devices = _ib_devices(sysfs_root)
    efa = [name for name in devices if name.startswith(EFA_PREFIXES)]
    if efa or environ.get("FI_PROVIDER") == "efa":
        why = f"EFA devices {', '.join(efa)}" if efa else "FI_PROVIDER=efa"
        return FabricReport("efa", efa, env={"FI_PROVIDER": "efa", "NCCL_IB_DISABLE": "1"},
                            notes=[f"fabric efa ({why}); NCCL needs the aws-ofi-nccl plugin"])
    by_layer, notes = _classify_hcas(sysfs_root, devices)
    for fabric, layer in (("infiniband", "InfiniBand"), ("roce", "Ethernet")):
        if by_layer[layer]:
            hcas = by_layer[layer]
            notes.append(f"fabric {fabric}: HCAs with an ACTIVE port: {', '.join(hcas)}")
            if fabric == "infiniband" and by_layer["Ethernet"]:
                notes.append(f"RoCE HCAs {', '.join(by_layer['Ethernet'])} left out of "
                             "NCCL_IB_HCA: the InfiniBand ones carry the job")
            # "=" asks NCCL for exact names: plain mlx5_1 would also match mlx5_10..mlx5_17.
            return FabricReport(fabric, hcas, env={"NCCL_IB_HCA": "=" + ",".join(hcas)},
                                notes=notes)
    ifname, if_note = _pick_socket_ifname(sysfs_root / "class" / "net")
    notes += ["fabric tcp: no RDMA device with an ACTIVE port under "
              f"{sysfs_root / 'class' / 'infiniband'}", if_note]
    return FabricReport("tcp", socket_ifname=ifname, env=_tcp_env(ifname), notes=notes)


def node_env(profile: ClusterProfile, report: FabricReport, environ: Mapping[str, str],
             spec_env: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """(variables to set, notes): detection < profile < the spec's (`launch.timeouts`) <
    what the environment already has."""
    wanted = {**report.env, **profile.launch_env(), **(spec_env or {})}
    notes = _mismatch_warning(profile, report)
    env: dict[str, str] = {}
    for key, value in wanted.items():
        if key not in environ:
            env[key] = value
        elif environ[key] != value:
            notes.append(f"{key}: keeping {environ[key]!r} from the environment "
                         f"(ft would set {value!r})")
    return env, notes


def _mismatch_warning(profile: ClusterProfile, report: FabricReport) -> list[str]:
    if profile.fabric in ("auto", report.fabric) or report.single_host:
        return []
    found = f"HCAs {', '.join(report.hcas)}" if report.hcas else "no RDMA devices"
    return [f"WARNING: cluster profile {profile.name!r} expects {profile.fabric} but this node "
            f"shows {report.fabric} ({found}). A node with a broken fabric, or a container "
            "without the RDMA devices mounted, makes NCCL fall back to slow sockets or fail; "
            "check `ls /sys/class/infiniband` and the port states on this node."]


def _tcp_env(ifname: str | None) -> dict[str, str]:
    env = {"NCCL_IB_DISABLE": "1"}
    if ifname:
        # NCCL reads "=name" as an exact match; gloo (CPU runs) takes plain names.
        env.update(NCCL_SOCKET_IFNAME=f"={ifname}", GLOO_SOCKET_IFNAME=ifname)
    return env


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name
        return address == "localhost"


def _ib_devices(sysfs_root: Path) -> list[str]:
    root = sysfs_root / "class" / "infiniband"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _classify_hcas(sysfs_root: Path, devices: list[str]) -> tuple[dict[str, list[str]], list]:
    """HCAs by the link layer of their ACTIVE ports (a missing `state` file counts as active)."""
    by_layer: dict[str, list[str]] = {"InfiniBand": [], "Ethernet": []}
    notes: list[str] = []
    for name in devices:
        ports = sorted((sysfs_root / "class" / "infiniband" / name / "ports").glob("*"))
        active = [p for p in ports if "ACTIVE" in (_read(p / "state") or "ACTIVE")]
        layers = {_read(p / "link_layer") for p in active}
        matched = [layer for layer in by_layer if layer in layers]
        for layer in matched:
            by_layer[layer].append(name)
        if not matched:
            notes.append(f"{name}: skipped (no ACTIVE InfiniBand or Ethernet port)")
    return by_layer, notes


def _pick_socket_ifname(net_root: Path) -> tuple[str | None, str]:
    """The first interface (by name) that is `up`, else one whose state is `unknown`."""
    names = sorted(p.name for p in net_root.iterdir()) if net_root.is_dir() else []
    candidates = [n for n in names if n != "lo" and not n.startswith(SKIPPED_IFNAMES)]
    states = {n: _read(net_root / n / "operstate") for n in candidates}
    for wanted in ("up", "unknown"):
        chosen = [n for n in candidates if states[n] == wanted]
        if chosen:
            others = f"; also {wanted}: {', '.join(chosen[1:])}" if chosen[1:] else ""
            return chosen[0], (f"socket interface {chosen[0]} (operstate {wanted}{others}); "
                               "set NCCL_SOCKET_IFNAME to choose another")
    return None, (f"no usable socket interface under {net_root} (saw {', '.join(names) or 'none'})"
                  "; NCCL picks one itself")
