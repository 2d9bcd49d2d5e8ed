"""What ft does with each key Axolotl's schema knows but TrainingConfig has no field for.

Three answers, never silence:
- an alias: Axolotl's other spelling of a key ft has (renamed before validation);
- refused: a feature ft does not have; the message names it (a set value is an error);
- warned: a setting that does not change what ft trains, or that ft does its own way; the
  value is accepted and the user hears once what ft does instead.
An empty value (`key:`), `false`, `[]` or `{}` asks for nothing, as in Axolotl, so it is
dropped without a word. tests/fixtures/axolotl/schema_keys.txt lists Axolotl's keys and
tests/test_axolotl_keys.py proves each one is a TrainingConfig field or has an answer here.
"""

from __future__ import annotations

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


def _group(feature: str, *keys: str) -> dict[str, str]:
    return dict.fromkeys(keys, feature)


# key -> "<feature> is not supported" sentence, shown when the key is set.
REFUSED: dict[str, str] = {
    **_group("multimodal is not supported (ft trains text-only causal LMs)",
             "processor_type", "processor_kwargs", "image_size", "image_resize_algorithm",
             "freeze_mm_modules"),
    **_group("RL / preference training (DPO, IPO, ORPO, KTO, SimPO, GRPO) is not supported; "
             "ft does supervised fine-tuning",
             "rl", "rl_beta", "trl", "vllm", "dpo_beta", "dpo_generate_during_eval",
             "dpo_label_smoothing", "dpo_loss_type", "dpo_loss_weights", "dpo_norm_loss",
             "dpo_padding_free", "dpo_use_liger_kernel", "dpo_use_logits_to_keep",
             "dpo_use_weighting", "orpo_alpha", "cpo_alpha", "simpo_gamma", "rpo_alpha",
             "kto_desirable_weight", "kto_undesirable_weight", "precompute_ref_log_probs",
             "ebft", "nemo_gym_auto_clone", "nemo_gym_auto_start", "nemo_gym_config_paths",
             "nemo_gym_datasets", "nemo_gym_dir", "nemo_gym_enabled", "nemo_gym_head_port",
             "nemo_gym_max_turns", "nemo_gym_model_name", "nemo_gym_multi_turn",
             "nemo_gym_run_timeout", "nemo_gym_server_timeout", "nemo_gym_verify_timeout"),
    **_group("reward models are not supported",
             "reward_model", "process_reward_model", "center_rewards_coefficient",
             "num_labels"),
    **_group("knowledge distillation is not supported",
             "kd_alpha", "kd_beta", "kd_ce_alpha", "kd_normalize_topk", "kd_online_server",
             "kd_online_server_base_url", "kd_online_timeout", "kd_online_topk",
             "kd_temperature", "kd_temperature_min", "kd_trainer"),
    **_group("diffusion language model training is not supported", "diffusion"),
    **_group("quantized training beyond bitsandbytes 4/8-bit and `qat` (GPTQ, FP8, NVFP4, "
             "llm-compressor, post-training `quantization`) is not supported",
             "gptq", "quantization", "fp8", "fp8_enable_fsdp_float8_all_gather",
             "llmcompressor", "model_quantization_config", "model_quantization_config_kwargs",
             "nvfp4_merge_aware", "nvfp4_merge_aware_start_step", "use_onebitllms",
             "quantize_moe_experts", "nonexpert_quantization", "moe_bnb_fast",
             "gemma4_fp8_nonexpert", "gemma4_nf4_nonexpert", "dsv4_fp8_nonexpert_mode",
             "dsv4_fp4_grouped_mode", "dsv4_fp8_lora_kernel", "dsv4_bf16_all"),
    **_group("tensor / context / sequence / expert parallelism is not supported; ft shards "
             "with FSDP (`fsdp_config`) or DeepSpeed ZeRO (`deepspeed`)",
             "tensor_parallel_size", "context_parallel_size", "sequence_parallel_degree",
             "ring_attn_func", "heads_k_stride", "dp_replicate_size", "dp_shard_size",
             "expert_parallel_size", "expert_parallel_backend",
             "expert_parallel_fallback_on_unsupported", "expert_parallel_num_nvl_bytes",
             "expert_parallel_num_rdma_bytes", "expert_parallel_token_capacity"),
    **_group("Ray Train is not supported; ft launches through its own backends (`ft launch "
             "--help` lists them)",
             "use_ray", "ray_num_workers", "ray_run_name", "resources_per_worker"),
    **_group("ReLoRA is not supported", "relora", "relora_cpu_offload", "relora_prune_method",
             "relora_prune_ratio", "jagged_restart_steps", "jagged_restart_warmup_steps",
             "jagged_restart_anneal_steps"),
    **_group("LISA layer sampling is not supported", "lisa_n_layers", "lisa_step_interval",
             "lisa_layers_attribute"),
    **_group("Q-GaLore / GaLore optimizers are not supported", "qgalore_cos_threshold",
             "qgalore_gamma_proj", "qgalore_proj_bits", "qgalore_proj_group_size",
             "qgalore_proj_quant", "qgalore_proj_type", "qgalore_queue_size", "qgalore_rank",
             "qgalore_scale", "qgalore_update_proj_gap", "optim_target_modules"),
    **_group("the Dion optimizer is not supported", "dion_lr", "dion_momentum",
             "dion_rank_fraction", "dion_rank_multiple_of"),
    **_group("the CAME optimizer's extra betas are not supported", "adam_beta3",
             "adam_epsilon2"),
    **_group("per-group learning rates (LoRA+, embedding LR, lr_groups) are not supported",
             "loraplus_lr_ratio", "loraplus_lr_embedding", "embedding_lr",
             "embedding_lr_scale", "lr_groups"),
    **_group("learning-rate schedule variants beyond `lr_scheduler`, `lr_scheduler_kwargs` "
             "and `cosine_min_lr_ratio` are not supported",
             "lr_quadratic_warmup", "lr_div_factor", "cosine_constant_lr_ratio"),
    **_group("Grokfast gradient filtering is not supported", "grokfast_alpha",
             "grokfast_lamb"),
    **_group("MoRA adapters are not supported", "mora"),
    **_group("Spectrum layer selection is not supported", "spectrum_model_name",
             "spectrum_top_fraction"),
    **_group("LoRA variants beyond `lora_*`, `peft_use_dora` and `peft_use_rslora` are not "
             "supported", "peft", "peft_init_lora_weights", "peft_layers_to_transform",
             "peft_layers_pattern", "peft_layer_replication", "peft_trainable_token_indices",
             "lora_alpha_pattern", "lora_rank_pattern", "lora_target_parameters",
             "lora_fan_in_fan_out", "lora_on_cpu", "peft_ensure_weight_tying",
             "peft_autocast_adapter_dtype"),
    **_group("starting from an existing adapter (`lora_model_dir`) is not supported; merge it "
             "into the base model first", "lora_model_dir"),
    **_group("extra from_pretrained arguments (`model_kwargs`) are not supported; settings "
             "of the model's config go under `model_config`",
             "overrides_of_model_kwargs", "model_kwargs"),
    **_group("a top-level `rope_scaling` is not supported (Axolotl dropped it too); set it "
             "under `model_config:`", "rope_scaling"),
    **_group("a custom config class (`cls_model_config`) is not supported; ft reads the "
             "class from config.json (override its values under `model_config`)",
             "cls_model_config"),
    **_group("`bnb_config_kwargs` is not supported; use `bnb_4bit_quant_type` and "
             "`bnb_4bit_use_double_quant`", "bnb_config_kwargs"),
    **_group("renaming tokens (`added_tokens_overrides`) is not supported; use `tokens` to "
             "add new ones", "added_tokens_overrides"),
    **_group("embedding surgery (fix_untrained_tokens, shrink_embeddings, "
             "mean_resizing_embeddings) is not supported",
             "fix_untrained_tokens", "shrink_embeddings",
             "mean_resizing_embeddings"),
    **_group("attention variants other than flash_attention / sdp_attention / "
             "flex_attention / eager are not supported",
             "xformers_attention", "s2_attention", "sage_attention", "flash_optimum",
             "scaling_softmax", "scaling_softmax_bias", "scaling_softmax_factor",
             "large_head_attention", "flash_attn_d512", "use_pose", "pose_max_context_len",
             "pose_num_chunks", "pose_split_on_token_ids"),
    **_group("loss variants (EAFT, Liger token scaling) are not supported", "use_eaft",
             "eaft_alpha", "eaft_k", "liger_use_token_scaling"),
    **_group("NEFTune noisy embeddings are not supported", "neftune_noise_alpha",
             "noisy_embedding_alpha"),
    **_group("inductor flags (`torch_compile_options`), regional compilation and "
             "DeepSpeed's DeepCompile are not supported; `torch_compile`, "
             "`torch_compile_backend` and `torch_compile_mode` are",
             "torch_compile_options", "torch_compile_regional", "deepcompile"),
    **_group("layer offloading (decoder weights parked in CPU memory between their forward "
             "and backward) is not supported; `activation_offloading: true` moves the "
             "activations instead, `fsdp_config.offload_params` the sharded weights",
             "layer_offloading"),
    **_group("tiled MLP and selective / dynamic checkpointing are not supported; ft's "
             "`gradient_checkpointing: auto` sizes recompute to the GPU's memory",
             "tiled_mlp", "tiled_mlp_num_shards", "tiled_mlp_use_original_mlp",
             "selective_checkpointing", "dynamic_checkpoint"),
    **_group("picking the best checkpoint / early stopping is not supported",
             "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
             "early_stopping_patience"),
    **_group("`auto_find_batch_size` is not supported; set `micro_batch_size`",
             "auto_find_batch_size"),
    **_group("`batch_size` is not supported; set `micro_batch_size` and "
             "`gradient_accumulation_steps` (their product per GPU)", "batch_size"),
    **_group("dataset sharding across runs, deduplication and pushing data to the hub are "
             "not supported; `datasets[].shards` takes a fraction of one dataset",
             "dataset_shard_num", "dataset_shard_idx", "dataset_exact_deduplication",
             "push_dataset_to_hub", "num_dataset_shards_to_save"),
    **_group("curriculum (unshuffled) sampling is not supported", "curriculum_sampling"),
    **_group("`role_boundaries` (custom masking spans) is not supported; use "
             "`datasets[].roles_to_train` and `train_on_eos`", "role_boundaries"),
    **_group("`min_sample_len` / `max_prompt_len` filtering is not supported",
             "min_sample_len", "max_prompt_len"),
    **_group("the Mistral tokenizer library (`tokenizer_use_mistral_common`) is not "
             "supported; use the model's Hugging Face tokenizer", "tokenizer_use_mistral_common"),
    **_group("a custom trainer class is not supported", "trainer_cls"),
    **_group("pushing to a hub revision (`hub_revision`) is not supported; ft pushes to "
             "the default branch of `hub_model_id`", "hub_revision"),
}

_NO_EFFECT = "it has no effect in ft"
_FT_KERNELS = ("ft picks its kernels itself (liger_*, cut_cross_entropy, lora_*_kernel, "
               "the attention keys); this one is ignored")
_LOGGER = ("ft reports to W&B (`wandb_project`), MLflow (`mlflow_tracking_uri`) and "
           "TensorBoard (`use_tensorboard`) only; this logger is not used")
_EXTRA_EVAL = "ft's evaluation is the eval loss; this extra evaluation is not run"
_PACKING = "ft packs with its own bin packing (`sample_packing`); this tuning knob is ignored"
_LAUNCHER = "the launcher sets it (ft node / torchrun); the spec's value is ignored"
_DDP = ("ft sets DDP itself (no unused parameters, buffers broadcast, default buckets); "
        "the spec's value is ignored")

# key -> what ft does instead. Shown once when the key is set.
WARNED: dict[str, str] = {
    **dict.fromkeys(("strict", "is_preprocess", "axolotl_config_path"), _NO_EFFECT),
    **dict.fromkeys(("is_llama_derived_model", "is_mistral_derived_model",
                     "is_falcon_derived_model", "is_qwen_derived_model"),
                    "ft reads the model type from the model's config.json; this is ignored"),
    **dict.fromkeys(("use_comet", "comet_api_key", "comet_workspace", "comet_project_name",
                     "comet_experiment_key", "comet_mode", "comet_online",
                     "comet_experiment_config", "use_swanlab", "swanlab_api_host",
                     "swanlab_api_key", "swanlab_completion_log_interval",
                     "swanlab_completion_max_buffer", "swanlab_description",
                     "swanlab_experiment_name", "swanlab_lark_secret",
                     "swanlab_lark_webhook_url", "swanlab_log_completions",
                     "swanlab_log_model", "swanlab_mode", "swanlab_project",
                     "swanlab_web_host", "swanlab_workspace", "use_trackio",
                     "trackio_project_name", "trackio_run_name", "trackio_space_id",
                     "use_otel_metrics", "otel_metrics_host", "otel_metrics_port",
                     "mlflow_run_name", "hf_mlflow_log_artifacts", "wandb_watch",
                     "wandb_log_model"), _LOGGER),
    "model_config_type": ("Axolotl fills it from config.json; ft reads the model type "
                          "from config.json too; ignored"),
    "flex_attn_compile_kwargs": ("transformers compiles flex attention itself (Axolotl "
                                 "applies these only on torch 2.6); ignored"),
    "use_wandb": "ft reports to W&B whenever `wandb_project` is set; `use_wandb` is ignored",
    "use_mlflow": ("ft reports to MLflow whenever `mlflow_tracking_uri` is set; "
                   "`use_mlflow` is ignored"),
    **dict.fromkeys(("gradio_max_new_tokens", "gradio_server_name", "gradio_server_port",
                     "gradio_share", "gradio_temperature", "gradio_title"),
                    "ft has no Gradio UI (`ft inference` answers prompts); ignored"),
    **dict.fromkeys(("do_bench_eval", "bench_dataset", "bench_split", "do_causal_lm_eval",
                     "eval_causal_lm_metrics", "eval_table_size", "eval_max_new_tokens",
                     "generate_samples", "generation_do_sample", "generation_max_new_tokens",
                     "generation_prompt_ratio", "generation_temperature", "generation_top_k",
                     "generation_top_p", "num_generation_samples", "lm_eval_batch_size",
                     "lm_eval_model", "lm_eval_post_train", "lm_eval_tasks",
                     "eval_sequence_len"), _EXTRA_EVAL),
    **dict.fromkeys(("use_kernels", "fused_attn_kernel", "lora_embedding_kernel",
                     "liger_rms_norm_gated", "use_scattermoe", "use_sonicmoe",
                     "moe_grouped_backend", "moe_dequant_chunk_size", "experts_implementation",
                     "expert_backend", "llama4_linearized_experts", "use_dsv4_kernels",
                     "dsv4_shared_mlp_lora_kernel", "gemma4_hybrid_attn_impl",
                     "use_glm_dsa_kernels", "dense_mixer", "hatchery", "sdpa_varlen",
                     "chunked_cross_entropy", "chunked_cross_entropy_num_chunks",
                     "fp32_norms", "fp32_norm_classes", "embeddings_skip_upcast",
                     "batch_flattening", "flash_attn_cross_entropy", "flash_attn_rms_norm",
                     "flash_attn_fuse_mlp"), _FT_KERNELS),
    **dict.fromkeys(("sample_packing_bin_size", "sample_packing_group_size",
                     "sample_packing_mp_start_method", "sample_packing_sequentially",
                     "sample_packing_eff_est", "multipack_real_batches",
                     "max_packed_sequence_len", "total_num_tokens", "total_supervised_tokens",
                     "pad_to_multiple_of"), _PACKING),
    **dict.fromkeys(("world_size", "local_rank", "device", "ddp"), _LAUNCHER),
    **dict.fromkeys(("ddp_broadcast_buffers", "ddp_bucket_cap_mb",
                     "ddp_find_unused_parameters"), _DDP),
    **dict.fromkeys(("device_map", "max_memory", "gpu_memory_limit", "low_cpu_mem_usage",
                     "experimental_skip_move_to_device", "torchdistx_path",
                     "qlora_sharded_model_loading"),
                    "ft places and loads the model itself (one GPU per rank, rank-local "
                    "low-memory loading); ignored"),
    **dict.fromkeys(("gc_steps", "gc_collect_steps", "torch_empty_cache_steps",
                     "profiler_steps", "profiler_steps_start", "loss_watchdog_threshold",
                     "loss_watchdog_patience", "accelerator_config"), _NO_EFFECT),
    "remove_unused_columns": ("ft's rows carry only model inputs, so no columns are "
                              "removed; ignored"),
    "dataloader_drop_last": "ft keeps the last partial batch; ignored",
    "hf_use_auth_token": ("ft reads the hub token from HF_TOKEN (list it in "
                          "`launch.secrets`); ignored"),
    "save_only_model": ("ft's checkpoints always hold the optimizer state so they can resume; "
                        "ignored"),
    "fsdp_final_state_dict_type": ("ft writes the final model whole (safetensors) and "
                                   "checkpoints sharded; ignored"),
    "merge_lora": "run `ft merge-lora spec.yaml` after training; ignored",
    "merge_method": "run `ft merge-lora spec.yaml` after training; ignored",
    "skip_prepare_dataset": ("ft tokenizes before training (cached in "
                             "`dataset_prepared_path`); ignored"),
    "dataset_keep_in_memory": "ft memory-maps tokenized data from its cache; ignored",
    "shuffle_before_merging_datasets": ("ft shuffles the merged rows every epoch; ignored"),
    "shuffle_merged_datasets": "ft shuffles the merged rows every epoch; ignored",
    "excess_length_strategy": ("ft drops rows longer than `sequence_len` (Axolotl's "
                               "default); ignored"),
    "tokenizer_save_jinja_files": "ft saves the tokenizer as transformers does; ignored",
    "include_tokens_per_second": "ft logs tokens per second always; ignored",
    "include_tkps": "ft logs tokens per second always; ignored",
    "bfloat16": ("ft trains in mixed precision chosen by `bf16` / `fp16`; pure bf16 weights "
                 "are not used"),
    "float16": ("ft trains in mixed precision chosen by `bf16` / `fp16`; pure fp16 weights "
                "are not used"),
    **dict.fromkeys(("streaming", "preprocess_iterable"),
                    "ft tokenizes data before training (cached), it does not stream it; "
                    "ignored"),
    **dict.fromkeys(("streaming_multipack_buffer_size", "pretrain_multipack_attn",
                     "pretrain_multipack_buffer_size", "pretraining_sample_concatenation"),
                    _PACKING),
    "group_by_length": "ft samples rows in random order, not grouped by length; ignored",
    "save_safetensors": "ft always saves safetensors; ignored",
    "float32": "ft trains in mixed precision chosen by `bf16` / `fp16`; ignored",
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
}

# Values that ask for exactly what ft does anyway: accepted without a warning.
MATCHES_FT: dict[str, tuple[Any, ...]] = {
    "shuffle_merged_datasets": (True,),
    "shuffle_before_merging_datasets": (False,),
    "excess_length_strategy": ("drop",),
    "remove_unused_columns": (False,),
    "ddp_find_unused_parameters": (False,),
    "dataloader_drop_last": (False,),
    "save_only_model": (False,),
    "include_tokens_per_second": (True,),
    "low_cpu_mem_usage": (True,),
    "save_safetensors": (True,),
    "strict": (False,),
}


def asks_for_nothing(value: Any) -> bool:
    """Axolotl's templates list keys with an empty value; that value requests nothing."""
    return value is None or value is False or value in ("", [], {})


# The same three answers for keys inside one `datasets:` / `test_datasets:` entry.
DATASET_REFUSED: dict[str, str] = {
    **_group("sharegpt-era fields are not supported; use `field_messages` with "
             "`message_property_mappings`", "field_human", "field_model", "conversation"),
    **_group("custom input transforms are not supported", "input_transform", "input_format"),
    **_group("`shards_idx` is not supported; `shards` takes the first 1/shards of the data",
             "shards_idx"),
    **_group("tool definitions (`field_tools`) are not supported", "field_tools"),
    **_group("reasoning/thinking splits are not supported", "field_thinking",
             "template_thinking_key", "split_thinking"),
    **_group("per-message training flags are not supported; use `roles_to_train`",
             "message_field_training", "message_field_training_detail"),
    **_group("knowledge distillation is not supported", "logprobs_field", "temperature"),
    # Preference-pair columns (Axolotl's DPO/KTO dataset schema).
    **dict.fromkeys(("field_chosen", "field_rejected"), REFUSED["rl"]),
}
DATASET_WARNED: dict[str, str] = {
    "preprocess_shards": "ft tokenizes in one pass (`dataset_processes` workers); ignored",
    "trust_remote_code": ("ft loads datasets without remote code; the top-level "
                          "`trust_remote_code` is for the model; ignored"),
}
