"""One validation: what would stop training for a reason visible on this machine (a dataset
path, an unwritable `output_dir`, a `resume_from_checkpoint` that does not load) stops
`ft validate --backend local`, `ft launch --backend local` and `ft train` alike, before any
work, with the spec's file, line and the fix (exit 2, no traceback, nothing written)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from orchestrator.spec.local_checks import resume_problem
from tests.cli_runner import REPO
from trainer.checkpoint.resume import mark_complete
from trainer.torch_free.data_paths import missing_local_dataset

TINY_DATA = REPO / "examples" / "tiny" / "data"
COMMANDS = (["validate", "--backend", "local"], ["launch", "--backend", "local"], ["train"])


def _checkpoint(directory):
    """A directory holding what a Trainer checkpoint of an adapter holds (real safetensors)."""
    directory.mkdir(parents=True)
    save_file({"lora_A": np.zeros((2, 4), dtype=np.float32)},
              str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (directory / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    return directory


def _spec(tmp_path, **overrides):
    spec = yaml.safe_load((REPO / "examples" / "tiny" / "tiny.yaml").read_text())
    (tmp_path / "data").mkdir(exist_ok=True)
    for entry in spec["datasets"]:
        shutil.copy(TINY_DATA / os.path.basename(entry["path"]), tmp_path / "data")
        entry["path"] = f"./data/{os.path.basename(entry['path'])}"
    (tmp_path / "model").mkdir(exist_ok=True)
    spec.update(base_model="./model", output_dir="./out", dataset_prepared_path="./prep")
    spec.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _line(spec, key):
    return next(n for n, line in enumerate(spec.read_text().splitlines(), 1)
                if line.startswith(f"{key}:"))


def _ft_in_own_mounts(tmp_path, read_only, *args):
    """`ft ARGS` in tmp_path, in a mount namespace of its own where `read_only` is a
    read-only filesystem (as a read-only mount of a cluster's storage is)."""
    ft = shlex.join([sys.executable, "-m", "orchestrator.cli", *args])
    script = f"mount -t tmpfs -o ro tmpfs {shlex.quote(str(read_only))} && exec {ft}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a read-only mount needs root and unshare")
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_validate_launch_and_train_refuse_what_training_would_fail_on(tmp_path, command):
    """The three measured cases: a dataset path without `./` that is not there, a read-only
    `output_dir`, and a `resume_from_checkpoint` full of junk."""
    junk = tmp_path / "junk" / "checkpoint-5"
    junk.mkdir(parents=True)
    (junk / "model.safetensors").write_bytes(os.urandom(1000))
    (junk / "trainer_state.json").write_text("{}")
    (tmp_path / "ro").mkdir()
    spec = _spec(tmp_path, output_dir="./ro/out", resume_from_checkpoint="./junk/checkpoint-5")
    text = spec.read_text().replace("./data/chat.jsonl", "data/chats.jsonl")
    spec.write_text(text)
    result = _ft_in_own_mounts(tmp_path, tmp_path / "ro", command[0], "spec.yaml", *command[1:])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    datasets_line = text.splitlines().index("- path: data/chats.jsonl") + 1
    for expected in (
        f"spec.yaml:{datasets_line}: `datasets[1].path`: data/chats.jsonl not found (looked "
        f"for {tmp_path}/data/chats.jsonl: relative paths are relative to the directory ft "
        f"runs in, {tmp_path})",
        f"spec.yaml:{_line(spec, 'output_dir')}: `output_dir`: ./ro/out: cannot be created: "
        f"{tmp_path}/ro is on a read-only filesystem; use a writable directory",
        f"spec.yaml:{_line(spec, 'resume_from_checkpoint')}: `resume_from_checkpoint`: "
        "./junk/checkpoint-5: model.safetensors is not a safetensors file",
    ):
        assert expected in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "prep").exists()
    assert not (tmp_path / ".ft").exists(), "nothing rendered or written"


def test_a_path_beside_the_spec_says_where_to_run_from(tmp_path):
    spec = _spec(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(spec),
                             "--backend", "local"], cwd=elsewhere, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert (f"./data/alpaca.jsonl not found (looked for {elsewhere}/data/alpaca.jsonl: "
            f"relative paths are relative to the directory ft runs in, {elsewhere}); it is "
            f"beside the spec: run ft from {tmp_path}, or write `../data/alpaca.jsonl`"
            in result.stderr), result.stderr


@pytest.mark.parametrize(("path", "missing"), [
    ("data/x.jsonl", True), ("./x.parquet", True), ("/nowhere/x.csv", True),
    ("~/nowhere.jsonl", True), ("tatsu-lab/alpaca", False), ("data/exists.jsonl", False)])
def test_validation_and_the_data_loader_share_one_rule(tmp_path, path, missing):
    """The loader refuses exactly the paths validation flags (one function decides both)."""
    from trainer.data.loading import DataSourceError, load_spec
    from trainer.torch_free.training import DatasetSpec

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "exists.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    assert (missing_local_dataset(path, tmp_path) is not None) == missing
    if missing:
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            with pytest.raises(DataSourceError, match="not found"):
                load_spec(DatasetSpec(path=path, type="alpaca"), "datasets[0]")
        finally:
            os.chdir(cwd)


def test_a_resumable_checkpoint_passes_and_broken_ones_are_named(tmp_path):
    good = _checkpoint(tmp_path / "good" / "checkpoint-5")
    assert resume_problem(good) is None
    mark_complete(good, 5)  # marked by ft: still fine while its files match the marker
    assert resume_problem(good) is None
    (good / "adapter_config.json").write_text(json.dumps({"r": 16}))
    assert resume_problem(good).startswith("is damaged: adapter_config.json")
    truncated = _checkpoint(tmp_path / "truncated" / "checkpoint-5")
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    assert "truncated or overwritten" in resume_problem(truncated)
    final = _checkpoint(tmp_path / "final")
    (final / "trainer_state.json").unlink()
    assert "has no trainer_state.json" in resume_problem(final)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no model or adapter weights" in resume_problem(empty)
    assert resume_problem(tmp_path / "absent") == "does not exist"


def test_a_cluster_node_checks_its_own_paths_before_starting_a_rank(tmp_path):
    """On a cluster the paths are the node's: `ft node` checks them there, before torchrun
    starts a rank, not `ft validate` on the laptop (where they are not)."""
    spec = _spec(tmp_path, output_dir="./out/run")
    (tmp_path / "out").write_text("a file where the job expects a directory\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DSTACK_MASTER_NODE_IP": "127.0.0.1",
           "DSTACK_NODE_RANK": "0", "DSTACK_NODES_NUM": "1", "DSTACK_GPUS_PER_NODE": "0"}
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli", "node", "spec.yaml",
                             "--backend", "dstack"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert (f"spec.yaml:{_line(spec, 'output_dir')}: `output_dir`: ./out/run: cannot be "
            f"created: {tmp_path}/out is a file") in result.stderr
    assert "ft node: launch" not in result.stderr and "Traceback" not in result.stderr
