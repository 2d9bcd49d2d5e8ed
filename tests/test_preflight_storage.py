"""Pre-flight storage check and checkpoint rehearsal (issue 21), on real emulated nodes whose
storage is their own unless `launch.volumes` shares it (tests/test_local_isolation.py), and on
real single-process runs: what each names, that a failure stops the job with exit 78 before
step 1, and that a passing rehearsal leaves nothing behind and changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli_runner import run_ft
from tests.fixtures_tiny import make_cfg
from tests.support import rehearsal_faults
from tests.support.isolation_checks import needs_isolation
from tests.train_helpers import free_port, shared_volumes, summary, train_losses, write_tiny_spec
from trainer.checkpoint.resume import COMPLETE_MARKER, mark_complete
from trainer.preflight.scratch import SCRATCH
from trainer.preflight.storage_check import FIX, judge
from trainer.torch_free.preflight_settings import (
    PREFLIGHT_ENV,
    PREFLIGHT_FAILED_EXIT_CODE,
    PREFLIGHT_RECORD,
)

WINDOW = {"storage_window": "5s"}  # the shortest the duration grammar takes
SHORT_SAVE_WAIT = {"FT_CHECKPOINT_VISIBILITY_WAIT_S": "2"}  # save.py's wait for shards


def _record(output_dir: Path) -> dict:
    """preflight.json's findings by phase (`nodes`, `checkpoint`)."""
    whole = json.loads((output_dir / PREFLIGHT_RECORD).read_text())
    return {phase: entry["findings"] for phase, entry in whole.items()}


def _launch(spec: Path, cwd: Path, **env: str):
    return run_ft("launch", str(spec), "--backend", "local", "--nodes", "2", "--master-port",
                  str(free_port()), cwd=cwd, env={**os.environ, **env})


def _node1(submit: Path, path: Path) -> Path:
    """Where an emulated node 1 keeps its own copy of `path` (tests/test_local_isolation.py)."""
    return submit / ".ft" / "local" / "tiny" / "node1" / str(path).lstrip("/")


# -- who is named: rank 0's judgement of what each node wrote and saw ----------------------

def _judge(views, hosts=("a", "b", "c"), errors=None):
    hosts = dict(enumerate(hosts[:len(views)]))
    return {f.node_rank: f for f in judge(hosts, errors or {}, views, "/out", "30s")}


def test_two_nodes_that_see_only_their_own_files_name_node_1():
    found = _judge({0: ({0}, 30.0), 1: ({1}, 30.0)})
    assert found[0].ok
    assert not found[1].ok
    assert found[1].detail.startswith("cannot see files node 0 (a) writes under /out, and "
                                      "node 0 cannot see node 1's: output_dir is not shared.")
    assert found[1].where() == "node 1 (b)" and FIX in found[1].detail


def test_the_one_node_of_three_outside_the_shared_storage_is_named():
    found = _judge({0: ({0, 1}, 30.0), 1: ({0, 1}, 30.0), 2: ({2}, 30.0)})
    assert [n for n, f in found.items() if not f.ok] == [2]
    found = _judge({0: ({0}, 30.0), 1: ({1, 2}, 30.0), 2: ({1, 2}, 30.0)})
    assert not found[0].ok, "node 0 sees none of the others, which see each other"
    assert "node 0's output_dir is not the storage the other nodes share" in found[0].detail


def test_a_file_seen_one_way_only_points_at_the_storage_window():
    found = _judge({0: ({0}, 30.0), 1: ({0, 1}, 0.1)})
    assert not found[1].ok
    assert "node 0 (a) cannot see the file node 1 wrote under /out, though node 1 sees node " \
           "0's, within 30s" in found[1].detail
    assert "launch.preflight.storage_window" in found[1].detail


def test_the_window_is_the_backends_longer_wait_for_shards(monkeypatch):
    from trainer.preflight.storage_check import visibility_window
    from trainer.torch_free.preflight_settings import Preflight

    settings = Preflight.model_validate({"storage_window": "45s"})
    assert visibility_window(settings) == (45, "45s")
    monkeypatch.setenv("FT_CHECKPOINT_VISIBILITY_WAIT_S", "900")  # SkyPilot, cached bucket
    assert visibility_window(settings) == (900, "900s (FT_CHECKPOINT_VISIBILITY_WAIT_S)")


def test_a_node_that_cannot_write_is_named_with_its_error():
    found = _judge({0: ({0}, 0.0), 1: (set(), 0.0)},
                   errors={1: "OSError: Read-only file system"})
    assert not found[1].ok and found[1].detail.startswith(
        "cannot write under /out: OSError: Read-only file system")


# -- (a) output_dir not shared: named, the job stops before training -----------------------

@needs_isolation
def test_unshared_output_dir_is_named_and_the_job_stops_before_training(tmp_path,
                                                                          tiny_model_dir):
    submit = tmp_path / "submit"  # emulating Slurm: shared; the output outside it is not
    submit.mkdir()
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={"nodes": 2, "preflight": WINDOW})
    result = _launch(spec, submit)
    log = result.stdout + result.stderr
    assert result.returncode == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    assert "ft pre-flight: FAIL storage    node 1 (node1): cannot see files node 0 (node0) " \
           f"writes under {tmp_path / 'out'}, and node 0 cannot see node 1's: output_dir is " \
           "not shared." in log
    assert "'loss'" not in log, "training started"
    (finding,) = [f for f in _record(tmp_path / "out")["nodes"] if not f["ok"]]
    assert (finding["check"], finding["node_rank"], finding["host"]) == ("storage", 1, "node1")
    for out in (tmp_path / "out", _node1(submit, tmp_path / "out")):  # each node cleaned up
        assert not (out / SCRATCH).exists()
        assert not any(p.name.startswith("checkpoint-") for p in out.iterdir())


# -- (b) shared output_dir: both pass, training runs, nothing left, resume is the real one --

STEADY = {"lr_scheduler": "constant", "warmup_steps": 0}  # a longer run continues the curve
# Sharded as training shards: torch DCP files from each rank in every checkpoint.
FSDP = {"fsdp": ["full_shard", "auto_wrap"], "fsdp_config": {"fsdp_version": 2}}


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("shared")
    spec = write_tiny_spec(tmp, tiny_model_dir, max_steps=2, save_steps=2, eval_steps=100,
                           micro_batch_size=2, launch={"nodes": 2, "preflight": WINDOW,
                                                       "volumes": shared_volumes(tmp)},
                           **STEADY, **FSDP)
    result = _launch(spec, tmp)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return tmp, spec, result.stdout


@needs_isolation
def test_shared_output_dir_passes_both_checks_and_leaves_nothing_behind(shared_run):
    tmp, _, log = shared_run
    out = tmp / "out"
    for node in (0, 1):
        assert f"ft pre-flight: ok   storage    node {node} (node{node})" in log
        assert f"ft pre-flight: ok   checkpoint node {node} (node{node}): saved, marked, " \
               "verified and loaded back the step-0 checkpoint" in log
    assert log.index("ft pre-flight: ok   checkpoint") < log.index("'loss'")
    record = _record(out)
    assert [f["ok"] for f in record["nodes"] if f["check"] == "storage"] == [True, True]
    assert [f["ok"] for f in record["checkpoint"]] == [True, True]
    # The rehearsal wrote what a real checkpoint of this run holds, every rank's shards too.
    real = json.loads((out / "checkpoint-2" / COMPLETE_MARKER).read_text())["files"]
    assert "optimizer_0/__1_0.distcp" in real
    assert record["checkpoint"][0]["data"]["files"] == len(real)
    assert record["checkpoint"][0]["data"]["bytes"] > 0
    assert not (out / SCRATCH).exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == \
        ["checkpoint-2"]
    assert summary(out)["global_step"] == 2


@needs_isolation
def test_auto_resume_after_the_rehearsal_resumes_the_real_checkpoint(shared_run):
    tmp, spec, _ = shared_run
    out = tmp / "out"
    marker = (out / "checkpoint-2" / COMPLETE_MARKER).read_bytes()
    first = train_losses(out)
    spec.write_text(spec.read_text().replace("max_steps: 2", "max_steps: 3"))
    result = _launch(spec, tmp)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert f"resuming from {out / 'checkpoint-2'}" in log
    # Rehearsed at the resumed step, beside (not over) the real checkpoint-2.
    assert "loaded back the step-2 checkpoint" in log
    assert (out / "checkpoint-2" / COMPLETE_MARKER).read_bytes() == marker
    assert summary(out)["global_step"] == 3
    assert log.count("'loss'") == 1, "steps 1-2 were trained again"
    assert train_losses(out)[2] == first[2]  # the history came back from checkpoint-2
    assert not (out / SCRATCH).exists()


# -- the rehearsal alone: a shard rank 0 cannot see, a checkpoint that does not load --------

@needs_isolation
def test_the_rehearsal_names_the_node_whose_shard_rank_0_cannot_see(tmp_path, tiny_model_dir):
    """The storage check passes (output shared); then rank 0 cannot see the RNG state node 1
    wrote into the rehearsal checkpoint: the rehearsal names node 1 and stops the job."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={
        "nodes": 2, "preflight": WINDOW, "volumes": shared_volumes(tmp_path)})
    result = _launch(spec, tmp_path, **rehearsal_faults.env("hide"), **SHORT_SAVE_WAIT)
    log = result.stdout + result.stderr
    assert result.returncode == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    assert "ft pre-flight: ok   storage    node 1 (node1)" in log
    assert "ft pre-flight: FAIL checkpoint node 1 (node1): rank 0 on node 0 (node0) cannot " \
           f"see checkpoint files node 1 sees under {tmp_path / 'out'} " \
           "(rng_state_1.pth): output_dir is not shared" in log
    assert "ft pre-flight: ok   checkpoint node 0 (node0)" in log
    assert "'loss'" not in log
    out = tmp_path / "out"
    assert not (out / SCRATCH).exists()
    assert not any(p.name.startswith("checkpoint-") for p in out.iterdir())


def test_a_rehearsal_checkpoint_that_does_not_load_back_is_named(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    result = run_ft("train", str(spec), cwd=tmp_path,
                    env={**os.environ, PREFLIGHT_ENV: json.dumps(WINDOW),
                         **rehearsal_faults.env("corrupt")})
    log = result.stdout + result.stderr
    assert result.returncode == PREFLIGHT_FAILED_EXIT_CODE, log[-4000:]
    assert "ft pre-flight: FAIL checkpoint node 0" in log
    assert "rank 0 could not load the checkpoint back: " in log
    assert "'loss'" not in log
    out = tmp_path / "out"
    assert not (out / SCRATCH).exists()
    assert not any(p.name.startswith("checkpoint-") for p in out.iterdir())
    (finding,) = _record(out)["checkpoint"]
    assert not finding["ok"] and finding["node_rank"] == 0


def test_a_shard_that_no_longer_matches_its_marker_fails_the_verify(tmp_path):
    from trainer.preflight.rehearsal import _verify
    from trainer.torch_free.preflight_settings import Preflight

    directory = tmp_path / "checkpoint-0"
    directory.mkdir()
    (directory / "optimizer.pt").write_bytes(b"x" * 4096)
    mark_complete(directory, 0, ["optimizer.pt"])
    (directory / "optimizer.pt").write_bytes(b"x" * 100)
    with pytest.raises(RuntimeError, match="optimizer.pt is 100 bytes, the marker recorded "
                       "4096 .truncated or rewritten."):
        _verify(directory, Preflight.model_validate(WINDOW))


def test_a_passing_rehearsal_changes_nothing_in_the_training(tmp_path, tiny_model_dir,
                                                             tiny_lora_run):
    """The same run with and without the rehearsal: the same losses, step for step."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    result = run_ft("train", str(spec), cwd=tmp_path,
                    env={**os.environ, PREFLIGHT_ENV: json.dumps(WINDOW)})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "ft pre-flight: ok   checkpoint node 0" in log
    assert train_losses(tmp_path / "out") == train_losses(tiny_lora_run / "out")
    assert not (tmp_path / "out" / SCRATCH).exists()


def test_checkpoint_rehearsal_false_skips_it_and_says_so_once(tmp_path, capsys, monkeypatch):
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.preflight.rehearsal import CheckpointRehearsal
    monkeypatch.setenv(PREFLIGHT_ENV, json.dumps({"checkpoint_rehearsal": False}))
    cfg = make_cfg(tmp_path, [{"path": "unused.jsonl", "type": "alpaca"}],
                   output_dir=str(tmp_path))
    rehearsal = CheckpointRehearsal(trainer=None, cfg=cfg, world=WorldRanks())
    rehearsal.on_train_begin(args=None, state=None, control="control")
    assert capsys.readouterr().out == ("ft pre-flight: checkpoint rehearsal skipped "
                                       "(launch.preflight.checkpoint_rehearsal: false)\n")
    assert list(tmp_path.iterdir()) == []


# -- leftovers of a killed attempt: never resumed from, swept by the next one --------------

def _killed_attempt_leftovers(out: Path) -> Path:
    """What a job killed mid-rehearsal leaves: a marked checkpoint and a storage file."""
    left = out / SCRATCH / "rehearsal-0123456789ab" / "checkpoint-0"
    left.mkdir(parents=True)
    (left / "trainer_state.json").write_text("{}")
    mark_complete(left, 0, ["trainer_state.json"])
    (out / SCRATCH / "storage-ba9876543210").mkdir()
    (out / SCRATCH / "storage-ba9876543210" / "node-0.json").write_text(
        json.dumps({"node_rank": 0, "host": "old", "attempt": "storage-ba9876543210"}))
    return left


def test_a_killed_rehearsal_is_never_resumed_from(tmp_path):
    from trainer.checkpoint.resume import resolve_resume

    out = tmp_path / "out"
    _killed_attempt_leftovers(out)
    assert resolve_resume("auto", None, out) is None  # a fresh start, not the rehearsal


def test_the_next_attempt_sweeps_what_a_killed_one_left(tmp_path):
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.preflight.runner import Context
    from trainer.preflight.storage_check import check
    from trainer.torch_free.preflight_settings import Preflight

    out = tmp_path / "out"
    _killed_attempt_leftovers(out)
    cfg = make_cfg(tmp_path, [{"path": "unused.jsonl", "type": "alpaca"}], output_dir=str(out))
    context = Context(Preflight.model_validate(WINDOW), cfg, WorldRanks(), "cpu", out)
    (finding,) = check(context)
    assert finding.ok and finding.detail == f"sees the files of 1 of 1 node(s) under {out}"
    assert list(out.iterdir()) == []
