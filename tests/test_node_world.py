"""Backend variables -> Rendezvous (orchestrator/backends/rendezvous.py): every row of the
table in docs/backends.md, the fallbacks and the errors.

Slurm runs against a recording fake RUNNER that replays `scontrol` output captured from a
real two-node Slurm 22.05.8 (tests/fixtures/scontrol/, see slurm-local.md).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.backends import detect as detect_backend
from orchestrator.backends import get
from orchestrator.backends.rendezvous import Rendezvous, resolve_rendezvous
from orchestrator.backends.slurm.master import first_hostname, resolve_master_address
from tests.fixtures.tool_outputs.replay import FakeRunner
from trainer.torch_free.errors import UserError

SCONTROL = Path(__file__).parent / "fixtures" / "scontrol"
SLURM = "slurm-22.05.8"


def fixture(name: str) -> str:
    return (SCONTROL / f"{SLURM}-{name}.txt").read_text()


def srun_env(node_id: int) -> dict[str, str]:
    """The SLURM_* variables one task of a real 2-node `srun` saw."""
    lines = fixture(f"srun-env-nodeid{node_id}").splitlines()
    return dict(line.split("=", 1) for line in lines)


def ReplayRunner(replies: dict[tuple[str, ...], tuple[int, str, str]]) -> FakeRunner:  # noqa: N802
    """The shared recording runner, answering each argv with (returncode, stdout, stderr)."""
    return FakeRunner({argv: process.Completed(argv, *reply) for argv, reply in replies.items()})


REAL_SLURM_REPLIES = {
    ("scontrol", "show", "hostnames", "n[1-2]"): (0, fixture("show-hostnames-n1-2"), ""),
    ("scontrol", "show", "node", "n1"): (0, fixture("show-node-n1"), ""),
}


@pytest.fixture
def real_slurm(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    runner = ReplayRunner(REAL_SLURM_REPLIES)
    monkeypatch.setattr(process, "RUNNER", runner)
    return runner


ROWS = {
    "dstack": ({"DSTACK_MASTER_NODE_IP": "10.0.0.5", "DSTACK_NODE_RANK": "1",
                "DSTACK_NODES_NUM": "4", "DSTACK_GPUS_PER_NODE": "8", "DSTACK_GPUS_NUM": "32"},
               ("10.0.0.5", 1, 4, 8)),
    "skypilot": ({"SKYPILOT_NODE_IPS": "172.31.0.7\n172.31.0.8\n", "SKYPILOT_NODE_RANK": "1",
                  "SKYPILOT_NUM_NODES": "2", "SKYPILOT_NUM_GPUS_PER_NODE": "4"},
                 ("172.31.0.7", 1, 2, 4)),
    "local": ({"FT_LOCAL_MASTER_ADDR": "192.168.1.2", "FT_LOCAL_NODE_RANK": "0",
               "FT_LOCAL_NNODES": "2", "FT_LOCAL_NPROC_PER_NODE": "3"},
              ("192.168.1.2", 0, 2, 3)),
}


@pytest.mark.parametrize("backend", sorted(ROWS))
def test_each_backend_row(backend: str) -> None:
    environ, (master, rank, nnodes, nproc) = ROWS[backend]
    world = resolve_rendezvous(get(backend), environ, master_port=29500, default_nproc=1)
    assert (world.backend, world.master_addr, world.master_port) == (backend, master, 29500)
    assert (world.node_rank, world.nnodes, world.nproc_per_node) == (rank, nnodes, nproc)


def test_slurm_row_with_real_srun_environment(real_slurm: FakeRunner) -> None:
    environ = {**srun_env(1), "SLURM_GPUS_ON_NODE": "8"}
    world = resolve_rendezvous(get("slurm"), environ, master_port=29400, default_nproc=1)
    assert world == Rendezvous("slurm", "127.0.0.1", 29400, 1, 2, 8, world.notes)
    assert real_slurm.calls == [("scontrol", "show", "hostnames", "n[1-2]"),
                                ("scontrol", "show", "node", "n1")]
    assert "master n1 -> 127.0.0.1 (NodeAddr from scontrol show node)" in world.notes


def test_slurm_without_gpus_falls_back_to_the_spec_with_a_note(real_slurm: FakeRunner) -> None:
    # The captured job asked for no GPUs, so SLURM_GPUS_ON_NODE is absent, as it really is.
    environ = srun_env(0)
    assert "SLURM_GPUS_ON_NODE" not in environ
    world = resolve_rendezvous(get("slurm"), environ, master_port=29500, default_nproc=4)
    assert (world.node_rank, world.nnodes, world.nproc_per_node) == (0, 2, 4)
    assert any("SLURM_GPUS_ON_NODE is not set or 0" in note and "4 process(es)" in note
               for note in world.notes)


@pytest.mark.parametrize("value", ["", "0"])
def test_zero_or_empty_gpu_count_falls_back(value: str) -> None:
    environ = {**ROWS["skypilot"][0], "SKYPILOT_NUM_GPUS_PER_NODE": value}
    world = resolve_rendezvous(get("skypilot"), environ, master_port=29500, default_nproc=2)
    assert world.nproc_per_node == 2
    assert any("SKYPILOT_NUM_GPUS_PER_NODE is not set or 0" in note for note in world.notes)


def test_dstack_gpus_per_node_from_total_and_node_count() -> None:
    environ = dict(ROWS["dstack"][0])
    del environ["DSTACK_GPUS_PER_NODE"]
    world = resolve_rendezvous(get("dstack"), environ, master_port=29500, default_nproc=1)
    assert world.nproc_per_node == 8  # 32 GPUs / 4 nodes
    assert any("DSTACK_GPUS_NUM / 4 nodes" in note for note in world.notes)


def test_dstack_without_any_gpu_count_uses_the_spec() -> None:
    environ = {k: v for k, v in ROWS["dstack"][0].items() if "GPUS" not in k}
    world = resolve_rendezvous(get("dstack"), environ, master_port=29500, default_nproc=6)
    assert world.nproc_per_node == 6
    assert any("DSTACK_GPUS_PER_NODE and DSTACK_GPUS_NUM are not set" in n for n in world.notes)


def test_dstack_total_not_divisible_is_an_error() -> None:
    environ = {**ROWS["dstack"][0], "DSTACK_GPUS_NUM": "30"}
    del environ["DSTACK_GPUS_PER_NODE"]
    with pytest.raises(UserError, match="DSTACK_GPUS_NUM=30 is not divisible by "
                                        "DSTACK_NODES_NUM=4"):
        resolve_rendezvous(get("dstack"), environ, master_port=29500, default_nproc=1)


def test_skypilot_master_is_first_of_many_lines() -> None:
    environ = {**ROWS["skypilot"][0], "SKYPILOT_NODE_IPS": "10.1.0.1\n10.1.0.2\n10.1.0.3"}
    world = resolve_rendezvous(get("skypilot"), environ, master_port=29500, default_nproc=1)
    assert world.master_addr == "10.1.0.1"


def test_local_master_defaults_to_loopback() -> None:
    environ = {k: v for k, v in ROWS["local"][0].items() if k != "FT_LOCAL_MASTER_ADDR"}
    assert resolve_rendezvous(get("local"), environ, 29500, 1).master_addr == "127.0.0.1"


REQUIRED = [("dstack", "DSTACK_MASTER_NODE_IP", "a dstack task"),
            ("dstack", "DSTACK_NODE_RANK", "a dstack task"),
            ("dstack", "DSTACK_NODES_NUM", "a dstack task"),
            ("skypilot", "SKYPILOT_NODE_IPS", "a SkyPilot task"),
            ("skypilot", "SKYPILOT_NODE_RANK", "a SkyPilot task"),
            ("skypilot", "SKYPILOT_NUM_NODES", "a SkyPilot task"),
            ("slurm", "SLURM_JOB_NODELIST", "a Slurm job step"),
            ("slurm", "SLURM_NODEID", "a Slurm job step"),
            ("slurm", "SLURM_NNODES", "a Slurm job step"),
            ("local", "FT_LOCAL_NODE_RANK", "ft launch --backend local"),
            ("local", "FT_LOCAL_NNODES", "ft launch --backend local")]


@pytest.mark.parametrize(("backend", "variable", "where"), REQUIRED)
def test_missing_variable_names_it_and_the_backend(backend: str, variable: str, where: str,
                                                  real_slurm: FakeRunner) -> None:
    environ = dict(ROWS[backend][0]) if backend in ROWS else srun_env(0)
    del environ[variable]
    with pytest.raises(UserError) as excinfo:
        resolve_rendezvous(get(backend), environ, master_port=29500, default_nproc=1)
    message = str(excinfo.value)
    assert message.startswith(f"ft node --backend {backend}: {variable} is not set")
    assert where in message


def test_the_documented_message_word_for_word() -> None:
    environ = {k: v for k, v in ROWS["dstack"][0].items() if k != "DSTACK_NODE_RANK"}
    with pytest.raises(UserError) as excinfo:
        resolve_rendezvous(get("dstack"), environ, 29500, 1)
    assert str(excinfo.value) == ("ft node --backend dstack: DSTACK_NODE_RANK is not set; "
                                  "is this running inside a dstack task?")


@pytest.mark.parametrize(("variable", "value"), [("DSTACK_NODE_RANK", "one"),
                                                 ("DSTACK_NODES_NUM", "2.5"),
                                                 ("DSTACK_NODES_NUM", "0"),
                                                 ("DSTACK_NODE_RANK", "-1"),
                                                 ("DSTACK_GPUS_PER_NODE", "eight")])
def test_non_integer_variable_names_it_and_the_backend(variable: str, value: str) -> None:
    environ = {**ROWS["dstack"][0], variable: value}
    with pytest.raises(UserError, match=f"ft node --backend dstack: {variable}='{value}' is not"):
        resolve_rendezvous(get("dstack"), environ, 29500, 1)


def test_rank_must_be_below_node_count() -> None:
    environ = {**ROWS["skypilot"][0], "SKYPILOT_NODE_RANK": "2"}
    with pytest.raises(UserError, match="SKYPILOT_NODE_RANK=2 but SKYPILOT_NUM_NODES=2"):
        resolve_rendezvous(get("skypilot"), environ, 29500, 1)


def test_unknown_backend() -> None:
    with pytest.raises(UserError, match="unknown backend 'k8s'"):
        resolve_rendezvous(get("k8s"), {}, 29500, 1)


@pytest.mark.parametrize(("environ", "expected"), [
    ({"SLURM_JOB_ID": "12"}, "slurm"),
    ({"DSTACK_NODE_RANK": "0"}, "dstack"),
    ({"DSTACK_RUN_NAME": "ft-job"}, "dstack"),
    ({"SKYPILOT_NODE_RANK": "0"}, "skypilot"),
    ({"FT_LOCAL_NODE_RANK": "1"}, "local"),
    # `ft launch --backend local` inside an salloc: the more specific variables win.
    ({"SLURM_JOB_ID": "12", "FT_LOCAL_NODE_RANK": "0"}, "local"),
    ({"SLURM_JOB_ID": "12", "SKYPILOT_NODE_RANK": "0"}, "skypilot"),
    ({"HOME": "/root"}, None),
])
def test_detect_backend(environ: dict[str, str], expected: str | None) -> None:
    assert detect_backend(environ) == expected


def test_detect_backend_on_a_real_srun_environment() -> None:
    assert detect_backend(srun_env(1)) == "slurm"


# --- Slurm master address: scontrol output captured from a real cluster --------------------


def test_first_hostname_of_a_multi_range_nodelist(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("scontrol", "show", "hostnames", "gpu-[01-03],n[1-2]")
    runner = ReplayRunner({argv: (0, fixture("show-hostnames-multi-range"), "")})
    monkeypatch.setattr(process, "RUNNER", runner)
    assert first_hostname("gpu-[01-03],n[1-2]") == "gpu-01"


def test_unresolvable_name_uses_node_addr(real_slurm: FakeRunner) -> None:
    def no_dns(name: str) -> str:
        raise AssertionError("NodeAddr differs from the name; DNS must not be consulted")

    assert resolve_master_address("n[1-2]", resolve_host=no_dns) == (
        "127.0.0.1", "master n1 -> 127.0.0.1 (NodeAddr from scontrol show node)")


def _node_addr_is_name(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    runner = ReplayRunner({
        ("scontrol", "show", "hostnames", "localhost"): (0, "localhost\n", ""),
        ("scontrol", "show", "node", "localhost"): (0, fixture("show-node-localhost"), ""),
    })
    monkeypatch.setattr(process, "RUNNER", runner)
    return runner


def test_node_addr_equal_to_name_falls_back_to_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    _node_addr_is_name(monkeypatch)
    address, note = resolve_master_address("localhost", resolve_host=lambda name: "10.2.0.9")
    assert address == "10.2.0.9"
    assert note.startswith("master localhost -> 10.2.0.9 (DNS lookup")
    assert "NodeAddr is the name 'localhost' itself" in note


def test_name_resolving_to_loopback_is_passed_on_as_a_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Real DNS: `localhost` resolves to loopback, as a Debian host's own name does (127.0.1.1).
    _node_addr_is_name(monkeypatch)
    address, note = resolve_master_address("localhost")
    assert address == "localhost"
    assert "resolves to loopback" in note


def test_no_node_addr_and_no_dns_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "ft-no-such-node.invalid"  # .invalid never resolves (RFC 2606), real lookup
    runner = ReplayRunner({
        ("scontrol", "show", "hostnames", name): (0, f"{name}\n", ""),
        ("scontrol", "show", "node", name): (1, "", fixture("show-node-nosuch.stderr")),
    })
    monkeypatch.setattr(process, "RUNNER", runner)
    with pytest.raises(UserError) as excinfo:
        resolve_master_address(name)
    message = str(excinfo.value)
    assert f"the master node {name!r}" in message
    assert "Node nosuch not found" in message  # scontrol's own words are passed on
    assert "NodeAddr=" in message and "/etc/hosts" in message


def test_injected_resolver_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    _node_addr_is_name(monkeypatch)

    def fail(name: str) -> str:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(UserError, match="does not resolve here"):
        resolve_master_address("localhost", resolve_host=fail)


def test_without_scontrol_a_simple_hostlist_is_read_directly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a container without the Slurm tools, or `ft launch --backend local`."""
    def absent(argv, input_text=None):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(process, "RUNNER", absent)
    assert first_hostname("n[1-2]") == "n1"
    assert first_hostname("gpu-[07,09-12],n[1-2]") == "gpu-07"
    assert first_hostname("a.example,b.example") == "a.example"
    address, note = resolve_master_address("localhost")
    assert address == "localhost" and "scontrol is not on PATH" in note
    for complex_list in ("rack[1-2]-n[1-4]", "n[1-2"):
        with pytest.raises(UserError, match="scontrol is not on PATH"):
            first_hostname(complex_list)


def test_failing_hostnames_falls_back_to_the_expression(monkeypatch: pytest.MonkeyPatch) -> None:
    # Captured: scontrol on a node without slurm.conf (e.g. a container), exit status 1.
    failing = (1, "", fixture("show-hostnames-no-config.stderr"))
    runner = ReplayRunner({("scontrol", "show", "hostnames", "n[1-2]"): failing,
                           ("scontrol", "show", "hostnames", "r[1-2]-n[1-2]"): failing})
    monkeypatch.setattr(process, "RUNNER", runner)
    assert first_hostname("n[1-2]") == "n1"
    with pytest.raises(UserError, match="Could not establish a configuration source"):
        first_hostname("r[1-2]-n[1-2]")


def test_empty_hostnames_output_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real scontrol prints nothing, status 0, for an empty host list.
    runner = ReplayRunner({("scontrol", "show", "hostnames", ""): (0, "", "")})
    monkeypatch.setattr(process, "RUNNER", runner)
    with pytest.raises(UserError, match="no host names printed"):
        first_hostname("")
