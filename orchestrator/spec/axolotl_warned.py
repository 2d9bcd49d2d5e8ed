"""Axolotl keys ft accepts with one warning: settings that do not change what ft trains, or
that ft does its own way. The value is accepted and the user hears once what ft does
instead (orchestrator/spec/axolotl_keys.py holds the aliases and the refusals).
"""

from __future__ import annotations

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
                     "moe_grouped_backend", "moe_dequant_chunk_size",
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
    # Keys new in Axolotl 0.21.
    **dict.fromkeys(("autotune_cache_path", "autotune_neighborhood", "autotune_profiles",
                     "liger_kernel_impl", "fa_varlen_kwargs_in_collator"), _FT_KERNELS),
    **dict.fromkeys(("cut_cross_entropy_accum_c_fp32", "cut_cross_entropy_c_grad_chunk_size"),
                    "ft runs cut-cross-entropy with its default settings; this tuning knob "
                    "is ignored"),
    **dict.fromkeys(("sync_profiler_start_step", "sync_profiler_steps"), _NO_EFFECT),
    "coreweave": ("ft launches through its own backends (`ft launch --help` lists them); this "
                  "cloud launcher's settings are ignored"),
    "export": "ft has no GGUF export (`axolotl export`); convert the saved model; ignored",
    "eval_on_start": ("ft evaluates at `eval_steps` / `evals_per_epoch`, not before the first "
                      "step; ignored"),
}

DATASET_WARNED: dict[str, str] = {
    "preprocess_shards": "ft tokenizes in one pass (`dataset_processes` workers); ignored",
    "trust_remote_code": ("ft loads datasets without remote code; the top-level "
                          "`trust_remote_code` is for the model; ignored"),
}
