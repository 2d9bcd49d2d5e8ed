"""Checkpoint rehearsal: before step 1, save the real training state as a checkpoint, mark and
verify it, load it back, and delete it, so a checkpoint that cannot be written or read back
fails in the first minutes, not at the first `save_steps` hours in.

Everything goes through the code real checkpoints go through: the Trainer's own
`_save_checkpoint` (sharded where training shards: FSDP2's DCP files, DeepSpeed's, one RNG
state per rank), ft's marker (trainer/checkpoint/save.py: every rank lists what it sees, rank
0 waits for all of it and writes the manifest), the manifest verify resume trusts
(trainer/checkpoint/resume.py, on every node), and the loads a resume makes (model, optimizer
and scheduler, scaler, RNG, trainer state). It is written to the pre-flight's scratch folder
(trainer/preflight/scratch.py), never as `checkpoint-N` in output_dir: resume never finds it,
rotation never counts it, a real checkpoint of the same step is never touched.

The state after the rehearsal is the state before it: what is loaded back is what was just
saved, and the one thing saving changes is put back (torch's sharded optimizer save fills a
fresh optimizer's state, which would shift Adam's first step; a fresh one is made fresh
again). No rank raises in the middle: each stage's failure is recorded and the ranks go
through the same collectives to the end, so rank 0 names the node and `conclude` stops every
rank (exit 78) before step 1.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time
from pathlib import Path

from transformers import TrainerCallback, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from trainer.checkpoint.manifest import list_files
from trainer.checkpoint.resume import COMPLETE_MARKER, checkpoint_problem
from trainer.checkpoint.save import _gather_listings as gather_listings
from trainer.checkpoint.save import _mark as mark
from trainer.distributed.world_ranks import WorldRanks
from trainer.preflight.findings import Finding
from trainer.preflight.runner import Context, conclude, settings_here
from trainer.preflight.scratch import attempt_folder, gather, remove, sweep
from trainer.preflight.storage_check import FIX, visibility_window
from trainer.torch_free.training import TrainingConfig

CHECK = "checkpoint"
TRAINER_STATE = "trainer_state.json"
POLL_S = 0.25


class CheckpointRehearsal(TrainerCallback):
    """Runs the rehearsal once, at the start of training (model, optimizer and scheduler as
    built, a resumed checkpoint already loaded), when the pre-flight is on."""

    def __init__(self, trainer, cfg: TrainingConfig, world: WorldRanks) -> None:
        self.trainer, self.cfg, self.world = trainer, cfg, world

    def on_train_begin(self, args, state, control, **kwargs):
        settings = settings_here()
        if settings is None:
            return control
        if not settings.checkpoint_rehearsal:
            if self.world.is_main:
                print("ft pre-flight: checkpoint rehearsal skipped "
                      "(launch.preflight.checkpoint_rehearsal: false)", flush=True)
            return control
        context = Context(settings, self.cfg, self.world, args.device, Path(self.cfg.output_dir))
        conclude(rehearse(self.trainer, context), CHECK, context)
        return control


def rehearse(trainer, context: Context) -> list[Finding]:
    """Every rank calls it at the same point; the findings, one per node, on rank 0."""
    world, started = context.world, time.monotonic()
    folder = attempt_folder(context.output_dir, "rehearsal", world)
    step = trainer.state.global_step
    directory = folder / f"{PREFIX_CHECKPOINT_DIR}-{step}"
    me = {"rank": world.rank, "node": world.node_rank, "host": socket.gethostname(),
          "stage": None, "error": None}
    fresh = _fresh_optimizer(trainer)
    unseen: list[tuple[str, list[int]]] = []
    try:
        if world.local_rank == 0:
            sweep(folder)  # a killed attempt's rehearsal: a whole checkpoint's worth of disk
        save_start = time.monotonic()
        _stage(me, "write", lambda: _save(trainer, folder))
        me["save_s"] = time.monotonic() - save_start
        views = gather_listings(directory)  # what each rank sees; also the barrier
        ranks = gather(me, world)
        if world.is_main and not _failed(ranks):
            _stage(me, "mark", lambda: unseen.extend(
                [] if mark(directory, step, views) else _unseen(directory, views)))
        # Rank 0's marking to every rank: each next stage runs everywhere or nowhere.
        unseen[:], ranks[0] = gather((unseen, me) if world.is_main else None, world)[0]
        if not (_failed(ranks) or unseen):
            if world.local_rank == 0:  # a node's ranks share its view of the storage
                _stage(me, "verify", lambda: _verify(directory, context.settings))
            ranks = gather(me, world)
        if not (_failed(ranks) or unseen):
            load_start = time.monotonic()
            _stage(me, "load", lambda: _load(trainer, directory))
            me["load_s"] = time.monotonic() - load_start
            ranks = gather(me, world)
    finally:
        if fresh:
            _make_fresh(trainer)
        if world.local_rank == 0:
            with contextlib.suppress(OSError):  # never a marked leftover, even half removed
                (directory / COMPLETE_MARKER).unlink(missing_ok=True)
            remove(folder)
    gather(None, world)  # gone on every node before training writes beside it
    if not world.is_main:
        return []
    return _findings(ranks, unseen, views, str(context.output_dir), step,
                     time.monotonic() - started)


def _stage(me: dict, stage: str, action) -> None:
    if me["error"] is not None:
        return
    try:
        action()
    except Exception as exc:  # named in the findings; the ranks go on together
        me["stage"], me["error"] = stage, f"{type(exc).__name__}: {exc}"[:500]


def _failed(ranks: list[dict]) -> bool:
    return any(rank["error"] is not None for rank in ranks)


def _save(trainer, folder: Path) -> None:
    """The Trainer's own checkpoint save, into `folder` instead of output_dir: never pushed
    to the Hub, and the trainer state it records is left as it was."""
    callbacks = copy.deepcopy(trainer.state.stateful_callbacks)
    push = trainer.args.push_to_hub
    trainer._get_output_dir = lambda trial: str(folder)  # shadows the method, once
    trainer.args.push_to_hub = False
    try:
        trainer._save_checkpoint(trainer.model_wrapped, trial=None)
    finally:
        del trainer._get_output_dir
        trainer.args.push_to_hub = push
        trainer.state.stateful_callbacks = callbacks


def _unseen(directory: Path, views: list[tuple[int, str, dict[str, int]]]
            ) -> list[tuple[str, list[int]]]:
    """(file, the other ranks that see it) for each file rank 0 still cannot see at its full
    size after save.py's visibility wait: those ranks' nodes do not share rank 0's storage."""
    here = list_files(directory, skip=frozenset({COMPLETE_MARKER}))
    listed: dict[str, dict[int, int]] = {}
    for rank, _, files in views:
        for name, size in files.items():
            listed.setdefault(name, {})[rank] = size
    unseen = []
    for name, sizes in sorted(listed.items()):
        if here.get(name, -1) < max(sizes.values()):
            others = sorted(rank for rank in sizes if rank != 0)
            unseen.append((name, others or [0]))
    return unseen


def _verify(directory: Path, settings) -> None:
    """This node sees the marker (within the storage window) and every file it lists."""
    deadline = time.monotonic() + visibility_window(settings)[0]
    while not (directory / COMPLETE_MARKER).is_file() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if problem := checkpoint_problem(directory):
        raise RuntimeError(problem)


def _load(trainer, directory: Path) -> None:
    """What a resume loads, in the Trainer's own functions (transformers' train(),
    _prepare_for_training and _run_epoch split it so)."""
    path = str(directory)
    if trainer.is_deepspeed_enabled:
        from transformers.integrations.deepspeed import deepspeed_load_checkpoint

        deepspeed_load_checkpoint(trainer.model_wrapped, path,
                                  load_module_strict=not hasattr(trainer.model, "peft_config"))
    elif trainer.is_fsdp_enabled:
        trainer._load_from_checkpoint(path, trainer.model_wrapped)
    else:
        trainer._load_from_checkpoint(path)
    trainer._load_optimizer_and_scheduler(path)
    trainer._load_scaler(path)
    trainer._load_rng_state(path)
    TrainerState.load_from_json(os.path.join(path, TRAINER_STATE))


def _torch_optimizer(trainer):
    optimizer = trainer.optimizer
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper


def _fresh_optimizer(trainer) -> bool:
    optimizer = _torch_optimizer(trainer)
    return optimizer is not None and hasattr(optimizer, "state") and not optimizer.state


def _make_fresh(trainer) -> None:
    """torch's sharded optimizer save (get_optimizer_state_dict) steps a fresh optimizer once
    with zero gradients and learning rate 0 to create its state: Adam's step count would
    start at 1 and change the first real step. A fresh optimizer starts fresh again."""
    _torch_optimizer(trainer).state.clear()


def _findings(ranks: list[dict], unseen: list[tuple[str, list[int]]],
              views: list[tuple[int, str, dict[str, int]]], output_dir: str, step: int,
              took: float) -> list[Finding]:
    names = {name for _, _, files in views for name in files}
    size = sum(max(files.get(name, 0) for _, _, files in views) for name in names)
    nodes: dict[int, list[dict]] = {}
    for rank in ranks:
        nodes.setdefault(rank["node"], []).append(rank)
    node_of = {rank["rank"]: rank["node"] for rank in ranks}
    zero = ranks[0]
    findings = []
    for node, members in sorted(nodes.items()):
        host = members[0]["host"]
        data = {"step": step, "files": len(names), "bytes": size, "seconds": round(took, 2),
                "save_s": round(max(r.get("save_s", 0.0) for r in members), 2),
                "load_s": round(max(r.get("load_s", 0.0) for r in members), 2)}
        problems = [_said(rank) for rank in members if rank["error"]]
        hidden = [name for name, seers in unseen if node in {node_of.get(r) for r in seers}]
        if hidden:
            problems.append(
                f"rank 0 on node 0 ({zero['host']}) cannot see checkpoint files node "
                f"{node} sees under {output_dir} ({', '.join(hidden[:3])}"
                f"{', ...' if len(hidden) > 3 else ''}): output_dir is not shared, and no "
                f"checkpoint of this job could be marked complete. {FIX}")
        ok = f"saved, marked, verified and loaded back the step-{step} checkpoint " \
             f"({_mib(size)} in all) in {took:.1f} s"
        findings.append(Finding(CHECK, node, host, not problems,
                                "; ".join(problems) or ok, data))
    return findings


def _said(rank: dict) -> str:
    what = {"write": "could not write its part of the checkpoint",
            "mark": "could not mark the checkpoint complete",
            "verify": "sees a checkpoint that does not match its marker",
            "load": "could not load the checkpoint back"}[rank["stage"]]
    return f"rank {rank['rank']} {what}: {rank['error']}"


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
