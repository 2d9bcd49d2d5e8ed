"""Torn checkpoints on real runs of the tiny model: resume takes the newest checkpoint whose
files match its marker, says which and why, and trains on exactly as an uninterrupted run
(losses equal to 1e-4). Also: the rotation window, and a disk that fills up mid-save."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.cli_runner import REPO, run_ft
from tests.support import kill_before_mark
from tests.train_helpers import free_port, summary, train_losses, write_tiny_spec
from trainer.checkpoint.resume import COMPLETE_MARKER, checkpoint_problem

# A checkpoint every 2 steps, all kept: the torn cases pick what to break.
EVERY_2 = {"max_steps": 8, "save_steps": 2, "save_total_limit": None}
FSDP = {"fsdp": ["full_shard", "auto_wrap"],
        "fsdp_config": {"fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT"}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """One uninterrupted run: its losses, and its checkpoints as the torn cases' start."""
    tmp = tmp_path_factory.mktemp("reference")
    spec = write_tiny_spec(tmp, tiny_model_dir, **EVERY_2)
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out", train_losses(tmp / "out")


def _interrupted_copy(reference_out, tmp_path, tiny_model_dir):
    """The reference's checkpoints without its final model: a job stopped after step 8's
    save, about to restart."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, **EVERY_2)
    out = tmp_path / "out"
    out.mkdir()
    for checkpoint in reference_out.glob("checkpoint-*"):
        shutil.copytree(checkpoint, out / checkpoint.name)
    return spec, out


def _assert_resumed_like_the_reference(out, result, step, reference_losses):
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stderr and f"checkpoint-{step}" in result.stderr
    assert summary(out)["global_step"] == 8
    resumed = train_losses(out)
    assert resumed.keys() == reference_losses.keys()
    for s in range(step + 1, 9):
        assert resumed[s] == pytest.approx(reference_losses[s], abs=1e-4), s


def _truncate(path):
    os.truncate(path / "optimizer.pt", path.joinpath("optimizer.pt").stat().st_size // 2)


def _second_interrupted_save(path):
    # An older ft set the first interrupted save of step 8 aside under this fixed name;
    # setting the second aside under the same name failed with "Directory not empty".
    (path.parent / "incomplete-checkpoint-8").mkdir()
    (path.parent / "incomplete-checkpoint-8" / "optimizer.pt").write_bytes(b"first attempt")
    (path / COMPLETE_MARKER).unlink()


TEARS = {
    "truncated file": (_truncate, "optimizer.pt is"),
    "missing file": (lambda p: (p / "rng_state.pth").unlink(), "rng_state.pth is missing"),
    "missing marker": (lambda p: (p / COMPLETE_MARKER).unlink(), "no completion marker"),
    "second interrupted save": (_second_interrupted_save, "no completion marker"),
    # Valid JSON of the wrong shape: a TypeError at every restart before (a crash loop).
    "marker of the wrong shape": (lambda p: (p / COMPLETE_MARKER).write_text('{"files": null}'),
                                  "unverifiable marker (missing format"),
}


@pytest.mark.parametrize("tear", TEARS)
def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(tear, reference, tmp_path,
                                                                  tiny_model_dir):
    reference_out, reference_losses = reference
    spec, out = _interrupted_copy(reference_out, tmp_path, tiny_model_dir)
    damage, reason = TEARS[tear]
    damage(out / "checkpoint-8")
    result = run_ft("train", str(spec))
    _assert_resumed_like_the_reference(out, result, 6, reference_losses)
    assert f"checkpoint-8 cannot be resumed from: {reason}" in result.stderr
    set_aside = list(out.glob("incomplete-checkpoint-8*"))
    assert len(set_aside) == (2 if tear == "second interrupted save" else 1), set_aside
    assert checkpoint_problem(out / "checkpoint-8") is None, "the new step 8 is not complete"


def test_a_kill_between_save_and_marker_keeps_the_previous_checkpoint(reference, tmp_path,
                                                                      tiny_model_dir):
    """save_total_limit: 1 used to delete the old checkpoint inside the save, before the new
    one was marked: a kill there left nothing, and the run silently started over."""
    _, reference_losses = reference
    spec = write_tiny_spec(tmp_path, tiny_model_dir, **{**EVERY_2, "save_total_limit": 1})
    killed = run_ft("train", str(spec), env={**os.environ, **kill_before_mark.env(8)})
    assert killed.returncode == 137, killed.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    assert checkpoint_problem(out / "checkpoint-6") is None
    result = run_ft("train", str(spec))
    _assert_resumed_like_the_reference(out, result, 6, reference_losses)
    assert "checkpoint-8 cannot be resumed from: no completion marker" in result.stderr
    # Rotation after the new marker: exactly one complete checkpoint is left, the newest.
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-8"]
    assert json.loads((out / "checkpoint-8" / COMPLETE_MARKER).read_text())["step"] == 8


def _own_mount_namespace_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _own_mount_namespace_works(), reason="needs user+mount namespaces")
def test_a_full_disk_is_a_clear_error(tmp_path, tiny_model_dir):
    """output_dir on a 200 KiB tmpfs (in a private mount namespace): the first checkpoint
    does not fit. The error names the disk and its free space; no torch internals."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, **EVERY_2)
    out = tmp_path / "out"
    out.mkdir()
    script = 'mount -t tmpfs -o size=200k tmpfs "$1" && shift && exec "$@"'
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
            str(out), sys.executable, "-m", "orchestrator.cli", "train", str(spec)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "no complete checkpoint" in result.stderr and "starting at step 0" in result.stderr
    assert f"error: disk full while writing to {out}" in result.stderr
    assert " free of 0.2 MiB" in result.stderr  # the tmpfs's size
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not _own_mount_namespace_works(), reason="needs user+mount namespaces")
def test_nodes_that_do_not_share_output_dir_leave_checkpoints_unmarked(tmp_path,
                                                                        tiny_model_dir):
    """Node 1 writes its shards to a disk of its own (a private tmpfs over output_dir):
    rank 0 cannot list them, so it says so and marks nothing, instead of marking a
    checkpoint that no restart could load."""
    # The pre-flight would stop this job first (tests/test_preflight_storage.py): off, to
    # reach the save's own guard.
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2,
                           launch={"nodes": 2, "master_port": free_port(), "preflight": False},
                           **FSDP)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FT_LOCAL_MASTER_ADDR": "127.0.0.1",
           "FT_LOCAL_NNODES": "2", "FT_LOCAL_NPROC_PER_NODE": "0",
           "FT_CHECKPOINT_VISIBILITY_WAIT_S": "2"}
    node = [sys.executable, "-m", "orchestrator.cli", "node", str(spec), "--backend", "local"]
    private = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
               'mount -t tmpfs tmpfs "$1" && shift && exec "$@"', "sh", str(out)]
    procs = [subprocess.Popen(argv, env={**env, "FT_LOCAL_NODE_RANK": str(rank)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank, argv in enumerate([node, private + node])]
    logs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "checkpoint-4 is NOT marked complete" in logs[0]
    assert "optimizer_0/__1_0.distcp (rank 1 on" in logs[0]
    assert "`output_dir` must be storage every node shares" in logs[0]
    for checkpoint in out.glob("checkpoint-*"):
        assert checkpoint_problem(checkpoint) == "no completion marker (the save did not finish)"


@pytest.mark.skipif(not _own_mount_namespace_works(), reason="needs user+mount namespaces")
def test_an_old_checkpoint_that_cannot_be_deleted_does_not_stop_the_run(reference, tmp_path,
                                                                       tiny_model_dir):
    """checkpoint-2 on a read-only mount (a private mount namespace): save_total_limit: 1
    cannot delete it. Each rotation says so and training goes on to the final model; the
    run used to crash at the next save, with no final model."""
    reference_out, reference_losses = reference
    spec = write_tiny_spec(tmp_path, tiny_model_dir, **{**EVERY_2, "save_total_limit": 1})
    out = tmp_path / "out"
    for step in (2, 4):
        shutil.copytree(reference_out / f"checkpoint-{step}", out / f"checkpoint-{step}")
    read_only = out / "checkpoint-2"
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && '
              'exec "$@"')
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
            str(read_only), sys.executable, "-m", "orchestrator.cli", "train", str(spec)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    _assert_resumed_like_the_reference(out, result, 4, reference_losses)
    assert result.stderr.count(f"save_total_limit: could not delete {read_only} (") == 2
    assert "Read-only file system" in result.stderr
    assert checkpoint_problem(out) is None, "the final model is not written and marked"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-8"]
