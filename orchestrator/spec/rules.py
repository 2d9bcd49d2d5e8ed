"""Cross-field rules: combinations each key allows alone but that cannot work together.

Each rule returns (yaml_path, message); the message says how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterator

from orchestrator.spec.launch_schema import LaunchSpec
from orchestrator.spec.local_checks import chat_template_problems
from orchestrator.spec.mistral_common_rules import mistral_common_problems
from orchestrator.spec.model_knob_rules import model_knob_notes, model_knob_problems
from orchestrator.spec.moe_rules import moe_problems
from orchestrator.spec.parallel_sizes import dp_size_problems, dp_world_problems
from orchestrator.spec.schedule_data_rules import schedule_data_notes, schedule_data_problems
from trainer.torch_free.chat_templates import tokenizer_only_note
from trainer.torch_free.deepspeed_files import quantized_zero3_problem, zero_stage
from trainer.torch_free.deepspeed_files import resolve as resolve_deepspeed
from trainer.torch_free.errors import UserError
from trainer.torch_free.prequantized import prequantized_problems
from trainer.torch_free.training import LIGER_KEYS, TrainingConfig

Rule = tuple[tuple[str, ...], str]


def cross_field_problems(t: TrainingConfig, launch: LaunchSpec, world_known: bool) -> list[Rule]:
    """world_known is False for a plain Axolotl config (no `launch:`): its GPU count comes
    from whoever launches it, so rules about the number of GPUs cannot apply yet."""
    rules = list(_quantization(t)) + list(_training(t)) + list(_launch(launch))
    rules += prequantized_problems(t) + mistral_common_problems(t)
    rules += list(chat_template_problems(t)) + list(schedule_data_problems(t))
    rules += list(model_knob_problems(t, launch))
    if world_known:
        rules += list(_world_size(t, launch))
    return rules + list(_distribution(t))


def _quantization(t: TrainingConfig) -> Iterator[Rule]:
    if t.adapter == "qlora" and not t.load_in_4bit:
        yield ("adapter",), "`adapter: qlora` needs `load_in_4bit: true`"
    if t.load_in_4bit and t.load_in_8bit:
        yield ("load_in_8bit",), "choose one of `load_in_4bit` and `load_in_8bit`"
    if t.load_in_4bit and t.adapter == "lora":
        yield ("adapter",), "4-bit weights with LoRA is QLoRA: set `adapter: qlora`"
    if (t.load_in_4bit or t.load_in_8bit) and t.adapter is None:
        yield ("adapter",), ("quantized weights cannot be fully fine-tuned; set "
                             "`adapter: qlora` (4-bit) or `adapter: lora` (8-bit)")
    if t.adapter and not t.lora_target_linear and not t.lora_target_modules and \
            not t.lora_target_parameters:
        yield ("lora_target_linear",), ("say which layers get adapters: "
                                        "`lora_target_linear: true` or `lora_target_modules`")
    yield from moe_problems(t)


def _distribution(t: TrainingConfig) -> Iterator[Rule]:
    if t.deepspeed:
        yield from _deepspeed(t)
    if t.uses_fsdp and t.deepspeed:
        yield ("deepspeed",), "choose one of FSDP (`fsdp`/`fsdp_config`) and `deepspeed`"
    yield from dp_size_problems(t)
    if t.uses_fsdp and t.load_in_8bit:
        yield ("load_in_8bit",), ("8-bit weights cannot be sharded by FSDP; use "
                                  "`load_in_4bit: true` with `adapter: qlora`")
    if t.fsdp_config and t.fsdp_config.offload_params and t.fsdp_config.sharding_strategy \
            == "NO_SHARD":
        yield ("fsdp_config", "offload_params"), "offloading needs a sharding strategy"
    if t.fsdp_config and t.fsdp_config.replicate_frozen_params is True:
        if t.adapter is None:
            yield ("fsdp_config", "replicate_frozen_params"), (
                "a full fine-tune trains every weight: nothing is frozen to replicate; "
                "remove it")
        elif t.fsdp_config.offload_params:
            yield ("fsdp_config", "replicate_frozen_params"), (
                "keeps the frozen weights whole on every GPU, while `offload_params` moves "
                "weights to CPU memory; choose one")


def _deepspeed(t: TrainingConfig) -> Iterator[Rule]:
    """Checked here when the config can be read (a shipped name, or a file beside the user);
    a path that only exists on the cluster is checked again when training starts."""
    path = resolve_deepspeed(t.deepspeed)
    if not path.is_file():
        return
    try:
        stage = zero_stage(path)
    except UserError as exc:
        yield ("deepspeed",), str(exc).removeprefix("`deepspeed`: ")
        return
    problem = quantized_zero3_problem(stage, t.load_in_4bit, t.load_in_8bit)
    if problem:
        yield ("deepspeed",), problem


def _world_size(t: TrainingConfig, launch: LaunchSpec) -> Iterator[Rule]:
    # A CPU job (gpus_per_node 0) runs one process per node: sharding across CPU nodes is
    # real (gloo), and what the local emulation tests run.
    total = launch.nodes * max(launch.gpus_per_node, 1)
    if t.uses_fsdp and total < 2:
        key = "fsdp" if t.fsdp else "fsdp_config"
        yield (key,), (f"FSDP needs more than one GPU in total (launch has {launch.nodes} "
                       f"node(s) x {launch.gpus_per_node} GPU(s)); remove `{key}` or raise "
                       "`launch.gpus_per_node` / `launch.nodes`")
    yield from dp_world_problems(t, total)
    offload = t.fsdp_config and t.fsdp_config.offload_params
    if offload and launch.gpus_per_node == 0:
        yield ("fsdp_config", "offload_params"), (
            "offloading moves parameters from GPU to CPU memory; a CPU job "
            "(`launch.gpus_per_node: 0`) has them there already: remove it")
    if t.deepspeed and total < 2:
        yield ("deepspeed",), ("DeepSpeed ZeRO needs more than one GPU in total; remove "
                               "`deepspeed` or raise `launch.gpus_per_node` / `launch.nodes`")
    if launch.nodes > 1 and launch.gpus_per_node > 1 and not (t.uses_fsdp or t.deepspeed) \
            and t.adapter is None:
        yield ("fsdp",), ("a multi-node full fine-tune replicates the whole model and "
                          "optimizer on every GPU; add `fsdp: [full_shard]` or `deepspeed`")


def _training(t: TrainingConfig) -> Iterator[Rule]:
    if t.bf16 is True and t.fp16:
        yield ("fp16",), "choose one of `bf16` and `fp16`"
    if t.sample_packing and t.requested_attention == "eager":
        yield ("sample_packing",), ("packing needs varlen-capable attention so samples don't "
                                    "see each other; use `flash_attention: true` or "
                                    "`attn_implementation: sdpa` / `flex_attention`")
    if t.warmup_steps is not None and t.warmup_ratio is not None:
        yield ("warmup_ratio",), "choose one of `warmup_steps` and `warmup_ratio`"
    if t.eval_steps is not None and t.evals_per_epoch:
        yield ("evals_per_epoch",), "choose one of `eval_steps` and `evals_per_epoch`"
    if t.save_steps is not None and t.saves_per_epoch:
        yield ("saves_per_epoch",), "choose one of `save_steps` and `saves_per_epoch`"
    yield from _evaluation(t)
    if t.dataloader_prefetch_factor and not t.dataloader_num_workers:
        yield ("dataloader_prefetch_factor",), ("prefetching needs loader workers; set "
                                                "`dataloader_num_workers` (e.g. 2)")
    yield from _kernels(t)
    for index, ds in enumerate(t.datasets):
        if ds.type is not None and ds.type not in DATASET_TYPES:
            yield ("datasets", index, "type"), (
                f"unknown dataset type {ds.type!r}; ft supports {', '.join(DATASET_TYPES)} "
                "(omit `type` for pre-tokenized rows)")


def _evaluation(t: TrainingConfig) -> Iterator[Rule]:
    """As in Axolotl, `evals_per_epoch` without eval data is a no-op (warned), while an
    explicit `eval_steps` / `eval_strategy` asks for an evaluation that cannot run."""
    has_eval_data = bool(t.val_set_size or t.test_datasets)
    explicit = [k for k in ("eval_steps", "eval_strategy")
                if getattr(t, k) not in (None, "no")]
    if explicit and not has_eval_data:
        yield (explicit[0],), ("evaluation is asked for but there is no eval data; set "
                               "`val_set_size` (e.g. 0.05) or `test_datasets`")
    if t.eval_strategy == "no" and (t.eval_steps or t.evals_per_epoch):
        yield ("eval_strategy",), ("`eval_strategy: no` turns evaluation off; remove "
                                   "`eval_steps` / `evals_per_epoch`")
    if t.save_strategy == "no" and (t.save_steps or t.saves_per_epoch):
        yield ("save_strategy",), ("`save_strategy: no` turns checkpoints off; remove "
                                   "`save_steps` / `saves_per_epoch`")


def _kernels(t: TrainingConfig) -> Iterator[Rule]:
    heads = [k for k in ("liger_fused_linear_cross_entropy", "liger_cross_entropy",
                         "cut_cross_entropy") if getattr(t, k)]
    if len(heads) > 1:
        yield (heads[1],), f"choose one loss kernel: `{heads[0]}` is set too"
    if t.liger_kernel is False:
        for key in LIGER_KEYS:
            if getattr(t, key):
                yield (key,), "`liger_kernel: false` turns Liger off; remove one of them"


# FSDP1-era switches Axolotl configs carry; FSDP2 has no equivalent for them.
_FSDP1_ONLY = ("sync_module_states", "use_orig_params", "limit_all_gathers",
               "backward_prefetch", "forward_prefetch")


# fsdp_config keys ft's FSDP2 plan decides itself (trainer/distributed/fsdp.py).
_FSDP_PLAN_DECIDES = {
    "cpu_offload_pin_memory": "offloaded parameters are always pinned",
    "final_state_dict_type": "the final model is always written whole",
    "min_num_params": "ft shards per decoder layer, not by size",
    "mixed_precision_policy": "the policy follows `bf16` / `fp16`",
}


def ignored_settings(t: TrainingConfig) -> list[str]:
    """Settings that are valid but change nothing, so the user hears about it."""
    names = [t.chat_template, *(ds.chat_template for ds in [*t.datasets, *(t.test_datasets
                                                                        or [])])]
    notes = list(dict.fromkeys(filter(None, map(tokenizer_only_note, filter(None, names)))))
    if t.evals_per_epoch and not (t.val_set_size or t.test_datasets):
        notes.append("`evals_per_epoch` is ignored: there is no eval data (`val_set_size` is "
                     "0 and there are no `test_datasets`)")
    return notes + _ignored_fsdp_settings(t) + schedule_data_notes(t) + \
        model_knob_notes(t)


def _ignored_fsdp_settings(t: TrainingConfig) -> list[str]:
    fc = t.fsdp_config
    if fc is None:
        return []
    notes = []
    for key, reason in _FSDP_PLAN_DECIDES.items():
        if getattr(fc, key) is not None:
            notes.append(f"`fsdp_config.{key}` is ignored: {reason}")
    if fc.fsdp_version == 1:
        notes.append("`fsdp_config.fsdp_version: 1` runs as FSDP2 (fully_shard per layer)")
    for key in _FSDP1_ONLY:
        if getattr(fc, key) not in (None, False):
            notes.append(f"`fsdp_config.{key}` has no FSDP2 equivalent and is ignored")
    if fc.state_dict_type == "SHARDED_STATE_DICT":
        notes.append("`fsdp_config.state_dict_type` changes nothing: ft always writes "
                     "checkpoints sharded (per rank, resumable) and the final model whole")
    if fc.cpu_ram_efficient_loading and t.load_in_4bit:
        notes.append("`fsdp_config.cpu_ram_efficient_loading` does not apply to 4-bit models: "
                     "each rank quantizes on its own GPU while loading, one checkpoint file at "
                     "a time, so host memory already stays at one file per process")
    if fc.auto_wrap_policy == "SIZE_BASED_WRAP":
        notes.append("`fsdp_config.auto_wrap_policy: SIZE_BASED_WRAP` is ignored: ft shards "
                     "per decoder layer")
    return notes


DATASET_TYPES = ("alpaca", "chat_template", "completion", "input_output", "pretokenized")


def _launch(launch: LaunchSpec) -> Iterator[Rule]:
    overlap = sorted(set(launch.secrets) & set(launch.env))
    for name in overlap:
        yield ("launch", "env", name), (f"`{name}` is both a secret and a plain env value; "
                                        "keep it only in `launch.secrets`")
