"""`run_node` end to end: spec hash check, dry run summary, and a real exec of a launcher shim."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.node.entry import _launcher_path, ft_command, run_node
from orchestrator.spec.launch_schema import LaunchSpec
from trainer.torch_free.errors import UserError

REPO = Path(__file__).resolve().parent.parent
DSTACK_ENV = {"DSTACK_MASTER_NODE_IP": "10.0.0.5", "DSTACK_NODE_RANK": "1",
              "DSTACK_NODES_NUM": "2", "DSTACK_GPUS_PER_NODE": "8", "PATH": "/usr/bin:/bin"}


@pytest.fixture
def spec(tmp_path: Path) -> tuple[str, str]:
    """(path, sha256) of a spec file as the rendered job writes it."""
    path = tmp_path / "ft-job.yaml"
    path.write_text("base_model: tiny\nlaunch:\n  nodes: 2\n")
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A node with two active InfiniBand HCAs."""
    for name in ("mlx5_0", "mlx5_1"):
        port = tmp_path / "sys" / "class" / "infiniband" / name / "ports" / "1"
        port.mkdir(parents=True)
        (port / "link_layer").write_text("InfiniBand\n")
        (port / "state").write_text("4: ACTIVE\n")
    return tmp_path / "sys"


def test_dry_run_prints_world_fabric_and_launch_line(spec, sysfs, capsys) -> None:
    path, sha = spec
    launch = LaunchSpec(nodes=2, gpus_per_node=8, cluster="infiniband")
    code = run_node(launch, path, sha, "dstack", environ=DSTACK_ENV, dry_run=True,
                    extra_train_args=["--max-steps", "3"], sysfs_root=sysfs)
    assert code == 0
    err = capsys.readouterr().err
    assert "ft node: backend dstack" in err
    assert "ft node: node 1 of 2, master 10.0.0.5:29500, 8 process(es) per node" in err
    assert "master from DSTACK_MASTER_NODE_IP" in err
    assert "ft node: fabric infiniband (HCAs mlx5_0, mlx5_1)" in err
    assert 'NCCL_IB_HCA="=mlx5_0,mlx5_1"' in err and "NCCL_IB_DISABLE=0" in err
    assert "a leading '=' asks NCCL for exactly these names" in err
    train = " ".join(ft_command("train"))
    torchrun = _launcher_path("torchrun", DSTACK_ENV)
    assert (f"ft node: launch: {torchrun} --nnodes 2 --node-rank 1 --master-addr 10.0.0.5 "
            f"--master-port 29500 --nproc-per-node 8 --no-python {train} {path} "
            "--max-steps 3") in err
    assert "WARNING" not in err


def test_backend_is_detected_when_not_given(spec, sysfs, capsys) -> None:
    path, sha = spec
    run_node(LaunchSpec(nodes=2), path, sha, None, environ=DSTACK_ENV, dry_run=True,
             sysfs_root=sysfs)
    assert "ft node: backend dstack" in capsys.readouterr().err


def test_spec_that_differs_from_the_rendered_one_is_refused(spec, sysfs) -> None:
    path, sha = spec
    Path(path).write_text("base_model: edited-after-render\n")
    with pytest.raises(UserError, match="the spec on this node differs from the one that "
                                        "was rendered"):
        run_node(LaunchSpec(), path, sha, "dstack", environ=DSTACK_ENV, dry_run=True,
                 sysfs_root=sysfs)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read the spec"):
        run_node(LaunchSpec(), str(tmp_path / "gone.yaml"), "0" * 64, "dstack",
                 environ=DSTACK_ENV, dry_run=True)


def test_no_hash_given_skips_the_check(spec, sysfs) -> None:
    path, _ = spec
    assert run_node(LaunchSpec(nodes=2), path, None, "dstack", environ=DSTACK_ENV,
                    dry_run=True, sysfs_root=sysfs) == 0


def test_undetectable_backend(spec) -> None:
    path, sha = spec
    with pytest.raises(UserError, match="cannot tell which backend.*pass --backend"):
        run_node(LaunchSpec(), path, sha, None, environ={"PATH": "/bin"}, dry_run=True)


def test_unknown_backend(spec) -> None:
    path, sha = spec
    with pytest.raises(UserError, match="unknown backend 'nomad'"):
        run_node(LaunchSpec(), path, sha, "nomad", environ=DSTACK_ENV, dry_run=True)


def test_node_count_differing_from_the_spec_is_noted(spec, sysfs, capsys) -> None:
    path, sha = spec
    run_node(LaunchSpec(nodes=4), path, sha, "dstack", environ=DSTACK_ENV, dry_run=True,
             sysfs_root=sysfs)
    assert "the spec says 4 node(s); the backend's count wins" in capsys.readouterr().err


def test_mis_wired_node_is_loud(spec, tmp_path: Path, capsys) -> None:
    path, sha = spec
    run_node(LaunchSpec(nodes=2, cluster="infiniband"), path, sha, "dstack",
             environ=DSTACK_ENV, dry_run=True, sysfs_root=tmp_path / "empty-sys")
    assert "WARNING: cluster profile 'infiniband' expects infiniband but this node shows tcp" \
        in capsys.readouterr().err


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_missing_launcher_says_how_to_install_it(spec, sysfs, tmp_path, launcher,
                                                monkeypatch) -> None:
    path, sha = spec
    environ = {**DSTACK_ENV, "PATH": str(tmp_path / "empty-bin")}
    # Nor beside the interpreter (ft node also looks there, for an unactivated venv).
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty-bin" / "python"))
    hint = re.escape("pip install 'ft-finetune[train]'")
    with pytest.raises(UserError, match=f"{launcher} is not on PATH on this node; .*{hint}"):
        run_node(LaunchSpec(nodes=2, launcher=launcher), path, sha, "dstack", environ=environ,
                 sysfs_root=sysfs)


CHILD = """
import sys
from pathlib import Path
from orchestrator.spec.launch_schema import LaunchSpec
from orchestrator.node.entry import run_node
sys.exit(run_node(LaunchSpec(nodes=2, gpus_per_node=2, cluster="tcp"), sys.argv[1],
                  sys.argv[2], None, sysfs_root=Path(sys.argv[3])))
"""

SHIM = """#!/bin/sh
python3 -c 'import json, os, sys; json.dump({"argv": sys.argv[1:], "env": dict(os.environ)},
open(os.environ["SHIM_OUT"], "w"))' "$@"
exit 7
"""


def _node_with_shims(spec, sysfs: Path, tmp_path: Path, shims: dict[str, str],
                     **env: str) -> subprocess.CompletedProcess:
    """`ft node` (CHILD) as node 0 of 2 locally, with these executables first on PATH."""
    path, sha = spec
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in shims.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    environ = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
               "FT_LOCAL_NODE_RANK": "0", "FT_LOCAL_NNODES": "2", **env}
    return subprocess.run([sys.executable, "-c", CHILD, path, sha, str(sysfs)], env=environ,
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)


def test_the_launcher_runs_supervised_with_the_node_environment(spec, sysfs,
                                                              tmp_path: Path) -> None:
    """A real launch: a `torchrun` shim records argv + env; a crash's status comes through."""
    path, _ = spec
    out = tmp_path / "shim.json"
    result = _node_with_shims(spec, sysfs, tmp_path,
                              {"torchrun": SHIM, "ft": "#!/bin/sh\nexit 99\n"},
                              SHIM_OUT=str(out), NCCL_DEBUG="INFO")
    assert result.returncode == 7, result.stderr  # a crash keeps its own code
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1",
                            "--master-port", "29500", "--nproc-per-node", "2", "--no-python",
                            "ft", "train", path]
    env = seen["env"]
    assert env["NCCL_DEBUG"] == "INFO"  # the user's own: no log file of ft's
    assert "NCCL_DEBUG_FILE" not in env and "FT_NCCL_LOG" not in env
    assert env["NCCL_SOCKET_IFNAME"] == "=lo"  # local emulation: every node on this host
    assert (env["NCCL_IB_DISABLE"], env["NCCL_NSOCKS_PERTHREAD"]) == ("1", "4")  # tcp profile
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    # Supervision: ranks report clean stops to ft node; torchrun leaves SIGTERM to it.
    assert env["FT_STOP_REPORT_DIR"] and env["FT_STOP_GRACE_S"] == "300"
    assert env["TORCHELASTIC_SIGNALS_TO_HANDLE"] == "SIGHUP,SIGQUIT"
    assert "ft node: backend local" in result.stderr
    assert "NCCL_DEBUG=INFO comes from the environment: NCCL logs where it says; the " \
        "transport NCCL chooses is not reported" in result.stderr
    assert "NCCL warnings" not in result.stderr  # ft did not redirect NCCL's log


WARNING_SHIM = """#!/bin/sh
python3 -c 'import json, os, sys; json.dump(dict(os.environ), open(os.environ["SHIM_OUT"], "w"))'
# One rank's NCCL log, as NCCL names it (host up to its first dot, pid), with a real WARN line
# (github.com/aws/aws-ofi-nccl/issues/24).
log="${NCCL_DEBUG_FILE%%nccl.*}nccl.$(hostname | cut -d. -f1).4242.log"
printf '%s\\n' "h:1:2 [0] NCCL INFO Using network Socket" "" \\
  "h:1:2 [7] create_nccl_ofi_component:459 NCCL WARN NET/OFI Couldn't open AV. RC: -22" > "$log"
exit 7
"""


def test_ft_sends_nccls_log_to_a_file_per_process_and_shows_its_warnings_on_a_crash(
        spec, sysfs, tmp_path: Path) -> None:
    """No NCCL_DEBUG of the user's: NCCL logs INFO (INIT,NET) into .ft/nccl/nccl.%h.%p.log,
    the ranks learn which fabric to expect, and a crash prints the WARN lines that went to
    those files instead of the console."""
    out = tmp_path / "shim.json"
    result = _node_with_shims(spec, sysfs, tmp_path, {"torchrun": WARNING_SHIM},
                              SHIM_OUT=str(out))
    assert result.returncode == 7, result.stderr
    env = json.loads(out.read_text())
    logs = tmp_path / ".ft" / "nccl"
    assert (env["NCCL_DEBUG"], env["NCCL_DEBUG_SUBSYS"]) == ("INFO", "INIT,NET")
    assert env["NCCL_DEBUG_FILE"] == f"{logs}/nccl.%h.%p.log" and logs.is_dir()
    assert env["FT_NCCL_LOG"] == "ft"
    # Local emulation: every node on this host, so no network fabric is expected.
    assert env["FT_FABRIC_EXPECTED"] == "single-host"
    assert f"NCCL's INFO log (INIT,NET) goes to {logs}/nccl.<host>.<pid>.log" in result.stderr
    assert "ft node: NCCL warnings (NCCL's log of this node: " in result.stderr
    assert "  NET/OFI Couldn't open AV. RC: -22" in result.stderr


def test_a_cpu_job_gets_no_nccl_log_and_no_transport_promise(spec, sysfs, capsys,
                                                            tmp_path, monkeypatch) -> None:
    """gpus_per_node 0 trains over gloo: NCCL never runs, so nothing points its log at a
    file and no line promises the transport it would choose."""
    path, sha = spec
    monkeypatch.chdir(tmp_path)
    environ = {"FT_LOCAL_NODE_RANK": "0", "FT_LOCAL_NNODES": "2", "PATH": "/usr/bin:/bin"}
    code = run_node(LaunchSpec(nodes=2, gpus_per_node=0, cluster="tcp"), path, sha, None,
                    environ=environ, dry_run=True, sysfs_root=sysfs)
    assert code == 0
    err = capsys.readouterr().err
    assert "NCCL_DEBUG" not in err and "NCCL's INFO log" not in err, err
    assert not (tmp_path / ".ft" / "nccl").exists()


def test_the_node_package_does_not_import_torch() -> None:
    code = ("import sys, orchestrator.node.entry, orchestrator.backends.slurm.master; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


STOPPING_SHIM = """#!/bin/sh
# Both ranks report a clean stop; meanwhile a stream of SIGTERMs hits ft node (the shim's
# parent) until after it has exited, like srun's --kill-on-bad-exit once another node
# exited 75 first.
for rank in 0 1; do echo '{"step": 3}' > "$FT_STOP_REPORT_DIR/rank-$rank.json"; done
node=$PPID
( end=$(( $(date +%s) + 3 )); while [ "$(date +%s)" -lt "$end" ]; do
    kill -TERM "$node" 2>/dev/null || exit 0; sleep 0.005; done ) &
sleep 0.5
exit 0
"""


def test_a_stop_signal_while_the_node_exits_does_not_turn_75_into_a_crash(
        spec, sysfs, tmp_path: Path) -> None:
    result = _node_with_shims(spec, sysfs, tmp_path, {"torchrun": STOPPING_SHIM})
    assert result.returncode == 75, result.stderr
    assert "all 2 rank(s) saved a complete checkpoint and stopped: exit 75" in result.stderr


FINISHED_THEN_FAILING_SHIM = """#!/bin/sh
# Both ranks finished training (final model saved); then torchrun itself fails, as when a
# late stop signal or a peer that went first breaks its exit barrier.
for rank in 0 1; do echo '{}' > "$FT_STOP_REPORT_DIR/finished-rank-$rank.json"; done
exit 1
"""


def test_a_launcher_failing_after_every_rank_finished_is_a_success(spec, sysfs,
                                                                   tmp_path: Path) -> None:
    result = _node_with_shims(spec, sysfs, tmp_path, {"torchrun": FINISHED_THEN_FAILING_SHIM})
    assert result.returncode == 0, result.stderr
    assert ("all 2 rank(s) had finished training (final model saved) before the launcher "
            "exited 1: exit 0") in result.stderr
    # One rank short of finished: the launcher's failure stands.
    result = _node_with_shims(spec, sysfs, tmp_path,
                              {"torchrun": FINISHED_THEN_FAILING_SHIM.replace("0 1", "0")})
    assert result.returncode == 1, result.stderr


USER_ERROR_SHIM = """#!/bin/sh
# Rank 0 printed a user error (disk full), reported it and exited 0; rank 1 waits forever in
# a collective for it.
echo "error: disk full while writing to out" >&2
echo '{"rank": 0, "exit_code": 2, "message": "disk full"}' > "$FT_STOP_REPORT_DIR/error-rank-0.json"
sleep 3600
"""


def test_a_rank_s_user_error_ends_the_node_with_its_code_at_once(spec, sysfs,
                                                                  tmp_path: Path) -> None:
    result = _node_with_shims(spec, sysfs, tmp_path, {"torchrun": USER_ERROR_SHIM})
    assert result.returncode == 2, result.stderr
    assert "ft node: rank 0 stopped on the error it printed above: exit 2" in result.stderr
    assert result.stderr.count("error: disk full") == 1
