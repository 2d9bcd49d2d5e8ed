"""Training progress read from a job's log: transformers' loss lines and tqdm's step counter.

transformers prints each logging step as a dict, `{'loss': '1.234', 'grad_norm': ...,
'learning_rate': ..., 'epoch': '0.5'}` (5.x formats the floats as strings; older versions
print numbers), without the step. The step comes from a `step` key when the trainer adds one,
else from tqdm's `10/30 [00:05<...]` bar counting to max_steps (drawn only on a terminal),
else it is estimated from the epoch: consecutive loss lines are `logging_steps` apart, so
`epoch * logging_steps / epoch gap` is the step (shown as `~10/30`; the first gap can be
shorter, after `logging_first_step`, so it is not used). Every node's local rank 0 prints the
same line, so repeats are dropped.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_DICT = re.compile(r"\{'[^{}]*\}")
_TQDM = re.compile(r"(?<![\d/])(\d+)/(\d+) \[")
_WATCHED = ("loss", "eval_loss", "train_loss")


def parse_metrics(line: str) -> dict[str, float] | None:
    """The numbers of a transformers log dict on this line, or None if there is none."""
    for match in _DICT.finditer(line):
        try:
            data = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue
        if isinstance(data, dict) and any(key in data for key in _WATCHED):
            return {str(key): number for key, value in data.items()
                    if (number := _number(value)) is not None}
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@dataclass
class Progress:
    """What the log has said so far; `feed` returns the metrics of a new loss line."""

    total_steps: int | None = None
    logging_steps: int | None = None
    step: int = 0
    step_source: str = ""  # "log", "tqdm", "epoch" (estimated) or "" (not known yet)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    _loss_epochs: list[float] = field(default_factory=list)
    _last_key: tuple = ()

    def feed(self, line: str) -> dict[str, float] | None:
        self._read_tqdm(line)
        metrics = parse_metrics(line)
        if metrics is None:
            return None
        # Runtimes differ between nodes; the epoch and the losses of one logging step do not.
        key = (metrics.get("epoch"), *((k, metrics[k]) for k in _WATCHED if k in metrics))
        if key == self._last_key:
            return None  # the same logging step, printed by another node
        self._last_key = key
        self._read_step(metrics)
        self.metrics = metrics
        if "loss" in metrics:
            self.history.append((self.step, metrics["loss"]))
        return metrics

    def _read_tqdm(self, line: str) -> None:
        for done, total in _TQDM.findall(line):
            # Only the bar counting to max_steps: others count examples, rows, weights.
            if int(total) == self.total_steps:
                self.step, self.step_source = max(self.step, int(done)), "tqdm"

    def _read_step(self, metrics: dict[str, float]) -> None:
        if "step" in metrics:
            self.step, self.step_source = int(metrics["step"]), "log"
        elif "train_loss" in metrics and self.total_steps and self.step_source != "log":
            self.step, self.step_source = self.total_steps, "tqdm"  # the end-of-training line
        elif "loss" in metrics and "epoch" in metrics and self.step_source in ("", "epoch"):
            self._loss_epochs.append(metrics["epoch"])
            epochs = self._loss_epochs
            if len(epochs) >= 3 and self.logging_steps and epochs[-1] > epochs[-2]:
                gap = epochs[-1] - epochs[-2]
                self.step = round(epochs[-1] * self.logging_steps / gap)
                self.step_source = "epoch"

    def bar(self, width: int = 24) -> str:
        total = self.total_steps
        step = {"": "?", "epoch": f"~{self.step}"}.get(self.step_source, str(self.step))
        if not total:
            return f"step {step}"
        filled = min(width, round(width * self.step / total))
        return f"[{'#' * filled}{'.' * (width - filled)}] {step}/{total}"

    def summary(self, metrics: dict[str, float]) -> str:
        """One readable line for a loss line: the bar, then loss / eval loss / lr / epoch."""
        parts = [self.bar()]
        for key, label in (("loss", "loss"), ("eval_loss", "eval_loss"),
                           ("train_loss", "train_loss"), ("learning_rate", "lr"),
                           ("epoch", "epoch")):
            if key in metrics:
                parts.append(f"{label} {metrics[key]:.4g}")
        return "  ".join(parts)
