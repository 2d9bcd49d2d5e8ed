"""Rules for the model and step knobs: `unfrozen_parameters`, `reinit_weights`,
`activation_offloading`, `torch_compile*` and `qat` (each key's own checks live in its
field; these are the combinations and the values only a parser can judge)."""

from __future__ import annotations

from collections.abc import Iterator

from orchestrator.spec.launch_schema import LaunchSpec
from trainer.torch_free.activation_offloading import LAYER_INPUTS, offload_mode
from trainer.torch_free.errors import UserError
from trainer.torch_free.optimizers import optimizer_problem
from trainer.torch_free.param_patterns import NamePattern
from trainer.torch_free.qat_spec import qat_problem
from trainer.torch_free.training import TrainingConfig

Rule = tuple[tuple[str, ...], str]


def model_knob_problems(t: TrainingConfig, launch: LaunchSpec) -> Iterator[Rule]:
    if t.reinit_weights and (t.load_in_4bit or t.load_in_8bit):
        yield ("reinit_weights",), ("`reinit_weights` builds random weights from the config, "
                                    "while 4/8-bit loading quantizes the pretrained ones; "
                                    "choose one")
    problem = optimizer_problem(t.optimizer)
    if problem:
        yield ("optimizer",), problem
    if t.activation_offloading == "disk":
        yield ("activation_offloading",), (
            "`activation_offloading: disk` (saved activations written to files) is not "
            "supported; `activation_offloading: true` keeps them in CPU memory")
    if t.qat is not None:
        problem = qat_problem(t.qat, launch.gpu)
        if problem:
            yield ("qat",), problem
        if t.load_in_4bit or t.load_in_8bit:
            yield ("qat",), ("`qat` fake-quantizes full-precision weights; bitsandbytes "
                             "4/8-bit weights are already quantized: remove one")
    for index, pattern in enumerate(t.unfrozen_parameters or []):
        try:
            NamePattern.parse(pattern)
        except UserError as exc:
            yield ("unfrozen_parameters", index), str(exc).removeprefix(
                "`unfrozen_parameters`: ")


def model_knob_notes(t: TrainingConfig) -> list[str]:
    """Settings that are valid but change nothing, so the user hears about it."""
    notes = []
    unused = [k for k in ("torch_compile_backend", "torch_compile_mode") if getattr(t, k)]
    if unused and not t.torch_compile:
        notes.append(f"`{unused[0]}` is ignored: `torch_compile` is not set (Axolotl ignores "
                     "it too); add `torch_compile: true`")
    reentrant = (t.gradient_checkpointing_kwargs or {}).get("use_reentrant")
    if offload_mode(t) == LAYER_INPUTS and reentrant is False:
        notes.append("`gradient_checkpointing_kwargs.use_reentrant: false` is ignored: "
                     "offloading the recomputed layers' inputs needs reentrant recompute "
                     "(the non-reentrant one keeps them on the GPU)")
    return notes
