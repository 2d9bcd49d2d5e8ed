"""`ft launch --backend local` isolates its nodes the way a cluster does (where this host
allows it: Linux, root, `ip`): each node has its own network namespace with eth0 on a
private bridge, its own hostname, /tmp and pid numbers, and its own output and data-cache
directories unless `launch.volumes` shares them. Everything made is removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator.backends.local.isolation import isolated_nodes, plan_storage
from orchestrator.backends.local.network import list_namespaces
from orchestrator.spec.load import load_spec
from tests.cli_runner import REPO, run_ft
from tests.support.isolation_checks import assert_removed, launch_namespaces, needs_isolation
from tests.support.node_facts import HOOK, HOST_FILE_ENV, PROBE_PREFIX, PROBED, facts_path
from tests.train_helpers import free_port, write_tiny_spec


def _cache_entries(prepared: Path) -> dict[str, list[str]]:
    return {entry.name: sorted(p.name for p in entry.iterdir()) for entry in prepared.iterdir()}


@needs_isolation
def test_isolated_nodes_without_shared_storage_prepare_their_own_data_and_train(
        tmp_path, tiny_model_dir):
    host_file = tmp_path / "left-by-the-test"  # pytest's tmp_path is under /tmp
    host_file.write_text("the nodes see this host's /tmp as it was")
    # Launched from a directory of its own: emulating Slurm, that submit directory is
    # shared storage, and the output and cache outside it are each node's own.
    submit = tmp_path / "submit"
    submit.mkdir()
    # The pre-flight would stop this job (tests/test_preflight_storage.py): off, to train.
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=2, save_steps=100000,
                           eval_steps=100000, launch={"nodes": 2, "preflight": False,
                                                      "env": {"OMP_NUM_THREADS": "1"}})
    result = run_ft("launch", str(spec), "--backend", "local", "--master-port",
                    str(free_port()), cwd=submit,
                    env={**os.environ, "FT_TRAINER_HOOKS": HOOK, HOST_FILE_ENV: str(host_file)})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert f"shared storage: {submit}; private to each node: {tmp_path / 'out'}, " \
           f"{tmp_path / 'prepared'}" in result.stderr
    # Master found by name, as on a cluster; the socket interface is the node's eth0.
    for node in (0, 1):
        assert f"[node{node}]   - master node0 -> 10.210.0.1" in log
        assert re.search(rf"\[node{node}\] ft node: sets .*GLOO_SOCKET_IFNAME=eth0 ", log)
    # Every peer has a name the store can look up (no DNS inside a node's namespace).
    assert "hostname of the client socket cannot be retrieved" not in log, log[-4000:]

    out, node1 = tmp_path / "out", submit / ".ft" / "local" / "tiny" / "node1"
    node1_out = node1 / str(out).lstrip("/")
    facts = [json.loads(facts_path(out, 0).read_text()),
             json.loads(facts_path(node1_out, 1).read_text())]
    assert not facts_path(out, 1).exists(), "node 1 wrote into node 0's output directory"
    assert [f["hostname"] for f in facts] == ["node0", "node1"]
    for fact in facts:
        assert fact["interfaces"] == ["eth0", "lo"]
        assert (fact["gloo_ifname"], fact["nccl_ifname"]) == ("eth0", "=eth0")
        assert fact["probes_seen"] == {"/tmp": [fact["hostname"]],
                                       "/dev/shm": [fact["hostname"]]}, "a node saw another's"
        assert fact["sees_host_tmp_file"]
    # Each node numbers its own processes, as containers do: ft node is pid 1 on every
    # node, and the ranks' pids are that namespace's small numbers (rank 0 of node 0 gets
    # one more than node 1's: the master's torchrun starts the rendezvous store's thread).
    assert facts[0]["pid_namespace"] != facts[1]["pid_namespace"]
    for fact in facts:
        assert fact["pid_1_command"][1:5] == ["-m", "orchestrator.cli", "node",
                                              str(submit / ".ft" / "local" / "tiny.yaml")]
        assert fact["pid"] < 20
    for directory in PROBED:
        assert not list(Path(directory).glob(PROBE_PREFIX + "*")), f"{directory} was shared"
    # No shared cache: each node prepared the same entry in its own directory.
    node0_cache = _cache_entries(tmp_path / "prepared")
    node1_cache = _cache_entries(node1 / str(tmp_path / "prepared").lstrip("/"))
    assert node0_cache == node1_cache and len(node0_cache) == 1
    assert "train" in next(iter(node0_cache.values()))
    assert_removed(launch_namespaces(result.stderr))


@needs_isolation
def test_a_killed_launcher_leaves_namespaces_the_next_launch_sweeps(tmp_path):
    """SIGKILL runs no cleanup: the next launch removes what a dead launcher left."""
    maker = textwrap.dedent("""
        import os, time
        from orchestrator.backends.local.network import create_network
        print(create_network(2).switch, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", maker], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    switch = proc.stdout.readline().strip()
    stem = switch.removesuffix("-sw")
    left = [name for name in list_namespaces() if name.startswith(stem)]
    assert sorted(left) == [f"{stem}-n0", f"{stem}-n1", switch]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # What the next isolated launch does first (its own network is removed on the way out).
    spec = load_spec(write_tiny_spec(tmp_path, tmp_path / "no-model", launch={"nodes": 2}))
    with isolated_nodes(spec, tmp_path, submit_dir_shared=False) as isolation:
        assert len(isolation.network.nodes) == 2
    assert_removed(stem)
    assert_removed(isolation.network.switch.removesuffix("-sw"))


def test_without_root_the_nodes_share_the_host_and_the_reason_is_given():
    """A real unprivileged user (nobody), not a patched uid."""
    probe = ("from orchestrator.backends.local.isolation import unavailable_reason; "
             "print(unavailable_reason())")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("isolating nodes needs root (network, mount and pid "
                                     "namespaces)")


def _storage(tmp_path: Path, launch: dict, submit_dir_shared: bool, **training):
    spec = load_spec(write_tiny_spec(tmp_path, tmp_path / "no-model", launch=launch,
                                     **training))
    return plan_storage(spec, tmp_path / "submit", submit_dir_shared)


def test_storage_outside_volumes_is_each_nodes_own(tmp_path):
    storage = _storage(tmp_path, {"volumes": [{"path": str(tmp_path / "ckpt"),
                                               "source": str(tmp_path / "disk")}]},
                       submit_dir_shared=False, output_dir=str(tmp_path / "ckpt" / "run"))
    # The output is inside the volume: shared, the volume's host source on every node.
    assert storage.shared == ((str(tmp_path / "disk"), str(tmp_path / "ckpt")),)
    assert storage.private == (str(tmp_path / "prepared"),)
    assert storage.binds(0) == [*storage.shared,
                                (str(tmp_path / "prepared"), str(tmp_path / "prepared"))]
    node2 = tmp_path / "submit" / ".ft" / "local" / "tiny" / "node2"
    assert storage.binds(2)[-1] == (str(node2 / str(tmp_path / "prepared").lstrip("/")),
                                    str(tmp_path / "prepared"))


def test_emulating_slurm_shares_the_submit_directory_and_what_is_under_it(tmp_path):
    submit = tmp_path / "submit"
    storage = _storage(tmp_path, {}, submit_dir_shared=True,
                       output_dir=str(submit / "outputs"))
    assert storage.shared == ((str(submit), str(submit)),)
    assert storage.private == (str(tmp_path / "prepared"),)


@needs_isolation
def test_root_without_the_rights_to_make_namespaces_falls_back_to_the_shared_host(tmp_path):
    """uid 0 with no capabilities (an unprivileged container): `ip netns add` is refused,
    the nodes share the host and the reason is given; `--isolate` makes it an error."""
    spec = write_tiny_spec(tmp_path, tmp_path / "no-model", launch={"nodes": 2})
    probe = textwrap.dedent(f"""
        import contextlib
        from pathlib import Path
        from orchestrator.backends.local.emulation import isolate_nodes
        from orchestrator.spec.load import load_spec
        from trainer.torch_free.errors import UserError
        spec = load_spec({str(spec)!r})
        with contextlib.ExitStack() as stack:
            isolation, reason = isolate_nodes(stack, spec, "slurm", Path({str(tmp_path)!r}),
                                              strict=False)
            print(isolation, reason)
            try:
                isolate_nodes(stack, spec, "slurm", Path({str(tmp_path)!r}), strict=True)
            except UserError as exc:
                print("strict:", exc)
    """)
    result = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all",
                             sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    fallback, strict = result.stdout.splitlines()
    assert fallback.startswith("None ft launch: could not build the emulated nodes' network")
    assert strict.startswith("strict: ft launch: could not build the emulated nodes' network")
