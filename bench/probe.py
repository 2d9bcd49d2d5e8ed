"""Run a training program with the same measuring probe on transformers' Trainer.

    python bench/probe.py OUT.json ft train spec.yaml            # ft's own CLI, unmodified
    python bench/probe.py OUT.json bench/baseline_hf_peft.py ... # the baseline script
    python bench/probe.py OUT.json -m axolotl.cli.train cfg.yml  # Axolotl (bench/axolotl_tool.py)

The three tools are built on `transformers.Trainer`, so one probe, installed from outside (no
edit to ft's trainer/, the baseline or Axolotl), measures them the same way:

- a TrainerCallback appended to every Trainer's callbacks: CUDA-synchronised time of each
  optimizer step (on_step_begin .. on_step_end, the baseline's own Timer) and the host clock
  at each step end (wall time between step ends: includes data loading, collation, logging);
  `torch.cuda.reset_peak_memory_stats()` at train begin, then the largest
  `max_memory_allocated` read at each step end and at train end (Axolotl resets the peak
  every time it logs, which is after on_step_end: the largest reading is the training peak);
- `Trainer.training_step` wrapped to record each micro-batch's loss (the loss-curve guard
  compares them step by step across tools) and to count its useful (non-padding) tokens:
  the real row lengths that ft's collator saw (its Collator is wrapped to record them, in
  order), else `attention_mask.sum()` (the baseline's own count), else the tokens before each
  row's right padding (pad id with label -100: Axolotl's packed rows carry position_ids and
  no mask), else every token.

Writes OUT.json at train end. Gradient accumulation must be 1 (one micro-batch per step).
"""

from __future__ import annotations

import collections
import json
import os
import runpy
import sys
import time

T0 = time.perf_counter()


def install(out_path: str, ft_collator: bool = True) -> None:
    import torch
    from transformers import Trainer, TrainerCallback

    # Asked at the first callback, not here: in torchrun's workers this runs from
    # sitecustomize, before ft picks the rank's device.
    cuda_state: list[bool] = []

    def cuda() -> bool:
        if not cuda_state:
            cuda_state.append(torch.cuda.is_available())
        return cuda_state[0]

    rec: dict = {"step_s": [], "step_end_t": [], "useful": [], "batch_tokens": [], "loss": [],
                 "useful_source": None, "peak_alloc_gib": None, "peak_reserved_gib": None}
    lengths: collections.deque = collections.deque()

    def sync() -> None:
        if cuda():
            torch.cuda.synchronize()

    def read_peaks() -> None:
        for key, read in (("peak_alloc_gib", torch.cuda.max_memory_allocated),
                          ("peak_reserved_gib", torch.cuda.max_memory_reserved)):
            rec[key] = max(rec[key] or 0.0, read() / 2**30)

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            sync()
            if cuda():
                torch.cuda.reset_peak_memory_stats()
            rec["train_begin_s"] = time.perf_counter() - T0

        def on_step_begin(self, args, state, control, **kw):
            sync()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            now = time.perf_counter()
            rec["step_s"].append(now - self.t)
            rec["step_end_t"].append(now - T0)
            if cuda():
                read_peaks()

        def on_train_end(self, args, state, control, **kw):
            sync()
            rec["train_end_s"] = time.perf_counter() - T0
            rec["global_step"] = state.global_step
            rec["gradient_accumulation_steps"] = args.gradient_accumulation_steps
            if cuda():
                read_peaks()
            with open(out_path, "w") as f:
                json.dump(rec, f)

    original_init = Trainer.__init__

    def __init__(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [Probe()]
        original_init(self, *args, **kwargs)

    original_step = Trainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        ids = inputs["input_ids"]
        if lengths:
            useful, source = lengths.popleft(), "collator_rows"
        elif inputs.get("attention_mask") is not None:
            useful, source = int(inputs["attention_mask"].sum()), "attention_mask"
        else:
            useful, source = before_right_padding(ids, inputs.get("labels"), pad_id(self))
        rec["useful"].append(useful)
        rec["batch_tokens"].append(ids.numel())
        rec["useful_source"] = source
        loss = original_step(self, model, inputs, *args, **kwargs)
        # The step's loss for the loss-curve guard (the step ends with a sync anyway).
        rec["loss"].append(float(loss.detach().float()))
        return loss

    Trainer.__init__ = __init__
    Trainer.training_step = training_step

    if not ft_collator:  # another tool's process: leave ft's modules unimported
        return
    try:  # ft only: record each batch's real row lengths, in the order batches are made
        from trainer.data.collate import Collator
    except ImportError:
        return
    original_call = Collator.__call__

    def collate(self, rows):
        lengths.append(sum(len(row["input_ids"]) for row in rows))
        return original_call(self, rows)

    Collator.__call__ = collate


def pad_id(trainer) -> int | None:
    tok = getattr(trainer, "processing_class", None) or getattr(trainer, "tokenizer", None)
    return getattr(tok, "pad_token_id", None)


def before_right_padding(ids, labels, pad: int | None) -> tuple[int, str]:
    """Tokens before each row's right padding: trailing positions whose id is the pad id
    and whose label is -100 (a pad id inside a row, with a real label, is a token)."""
    import torch

    if pad is None:
        return ids.numel(), "all_tokens"
    padded = ids == pad
    if labels is not None and labels.shape == ids.shape:
        padded &= labels == -100
    position = torch.arange(1, ids.shape[1] + 1, device=ids.device).expand_as(ids)
    lengths = torch.where(padded, 0, position).amax(dim=1)
    return int(lengths.sum()), "before_right_padding"


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_path, target = sys.argv[1], sys.argv[2:]
    install(out_path, ft_collator=target[0] != "-m")
    sys.argv = target
    if target[0] == "ft":
        from orchestrator.cli import main as ft_main

        ft_main()
    elif target[0] == "-m":  # a module's CLI, as `python -m MODULE ARGS` runs it
        sys.argv = target[1:]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target[0])))
        runpy.run_path(target[0], run_name="__main__")


if __name__ == "__main__":
    main()
