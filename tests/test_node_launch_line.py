"""The launch line: exact argv, the launchers' own parsers accept it, and the explicit shell
command shown in generated files runs to the very same argv under bash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.backends import get, names
from orchestrator.backends.launch_line import explicit_command, launch_argv
from orchestrator.backends.rendezvous import Rendezvous, resolve_rendezvous

TRAIN = ["ft", "train", "/job/.ft/ft-job.yaml"]
WORLD = Rendezvous("dstack", "10.0.0.5", 29500, 1, 2, 8)


def test_torchrun_argv() -> None:
    assert launch_argv(WORLD, "torchrun", TRAIN) == [
        "torchrun", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.5",
        "--master-port", "29500", "--nproc-per-node", "8", "--no-python", *TRAIN]


def test_python_file_runs_through_python() -> None:
    argv = launch_argv(WORLD, "torchrun", ["train.py", "--lr", "1e-4"])
    assert "--no-python" not in argv
    assert argv[-3:] == ["train.py", "--lr", "1e-4"]


def test_accelerate_argv_counts_all_processes() -> None:
    assert launch_argv(WORLD, "accelerate", TRAIN) == [
        "accelerate", "launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", "1",
        "--main_process_ip", "10.0.0.5", "--main_process_port", "29500",
        "--num_processes", "16", "--no_python", *TRAIN]


def test_accelerate_single_process_is_not_multi_gpu() -> None:
    # accelerate refuses --multi_gpu with fewer than 2 processes.
    argv = launch_argv(Rendezvous("local", "127.0.0.1", 29500, 0, 1, 1), "accelerate", TRAIN)
    assert "--multi_gpu" not in argv
    assert argv[argv.index("--num_processes") + 1] == "1"


def test_unknown_launcher_and_empty_command_are_programmer_errors() -> None:
    with pytest.raises(ValueError, match="unknown launcher"):
        launch_argv(WORLD, "deepspeed", TRAIN)
    with pytest.raises(ValueError, match="train_argv is empty"):
        launch_argv(WORLD, "torchrun", [])


PARSE_WITH_THE_REAL_LAUNCHERS = """
import json, sys
launcher, argv = sys.argv[1], sys.argv[2:]
if launcher == "torchrun":
    from torch.distributed.run import get_args_parser
    a = get_args_parser().parse_args(argv[1:])
    print(json.dumps([a.nnodes, a.node_rank, a.master_addr, a.master_port, a.nproc_per_node,
                      a.no_python, a.training_script, a.training_script_args]))
else:
    from accelerate.commands.launch import launch_command_parser
    a = launch_command_parser().parse_args(argv[2:])
    print(json.dumps([a.num_machines, a.machine_rank, a.main_process_ip, a.main_process_port,
                      a.num_processes, a.no_python, a.training_script, a.training_script_args,
                      a.multi_gpu]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("launcher", "expected"), [
    ("torchrun", ["2", 1, "10.0.0.5", 29500, "8", True, "ft", TRAIN[1:]]),
    ("accelerate", [2, 1, "10.0.0.5", 29500, 16, True, "ft", TRAIN[1:], True]),
])
def test_the_launchers_own_parsers_accept_the_argv(launcher: str, expected: list) -> None:
    """Flags checked against torchrun 2.x / accelerate 1.15 themselves, in a child process
    (importing them pulls in torch, which this test process must not)."""
    pytest.importorskip("accelerate")
    argv = launch_argv(WORLD, launcher, TRAIN)
    result = subprocess.run([sys.executable, "-c", PARSE_WITH_THE_REAL_LAUNCHERS, launcher,
                             *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == expected


# --- explicit_command: bash syntax, and bash runs it to launch_argv's argv -------------------

SHIMS = ("torchrun() { printf '%s\\n' torchrun \"$@\"; }\n"
         "accelerate() { printf '%s\\n' accelerate \"$@\"; }\n")


def run_under_bash(command: str, variables: dict[str, str], path: str | None = None) -> list:
    env = {"PATH": path or os.environ["PATH"], **variables}
    result = subprocess.run(["bash", "-c", SHIMS + command], env=env, capture_output=True,
                            text=True, check=True)
    return result.stdout.splitlines()


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
@pytest.mark.parametrize("backend", names())
def test_explicit_command_is_valid_bash(backend: str, launcher: str) -> None:
    command = explicit_command(get(backend), launcher, 29500, ["ft", "train", "a b's.yaml"],
                               default_nproc=8)
    assert "\n" not in command  # it is shown as a one-line comment
    subprocess.run(["bash", "-n", "-c", command], check=True)


def test_explicit_command_reads_like_the_design() -> None:
    assert explicit_command(get("dstack"), "torchrun", 29500, TRAIN) == (
        'torchrun --nnodes "$DSTACK_NODES_NUM" --node-rank "$DSTACK_NODE_RANK" '
        '--master-addr "$DSTACK_MASTER_NODE_IP" --master-port 29500 --nproc-per-node '
        '"${DSTACK_GPUS_PER_NODE:-$((DSTACK_GPUS_NUM / DSTACK_NODES_NUM))}" --no-python '
        "ft train /job/.ft/ft-job.yaml")
    assert '"$(echo "$SKYPILOT_NODE_IPS" | head -n1)"' in explicit_command(
        get("skypilot"), "torchrun", 29500, TRAIN)
    assert '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"' in explicit_command(
        get("slurm"), "torchrun", 29500, TRAIN)


DSTACK_ENV = {"DSTACK_MASTER_NODE_IP": "10.0.0.5", "DSTACK_NODE_RANK": "1",
              "DSTACK_NODES_NUM": "2", "DSTACK_GPUS_PER_NODE": "8", "DSTACK_GPUS_NUM": "16"}
AGREEMENT_CASES = {
    "dstack": DSTACK_ENV,
    "dstack-total-only": {k: v for k, v in DSTACK_ENV.items() if k != "DSTACK_GPUS_PER_NODE"},
    "skypilot": {"SKYPILOT_NODE_IPS": "172.31.0.7\n172.31.0.8", "SKYPILOT_NODE_RANK": "0",
                 "SKYPILOT_NUM_NODES": "2", "SKYPILOT_NUM_GPUS_PER_NODE": "4"},
    "local": {"FT_LOCAL_NODE_RANK": "1", "FT_LOCAL_NNODES": "2",
              "FT_LOCAL_NPROC_PER_NODE": "2"},  # master left to its default
}


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
@pytest.mark.parametrize("case", sorted(AGREEMENT_CASES))
def test_explicit_command_runs_to_the_same_argv(case: str, launcher: str) -> None:
    backend = case.split("-")[0]
    variables = AGREEMENT_CASES[case]
    train = ["ft", "train", "/job/my spec's.yaml", "--max-steps", "3"]  # quoting survives
    world = resolve_rendezvous(get(backend), variables, master_port=29511, default_nproc=1)
    shown = explicit_command(get(backend), launcher, 29511, train)
    assert run_under_bash(shown, variables) == launch_argv(world, launcher, train)


def test_slurm_explicit_command_agrees_where_the_name_is_the_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slurm, on a real srun environment without GPUs: bash runs a `scontrol` shim, ft node a
    fake RUNNER with the captured `scontrol show node` of a node whose NodeAddr is its name."""
    fixtures = Path(__file__).parent / "fixtures" / "scontrol"
    lines = (fixtures / "slurm-22.05.8-srun-env-nodeid1.txt").read_text().splitlines()
    variables = {**dict(line.split("=", 1) for line in lines), "SLURM_JOB_NODELIST": "localhost"}
    shim = tmp_path / "scontrol"
    shim.write_text("#!/bin/sh\necho localhost\n")
    shim.chmod(0o755)
    node = (fixtures / "slurm-22.05.8-show-node-localhost.txt").read_text()

    def runner(argv, input_text=None):
        out = "localhost\n" if argv[2] == "hostnames" else node
        return process.Completed(tuple(argv), 0, out, "")

    monkeypatch.setattr(process, "RUNNER", runner)
    world = resolve_rendezvous(get("slurm"), variables, master_port=29500, default_nproc=4)
    shown = explicit_command(get("slurm"), "torchrun", 29500, TRAIN, default_nproc=4)
    ran = run_under_bash(shown, variables, path=f"{tmp_path}:{os.environ['PATH']}")
    assert ran == launch_argv(world, "torchrun", TRAIN)
    assert ran[ran.index("--master-addr") + 1] == "localhost"
    assert ran[ran.index("--nproc-per-node") + 1] == "4"  # SLURM_GPUS_ON_NODE unset
