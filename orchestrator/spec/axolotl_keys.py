"""What ft does with each key Axolotl's schema knows but TrainingConfig has no field for.

Three answers, never silence:
- an alias: Axolotl's other spelling of a key ft has (renamed before validation);
- refused: a feature ft does not have; the message names it (a set value is an error);
- warned (axolotl_warned.py): a setting that does not change what ft trains, or that ft
  does its own way; the value is accepted and the user hears once what ft does instead.
An empty value (`key:`), `false`, `[]` or `{}` asks for nothing, as in Axolotl, so it is
dropped without a word. tests/fixtures/axolotl/schema_keys.txt lists Axolotl's keys and
tests/test_axolotl_keys.py proves each one is a TrainingConfig field or has an answer here.
"""

from __future__ import annotations

import re
from typing import Any

# Axolotl spelling -> ft field. The value is used unchanged.
ALIASES: dict[str, str] = {
    "dataset_num_proc": "dataset_processes",
    "evaluation_strategy": "eval_strategy",
    "type_of_model": "model_type",
    "liger_swiglu": "liger_glu_activation",
    "lora_rank": "lora_r",
    "model_revision": "revision_of_model",
    "model_config": "overrides_of_model_config",
}


class Refusal(str):
    """A refusal sentence, "<what> is/are not supported; <nearest>", that keeps its two parts:
    `what` says what the feature is, `nearest` names the nearest thing ft does. It is the
    sentence itself (a str), so messages and comparisons read it unchanged;
    tests/test_refusals.py checks that every refusal has both parts."""

    what: str
    nearest: str

    def __new__(cls, sentence: str) -> Refusal:
        self = super().__new__(cls, sentence)
        head, _, self.nearest = sentence.partition("; ")
        self.what = re.split(r" (?:is|are) not supported", head)[0]
        return self


_SHARDING_HINT = ("`fsdp_config`; `dp_shard_size` / `dp_replicate_size` for HSDP, sharded "
                  "inside a node and replicated across nodes")


def _group(feature: str, *keys: str) -> dict[str, Refusal]:
    return dict.fromkeys(keys, Refusal(feature))


# key -> "<what the feature is> is not supported; <the nearest thing ft does>", shown when
# the key is set.
REFUSED: dict[str, Refusal] = {
    **_group("multimodal training (image or audio inputs through a processor) is not "
             "supported; ft trains text-only causal LMs on `datasets` of text",
             "processor_type", "processor_kwargs", "image_size", "image_resize_algorithm",
             "freeze_mm_modules"),
    **_group("RL / preference training (DPO, IPO, ORPO, KTO, SimPO, GRPO) is not supported; "
             "the nearest is supervised fine-tuning on the preferred answers "
             "(`datasets[].type: chat_template`)",
             "rl", "rl_beta", "dpo_ld_alpha", "trl", "vllm", "dpo_beta", "dpo_generate_during_eval",
             "dpo_label_smoothing", "dpo_loss_type", "dpo_loss_weights", "dpo_norm_loss",
             "dpo_padding_free", "dpo_use_liger_kernel", "dpo_use_logits_to_keep",
             "dpo_use_weighting", "orpo_alpha", "cpo_alpha", "simpo_gamma", "rpo_alpha",
             "kto_desirable_weight", "kto_undesirable_weight", "precompute_ref_log_probs",
             "ebft", "nemo_gym_auto_clone", "nemo_gym_auto_start", "nemo_gym_config_paths",
             "nemo_gym_datasets", "nemo_gym_dir", "nemo_gym_enabled", "nemo_gym_head_port",
             "nemo_gym_max_turns", "nemo_gym_model_name", "nemo_gym_multi_turn",
             "nemo_gym_run_timeout", "nemo_gym_server_timeout", "nemo_gym_verify_timeout"),
    **_group("reward models (a scalar head trained to score answers, including process "
             "reward models over reasoning steps) are not supported; ft trains causal LMs "
             "(`adapter: lora` or a full fine-tune)",
             "reward_model", "process_reward_model", "center_rewards_coefficient",
             "num_labels"),
    **_group("knowledge distillation (training on a teacher model's logits) is not "
             "supported; the nearest is supervised fine-tuning on the teacher's generated "
             "text (`datasets`)",
             "kd_alpha", "kd_beta", "kd_ce_alpha", "kd_normalize_topk", "kd_online_server",
             "kd_online_server_base_url", "kd_online_timeout", "kd_online_topk",
             "kd_temperature", "kd_temperature_min", "kd_trainer"),
    **_group("diffusion language model training (denoising masked tokens instead of "
             "predicting the next one) is not supported; ft trains next-token prediction "
             "(`datasets[].type: completion` trains every token)",
             "diffusion", "diffusion_lm", "diffusion_decision"),
    **_group("quantized training beyond bitsandbytes 4/8-bit and `qat` (GPTQ, FP8, NVFP4, "
             "llm-compressor, post-training `quantization`) is not supported; ft quantizes "
             "the frozen base with bitsandbytes (`load_in_4bit`, `load_in_8bit`)",
             "gptq", "quantization", "fp8", "fp8_enable_fsdp_float8_all_gather",
             "llmcompressor",
             "nvfp4_merge_aware", "nvfp4_merge_aware_start_step", "use_onebitllms",
             "gemma4_fp8_nonexpert", "gemma4_nf4_nonexpert", "dsv4_fp8_nonexpert_mode",
             "dsv4_fp4_grouped_mode", "dsv4_fp8_lora_kernel", "dsv4_bf16_all"),
    **_group("Axolotl's ScatterMoE kernel path for 4-bit experts (`moe_bnb_fast`) and its "
             "per-model non-expert quantization policy (`nonexpert_quantization`) are not "
             "supported; ft stores the experts 4-bit with `quantize_moe_experts` and the "
             "other layers as `load_in_4bit` says", "moe_bnb_fast", "nonexpert_quantization"),
    # A size of 1 asks for nothing (MATCHES_FT): only a real split is refused.
    **_group("tensor parallelism (each layer's weight matrices split across GPUs, every GPU "
             "computing its slice) is not supported; the nearest ft has is FSDP2 "
             f"({_SHARDING_HINT}), which splits the weights too but runs each layer whole",
             "tensor_parallel_size"),
    **_group("context parallelism (one long sequence split across GPUs, ring attention) is "
             "not supported; the nearest ft has is FSDP2 "
             f"({_SHARDING_HINT}) with `gradient_checkpointing`, which fits longer "
             "sequences on each GPU", "context_parallel_size", "sequence_parallel_degree",
             "ring_attn_func", "heads_k_stride"),
    **_group("expert parallelism (each GPU holding some of a MoE layer's experts, tokens "
             "routed between GPUs) is not supported; the nearest ft has is FSDP2 "
             f"({_SHARDING_HINT}), which shards the experts with the rest of the model",
             "expert_parallel_size", "expert_parallel_backend",
             "expert_parallel_fallback_on_unsupported", "expert_parallel_num_nvl_bytes",
             "expert_parallel_num_rdma_bytes", "expert_parallel_token_capacity"),
    **_group("Ray Train is not supported; ft launches through its own backends (`ft launch "
             "--help` lists them)",
             "use_ray", "ray_num_workers", "ray_run_name", "resources_per_worker"),
    **_group("ReLoRA (LoRA merged into the weights and restarted every N steps) is not "
             "supported; ft trains one LoRA for the whole run (`adapter: lora`)",
             "relora", "relora_cpu_offload", "relora_prune_method",
             "relora_prune_ratio", "jagged_restart_steps", "jagged_restart_warmup_steps",
             "jagged_restart_anneal_steps"),
    **_group("LISA layer sampling (training a few random layers at a time) is not "
             "supported; the nearest is LoRA on every layer (`lora_target_linear: true`)",
             "lisa_n_layers", "lisa_step_interval",
             "lisa_layers_attribute"),
    **_group("Q-GaLore / GaLore optimizers (full fine-tuning with low-rank projected "
             "gradients) are not supported; the nearest memory savers are LoRA "
             "(`adapter: lora`) and 8-bit Adam (`optimizer: adamw_bnb_8bit`)",
             "qgalore_cos_threshold",
             "qgalore_gamma_proj", "qgalore_proj_bits", "qgalore_proj_group_size",
             "qgalore_proj_quant", "qgalore_proj_type", "qgalore_queue_size", "qgalore_rank",
             "qgalore_scale", "qgalore_update_proj_gap", "optim_target_modules"),
    **_group("the Dion optimizer (orthonormalised low-rank updates) is not supported; ft "
             "takes any transformers optimizer by name (`optimizer`)", "dion_lr", "dion_momentum",
             "dion_rank_fraction", "dion_rank_multiple_of"),
    **_group("the CAME optimizer's extra betas are not supported; ft's optimizers take "
             "`adam_beta1`, `adam_beta2` and `adam_epsilon`", "adam_beta3",
             "adam_epsilon2"),
    **_group("LoRA+ and embedding learning rates are not supported; `lr_groups` sets a "
             "learning rate per group of modules", "loraplus_lr_ratio", "loraplus_lr_embedding",
             "embedding_lr", "embedding_lr_scale"),
    **_group("Grokfast gradient filtering (amplifying the slow part of the gradients) is "
             "not supported; ft applies the plain gradients, clipped at `max_grad_norm`",
             "grokfast_alpha",
             "grokfast_lamb"),
    **_group("MoRA adapters (one high-rank square matrix instead of two low-rank ones) are "
             "not supported; the nearest is LoRA with a larger `lora_r`, or DoRA "
             "(`peft_use_dora`)", "mora"),
    **_group("Spectrum layer selection (training only the layers with the best "
             "signal-to-noise ratio) is not supported; the nearest is LoRA on the modules you "
             "name (`lora_target_modules`)", "spectrum_model_name",
             "spectrum_top_fraction"),
    **_group("LoRA variants beyond `lora_*`, `peft_use_dora` and `peft_use_rslora` are not "
             "supported; choose the layers with `lora_target_modules` or `lora_target_linear`",
             "peft", "peft_init_lora_weights", "peft_layers_to_transform",
             "peft_layers_pattern", "peft_layer_replication", "peft_trainable_token_indices",
             "lora_alpha_pattern", "lora_rank_pattern",
             "lora_fan_in_fan_out", "lora_on_cpu", "peft_ensure_weight_tying",
             "peft_autocast_adapter_dtype"),
    **_group("starting from an existing adapter (`lora_model_dir`) is not supported; merge it "
             "into the base model first (`ft merge-lora`) and train from that",
             "lora_model_dir"),
    **_group("extra from_pretrained arguments (`model_kwargs`) are not supported; settings "
             "of the model's config go under `model_config`",
             "overrides_of_model_kwargs", "model_kwargs"),
    **_group("a top-level `rope_scaling` (Axolotl dropped it too) is not supported; set it "
             "under `model_config:`", "rope_scaling"),
    **_group("a custom config class (`cls_model_config`) is not supported; ft reads the "
             "class from config.json (override its values under `model_config`)",
             "cls_model_config"),
    **_group("`bnb_config_kwargs` entries other than `bnb_4bit_quant_type` and "
             "`bnb_4bit_use_double_quant` (read as those keys) are not supported; set the "
             "4-bit base with `load_in_4bit`", "bnb_config_kwargs"),
    **_group("renaming tokens (`added_tokens_overrides`) is not supported; use `tokens` to "
             "add new ones", "added_tokens_overrides"),
    **_group("embedding surgery (fix_untrained_tokens, shrink_embeddings, "
             "mean_resizing_embeddings) is not supported; new tokens (`tokens`) get "
             "transformers' default initialisation",
             "fix_untrained_tokens", "shrink_embeddings",
             "mean_resizing_embeddings"),
    **_group("attention variants other than flash_attention / sdp_attention / "
             "flex_attention / eager are not supported; choose one with "
             "`attn_implementation`",
             "xformers_attention", "s2_attention", "sage_attention", "flash_optimum",
             "scaling_softmax", "scaling_softmax_bias", "scaling_softmax_factor",
             "large_head_attention", "flash_attn_d512", "use_pose", "pose_max_context_len",
             "pose_num_chunks", "pose_split_on_token_ids"),
    **_group("loss variants (EAFT, DFT, Liger token scaling: each token's loss reweighted) "
             "are not supported; ft trains plain cross entropy (also through "
             "`liger_fused_linear_cross_entropy` or `cut_cross_entropy`)", "use_eaft",
             "eaft_alpha", "eaft_k", "liger_use_token_scaling", "use_dft"),
    **_group("NEFTune noisy embeddings (noise added to the input embeddings while training) "
             "are not supported; ft's regularisers are `lora_dropout` and `weight_decay`",
             "neftune_noise_alpha",
             "noisy_embedding_alpha"),
    **_group("inductor flags (`torch_compile_options`), regional compilation and "
             "DeepSpeed's DeepCompile are not supported; `torch_compile`, "
             "`torch_compile_backend` and `torch_compile_mode` are",
             "torch_compile_options", "deepcompile"),
    **_group("layer offloading (decoder weights parked in CPU memory between their forward "
             "and backward) is not supported; `activation_offloading: true` moves the "
             "activations instead, `fsdp_config.offload_params` the sharded weights",
             "layer_offloading"),
    **_group("tiled MLP and selective / dynamic checkpointing are not supported; ft's "
             "`gradient_checkpointing: auto` sizes recompute to the GPU's memory",
             "tiled_mlp", "tiled_mlp_num_shards", "tiled_mlp_use_original_mlp",
             "selective_checkpointing", "dynamic_checkpoint"),
    **_group("`auto_find_batch_size` is not supported; set `micro_batch_size`",
             "auto_find_batch_size"),
    **_group("`batch_size` is not supported; set `micro_batch_size` and "
             "`gradient_accumulation_steps` (their product per GPU)", "batch_size"),
    **_group("pushing prepared data to the hub is not supported; ft caches it in "
             "`dataset_prepared_path`", "push_dataset_to_hub", "num_dataset_shards_to_save"),
    **_group("`role_boundaries` (custom masking spans) is not supported; use "
             "`datasets[].roles_to_train` and `train_on_eos`", "role_boundaries"),
    **_group("`min_sample_len` / `max_prompt_len` filtering is not supported; ft drops rows "
             "longer than `sequence_len`",
             "min_sample_len", "max_prompt_len"),
    **_group("a custom trainer class (your own Trainer subclass) is not supported; ft's "
             "trainer is set by the spec's keys (`ft schema` lists them)", "trainer_cls"),
    **_group("pushing to a hub revision (`hub_revision`) is not supported; ft pushes to "
             "the default branch of `hub_model_id`", "hub_revision"),
    # Keys new in Axolotl 0.21.
    **_group("MixLoRA (a mixture of LoRA experts behind a router) is not supported; ft trains "
             "one LoRA per targeted layer (`adapter: lora`)", "mixlora_num_experts",
             "mixlora_top_k", "mixlora_router_aux_loss_coef", "mixlora_router_init_range",
             "mixlora_jitter_noise", "mixlora_expert_lora_r", "mixlora_expert_lora_alpha",
             "mixlora_expert_lora_dropout"),
    **_group("context parallelism (`context_parallel`: each sequence split across GPUs) is "
             "not supported; ft shards the model with FSDP (`fsdp_config`) and fits long "
             "sequences with `gradient_checkpointing`", "context_parallel"),
    **_group("expert-parallel dispatch tuning is not supported; ft shards experts with the "
             "rest of the model (`fsdp_config`)", "expert_parallel_dispatch_chunks",
             "expert_parallel_save_dispatch"),
    **_group("FP8 mixed precision (`fp8_config`: matmuls in 8-bit floats) is not supported; "
             "ft trains in bf16 mixed precision (`bf16`)", "fp8_config"),
    **_group("regional torch.compile (each decoder block compiled on its own) is not "
             "supported; `torch_compile: true` compiles the whole model",
             "torch_compile_regional"),
    **_group("label balancing (`balance_labels`: the same number of supervised tokens in "
             "every batch) is not supported; the nearest is packing rows into full "
             "sequences (`sample_packing`)", "balance_labels",
             "label_balance_window_optim_steps"),
    **_group("fully deterministic kernels (`full_determinism`) are not supported; ft seeds "
             "every random generator from `seed`", "full_determinism"),
    **_group("FP32 LoRA gradients on a bf16 model (`lora_fp32_gradients`) are not "
             "supported; for full fp32 training set `bf16: false`", "lora_fp32_gradients"),
    **_group("torchao's NF4 weights (`nf4_backend: torchao`) are not supported; ft's 4-bit "
             "base is bitsandbytes NF4 (`load_in_4bit`)", "nf4_backend"),
    **_group("keeping per-layer embeddings on the CPU (`ple_cpu_offload`, Gemma-3n) is not "
             "supported; the nearest is FSDP's parameter offload (`fsdp_config`: "
             "`offload_params: true`)", "ple_cpu_offload"),
}

# Axolotl plugin class -> the key whose answer (REFUSED or WARNED) the plugin gets: a plugin
# brings those keys, so naming it asks for that feature. Liger and cut-cross-entropy are
# implemented (trainer/torch_free/training.py KNOWN_PLUGINS).
PLUGIN_ANSWERS: dict[str, str] = {
    "KernelsPlugin": "use_kernels", "SwanLabPlugin": "use_swanlab",
    "LMEvalPlugin": "lm_eval_tasks", "DenseMixerPlugin": "dense_mixer",
    "HatcheryPlugin": "hatchery", "ExpertParallelPlugin": "expert_parallel_size",
    "DiffusionPlugin": "diffusion", "KDPlugin": "kd_alpha",
    "SpectrumPlugin": "spectrum_model_name", "LLMCompressorPlugin": "llmcompressor",
    "GrokfastPlugin": "grokfast_alpha", "MoraPlugin": "mora", "NemoGymPlugin": "nemo_gym_enabled",
    "ContextParallelPlugin": "context_parallel", "CoreWeavePlugin": "coreweave",
    "NebiusCompletionPlugin": "coreweave", "DiffusionDecisionPlugin": "diffusion_decision",
    "FlaSm120ShimPlugin": "use_kernels", "MixLoraPlugin": "mixlora_num_experts",
}

# Values that ask for exactly what ft does anyway: accepted without a warning.
MATCHES_FT: dict[str, tuple[Any, ...]] = {
    "excess_length_strategy": ("drop",),
    "remove_unused_columns": (False,),
    "ddp_find_unused_parameters": (False,),
    "dataloader_drop_last": (False,),
    "save_only_model": (False,),
    "include_tokens_per_second": (True,),
    "low_cpu_mem_usage": (True,),
    "save_safetensors": (True,),
    "strict": (False,),
    "nf4_backend": ("bitsandbytes",),
    "label_balance_window_optim_steps": (1,),
    # Parallel sizes of 1 split nothing: Axolotl's own examples carry them.
    **dict.fromkeys(("tensor_parallel_size", "context_parallel_size",
                     "sequence_parallel_degree", "expert_parallel_size"), (1,)),
}


def matches_ft(key: str, value: Any) -> bool:
    """The value asks for what ft does anyway (`true` is not a size of 1, nor 0 `false`)."""
    return any(type(value) is type(wanted) and value == wanted
               for wanted in MATCHES_FT.get(key, ()))


def asks_for_nothing(value: Any) -> bool:
    """Axolotl's templates list keys with an empty value; that value requests nothing."""
    return value is None or value is False or value in ("", [], {})


# The same three answers for keys inside one `datasets:` / `test_datasets:` entry.
DATASET_REFUSED: dict[str, str] = {
    **_group("sharegpt-era fields are not supported; use `field_messages` with "
             "`message_property_mappings`", "field_human", "field_model", "conversation"),
    **_group("custom input transforms are not supported; map your columns with "
             "`message_property_mappings`", "input_transform", "input_format"),
    **_group("`shards_idx` is not supported; `shards` takes the first 1/shards of the data",
             "shards_idx"),
    **_group("tool definitions (`field_tools`) are not supported; ft renders the turns in "
             "`field_messages` only", "field_tools"),
    **dict.fromkeys(("logprobs_field", "temperature"), REFUSED["kd_alpha"]),
    # Axolotl's stepwise-supervised (process reward model) dataset schema.
    **dict.fromkeys(("step_separator", "max_completion_length", "train_on_last_step_only"),
                    REFUSED["process_reward_model"]),
    **_group("sampling weights for dataset mixing (`weight`: a random fraction of the "
             "dataset) are not supported; `shards` takes a fixed fraction (1/shards)",
             "weight"),
    # Axolotl's synthetic (random token) dataset schema, a benchmarking aid.
    **_group("synthetic random-token datasets (`path: synthetic`) are not supported; point "
             "`path` at a data file or a hub dataset", "length", "sequence_length",
             "min_input_id", "max_input_id", "seed", "min_turns", "max_turns",
             "min_turn_length", "input_fraction"),
    # Preference-pair columns (Axolotl's DPO/KTO dataset schema).
    **dict.fromkeys(("field_chosen", "field_rejected"), REFUSED["rl"]),
}
