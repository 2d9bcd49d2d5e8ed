"""Axolotl's scheduler keys (`cosine_constant_lr_ratio`, `lr_quadratic_warmup`,
`lr_scheduler: one_cycle` + `lr_div_factor`, `cosine_min_lr_ratio`, `lr_groups`): the
learning rate of every step, from the scheduler ft's Trainer builds and from a real run's
log, equals the schedule's formula (restated here from Axolotl's documented behaviour, not
imported)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import yaml

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import run_ft
from tests.corpus_tiny import CORPUS, tiny_corpus_copy
from tests.train_helpers import summary
from trainer.torch_free.errors import SpecError
from trainer.torch_free.lr_schedule_choice import TRANSFORMERS_SCHEDULERS

LR, TOTAL, WARMUP = 1e-3, 10, 2
BASE = "base_model: org/model\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def _cosine_constant(step: int, min_ratio: float, constant: float) -> float:
    if step < WARMUP:
        return step / WARMUP
    end = int(TOTAL * constant)
    return min_ratio + (1 - min_ratio) * _cosine((min(step, end) - WARMUP) / (end - WARMUP))


def _quadratic(step: int) -> float:
    return (step / WARMUP) ** 2 if step < WARMUP else _cosine((step - WARMUP) / (TOTAL - WARMUP))


def _min_lr(step: int, min_ratio: float) -> float:
    if step < WARMUP:
        return step / WARMUP
    return min_ratio + (1 - min_ratio) * _cosine((step - WARMUP) / (TOTAL - WARMUP))


class _Block(torch.nn.Module):
    """Parameter names like a decoder's: what `lr_groups` matches on."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj, self.v_proj = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        self.norm, self.lm_head = torch.nn.LayerNorm(2), torch.nn.Linear(2, 2, bias=False)


def _trainer(keys: str, tmp_path):
    """ft's Trainer (the spec's TrainingArguments, schedule and lr_groups) with its
    optimizer and scheduler created, as training starts them."""
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.loop.hf_trainer import FtTrainer, build_training_args
    from trainer.loop.lr_schedules import schedule_factory
    from trainer.models.load import choose_precision

    spec = parse_spec(BASE + f"learning_rate: {LR}\nwarmup_steps: {WARMUP}\n"
                      f"max_steps: {TOTAL}\noutput_dir: {tmp_path}\n" + keys, "spec.yaml")
    cfg = spec.training
    args = build_training_args(cfg, choose_precision(cfg), train_rows=TOTAL,
                               world=WorldRanks(), has_eval=False, plan=None)
    trainer = FtTrainer(model=_Block(), args=args, schedule=schedule_factory(cfg),
                        lr_groups=cfg.lr_groups)
    trainer.create_optimizer_and_scheduler(num_training_steps=TOTAL)
    return trainer


def _trainer_lrs(keys: str, tmp_path) -> list[float]:
    """The LR of each of TOTAL steps, from the scheduler ft's Trainer creates."""
    trainer = _trainer(keys, tmp_path)
    lrs = []
    for _ in range(TOTAL):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return lrs


@pytest.mark.parametrize(("keys", "factor"), [
    ("cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.6\n",
     lambda s: _cosine_constant(s, 0.1, 0.6)),
    ("lr_quadratic_warmup: true\n", _quadratic),
    ("cosine_min_lr_ratio: 0.2\n", lambda s: _min_lr(s, 0.2)),
], ids=["cosine_constant", "quadratic_warmup", "cosine_min_lr"])
def test_each_steps_lr_is_the_schedules_formula(keys, factor, tmp_path):
    lrs = _trainer_lrs("lr_scheduler: cosine\n" + keys, tmp_path)
    assert lrs == pytest.approx([LR * factor(s) for s in range(TOTAL)], rel=1e-6, abs=1e-12)


def test_one_cycle_starts_at_lr_over_div_factor_and_peaks_after_warmup(tmp_path):
    lrs = _trainer_lrs("lr_scheduler: one_cycle\nlr_div_factor: 10\n", tmp_path)
    assert lrs[0] == pytest.approx(LR / 10)
    assert lrs[WARMUP - 1] == pytest.approx(LR) and max(lrs) == pytest.approx(LR)
    rising, falling = lrs[:WARMUP], lrs[WARMUP - 1:]
    assert rising == sorted(rising) and falling == sorted(falling, reverse=True)
    assert lrs[-1] < LR / 1000  # annealed towards LR / (div_factor * final_div_factor)
    default = _trainer_lrs("lr_scheduler: one_cycle\n", tmp_path)
    assert default[0] == pytest.approx(LR / 25)  # torch's OneCycleLR default divisor


def test_lr_groups_give_matching_decayed_weights_their_own_lr_on_the_same_schedule(tmp_path):
    trainer = _trainer("lr_scheduler: cosine\ncosine_min_lr_ratio: 0.1\n"
                       "cosine_constant_lr_ratio: 0.6\nweight_decay: 0.01\nlr_groups:\n"
                       "  - {name: values, modules: [v_proj, lm_head], lr: 0.01}\n", tmp_path)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    groups = {names[id(p)]: g for g in trainer.optimizer.param_groups for p in g["params"]}
    # the weight only: biases and norms are not decayed, the output head is an embedding
    assert [n for n, g in groups.items() if g["initial_lr"] == 0.01] == ["v_proj.weight"]
    assert groups["v_proj.weight"]["weight_decay"] == 0.01
    assert {groups[n]["initial_lr"] for n in ("q_proj.weight", "v_proj.bias", "lm_head.weight",
                                              "norm.weight")} == {LR}
    for step in range(TOTAL):
        lrs = {n: g["lr"] for n, g in groups.items()}
        factor = _cosine_constant(step, 0.1, 0.6)
        assert lrs["v_proj.weight"] == pytest.approx(0.01 * factor, abs=1e-12)
        assert lrs["q_proj.weight"] == pytest.approx(LR * factor, abs=1e-12)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()


def test_ft_knows_exactly_transformers_schedulers():
    from transformers.trainer_utils import SchedulerType

    assert set(TRANSFORMERS_SCHEDULERS) == {s.value for s in SchedulerType}


def _warnings(text: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(text, "spec.yaml")
    return [str(w.message) for w in caught if issubclass(w.category, SpecWarning)]


def test_a_scheduler_key_its_schedule_does_not_read_is_warned_and_a_bad_name_refused():
    notes = _warnings(BASE + "lr_scheduler: linear\ncosine_min_lr_ratio: 0.1\n"
                      "lr_quadratic_warmup: true\nlr_div_factor: 5\n")
    assert any("`cosine_min_lr_ratio` is ignored: it applies to `lr_scheduler: cosine`" in n
               for n in notes)
    assert any(n.startswith("`lr_quadratic_warmup` is ignored") for n in notes)
    assert any(n.startswith("`lr_div_factor` is ignored") for n in notes)
    alone = _warnings(BASE + "cosine_constant_lr_ratio: 0.8\n")
    assert any("`cosine_constant_lr_ratio` is ignored: it needs `lr_scheduler: cosine` and "
               "`cosine_min_lr_ratio`" in n for n in alone)
    assert _warnings(BASE + "cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.8\n") == []
    with pytest.raises(SpecError) as info:
        parse_spec(BASE + "lr_scheduler: cosine_decay\n", "spec.yaml")
    assert "unknown scheduler 'cosine_decay'" in str(info.value)


def test_cosine_constant_corpus_config_logs_the_formulas_lr_each_step(tmp_path, tiny_model_dir):
    """A real run: the LR the Trainer logs at step s is the one step s trained with."""
    spec = tiny_corpus_copy("schedule-cosine-constant.yml", tmp_path, tiny_model_dir)
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    logged = {e["step"]: e["learning_rate"] for e in summary(tmp_path / "out")["log_history"]
              if "learning_rate" in e}
    source = yaml.safe_load((CORPUS / "schedule-cosine-constant.yml").read_text())
    assert source["max_steps"] == TOTAL and source["warmup_steps"] == WARMUP
    assert sorted(logged) == list(range(1, TOTAL + 1))
    for step, lr in logged.items():  # logged values are rounded to 4 digits
        assert lr == pytest.approx(LR * _cosine_constant(step - 1, 0.1, 0.6), rel=1e-3,
                                   abs=1e-9)


def test_a_changed_schedule_key_is_named_when_resuming():
    from trainer.checkpoint.resume_guard import changes, trained_with

    def record(keys: str) -> dict:
        return trained_with(parse_spec(BASE + keys, "spec.yaml").training, 1)

    before = record("cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.6\n")
    after = record("cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.8\n"
                   "lr_groups: [{name: v, modules: [v_proj], lr: 0.01}]\n")
    assert [name for name, _, _ in changes(before, after)] == ["cosine_constant_lr_ratio",
                                                               "lr_groups"]


@pytest.mark.parametrize("keys", [
    "cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.6\n", "lr_quadratic_warmup: true\n",
    "lr_scheduler: one_cycle\nlr_div_factor: 5\n"])
def test_a_checkpointed_schedule_resumes_at_the_same_lr(keys):
    """The Trainer saves the scheduler's state_dict and loads it with weights_only=True."""
    import io

    from trainer.loop.lr_schedules import schedule_factory

    factory = schedule_factory(parse_spec(BASE + keys, "spec.yaml").training)

    def fresh():
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        return optimizer, factory(optimizer, TOTAL, WARMUP)

    optimizer, scheduler = fresh()
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    saved = io.BytesIO()
    torch.save(scheduler.state_dict(), saved)
    saved.seek(0)
    resumed_optimizer, resumed = fresh()
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    for opt, sched in ((optimizer, scheduler), (resumed_optimizer, resumed)):
        opt.step()
        sched.step()  # the next step's LR comes from the restored position, not step 0
    assert resumed.get_last_lr() == scheduler.get_last_lr() and resumed.last_epoch == 5
