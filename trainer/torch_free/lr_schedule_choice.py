"""Which learning-rate schedule a spec asks for, decided without torch.

Axolotl's scheduler keys beside `lr_scheduler` (`cosine_min_lr_ratio`,
`cosine_constant_lr_ratio`, `lr_quadratic_warmup`, `lr_div_factor`) only take effect in
some combinations; Axolotl ignores them silently in the others. ft runs the same schedule
Axolotl would (trainer/loop/lr_schedules.py) and says at validate time which key changes
nothing (orchestrator/spec/schedule_data_rules.py).
"""

from __future__ import annotations

from typing import Literal

# transformers' `SchedulerType` values (tests/test_lr_schedules.py keeps this list equal to
# the installed transformers'), plus Axolotl's own `one_cycle` (torch's OneCycleLR).
TRANSFORMERS_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
    "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr",
    "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy")
FT_SCHEDULERS = ("one_cycle",)
KNOWN_SCHEDULERS = TRANSFORMERS_SCHEDULERS + FT_SCHEDULERS

Schedule = Literal["transformers", "cosine_min_lr", "cosine_constant", "cosine_quadratic",
                   "one_cycle"]


def schedule_kind(lr_scheduler: str, cosine_min_lr_ratio: float | None,
                  cosine_constant_lr_ratio: float | None,
                  lr_quadratic_warmup: bool | None) -> Schedule:
    """Axolotl's precedence: quadratic warmup wins over a minimum LR (which it then drops);
    the constant tail needs a minimum LR to hold."""
    if lr_scheduler == "one_cycle":
        return "one_cycle"
    if lr_scheduler != "cosine":
        return "transformers"
    if lr_quadratic_warmup:
        return "cosine_quadratic"
    if cosine_min_lr_ratio is not None and cosine_constant_lr_ratio is not None:
        return "cosine_constant"
    if cosine_min_lr_ratio is not None:
        return "cosine_min_lr"
    return "transformers"


def unused_schedule_keys(lr_scheduler: str, cosine_min_lr_ratio: float | None,
                         cosine_constant_lr_ratio: float | None,
                         lr_quadratic_warmup: bool | None,
                         lr_div_factor: float | None) -> list[tuple[str, str]]:
    """(key, why it changes nothing) for each set scheduler key the schedule does not read."""
    kind = schedule_kind(lr_scheduler, cosine_min_lr_ratio, cosine_constant_lr_ratio,
                         lr_quadratic_warmup)
    unused = []
    if cosine_min_lr_ratio is not None and kind not in ("cosine_min_lr", "cosine_constant"):
        why = ("`lr_quadratic_warmup` decays to 0 (as in Axolotl)" if kind == "cosine_quadratic"
               else "it applies to `lr_scheduler: cosine` only")
        unused.append(("cosine_min_lr_ratio", why))
    if cosine_constant_lr_ratio is not None and kind != "cosine_constant":
        unused.append(("cosine_constant_lr_ratio", "it needs `lr_scheduler: cosine` and "
                       "`cosine_min_lr_ratio` (the LR it holds), without `lr_quadratic_warmup`"))
    if lr_quadratic_warmup and kind != "cosine_quadratic":
        unused.append(("lr_quadratic_warmup", "it applies to `lr_scheduler: cosine` only"))
    if lr_div_factor is not None and kind != "one_cycle":
        unused.append(("lr_div_factor", "it is the initial LR divisor of "
                       "`lr_scheduler: one_cycle` only"))
    return unused
