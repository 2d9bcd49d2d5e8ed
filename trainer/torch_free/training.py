"""The training half of the spec: Axolotl-compatible top-level keys.

Importable without torch: the orchestrator validates specs on machines that have no GPU
stack. Every field's description is its help text and feeds `ft schema`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainer.torch_free.attention_names import HubKernel
from trainer.torch_free.lr_schedule_choice import KNOWN_SCHEDULERS
from trainer.torch_free.qat_spec import QatSpec

# Axolotl keys without a field here (aliases, refused features, warned no-ops) are answered
# in orchestrator/spec/axolotl_keys.py before these models see the spec.

# Axolotl plugins whose keys ft implements itself (trainer/kernels/plan.py); any other plugin is
# code ft does not have, so naming it is an error.
LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"
CCE_PLUGIN = "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"
KNOWN_PLUGINS = (LIGER_PLUGIN, CCE_PLUGIN)


LIGER_KEYS = ("liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_layer_norm",
              "liger_fused_linear_cross_entropy", "liger_cross_entropy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DatasetSpec(_Strict):
    """One training data source, in Axolotl's `datasets:` format."""

    path: str = Field(description="Local file or directory (json, jsonl, parquet, csv) or a "
                      "dataset name on the Hugging Face hub.")
    type: str | None = Field(None, description="Prompt format: alpaca, chat_template, "
                             "completion, input_output, or omit for pre-tokenized rows.")
    name: str | None = Field(None, description="Dataset configuration name (HF datasets).")
    split: str = Field("train", description="Split to read.")
    data_files: str | list[str] | None = Field(None, description="Files inside `path`.")
    ds_type: Literal["json", "jsonl", "parquet", "csv", "arrow", "text"] | None = Field(
        None, description="File format when the extension does not say it.")
    revision: str | None = Field(None, description="Hub revision of the dataset.")
    field: str | None = Field(None, description="Text column for `type: completion`.")
    field_messages: str = Field("messages", description="Column holding the chat messages.")
    message_property_mappings: dict[str, str] | None = Field(
        None, description="Map of message keys, e.g. {role: from, content: value}.")
    field_thinking: str | None = Field(
        None, description="Message key holding the reasoning text (default: "
        "reasoning_content); trained with its assistant turn where the template writes it.")
    template_thinking_key: str | None = Field(
        None, description="Name the chat template reads the reasoning text as, e.g. "
        "reasoning_content or thinking (default: reasoning_content).")
    split_thinking: bool | None = Field(
        None, description="Cut a `<think>...</think>` block out of each assistant answer into "
        "the reasoning key (`template_thinking_key`).")
    message_field_training: str | None = Field(
        None, description="Message key whose true/false says whether that turn trains "
        "(overrides `roles_to_train` for that message).")
    message_field_training_detail: str | None = Field(
        None, description="Message key with a list of {begin_offset, end_offset, train}: "
        "the characters of the content to train (offsets inclusive).")
    message_field_role: str | None = Field(None, description="Legacy: the role key of a message.")
    message_field_content: str | None = Field(
        None, description="Legacy: the content key of a message.")
    roles: dict[str, list[str]] | None = Field(
        None, description="Dataset role names per template role, e.g. {user: [human]}.")
    roles_to_train: list[str] | None = Field(
        None, description="Roles whose tokens are trained (default: assistant).")
    train_on_eos: Literal["turn", "last", "all", "none"] | None = Field(
        None, description="Which EOS tokens are trained: turn (default: after each trained "
        "turn), last, all or none.")
    chat_template: str | None = Field(None, description="Per-dataset chat template override.")
    chat_template_jinja: str | None = Field(
        None, description="Per-dataset jinja source for `chat_template: jinja`.")
    train_on_eot: Literal["turn", "last", "all", "none"] | None = Field(
        None, description="Which end-of-turn tokens (`eot_tokens`, `<|im_end|>`, ...) are "
        "trained; default: as `train_on_eos`.")
    drop_system_message: bool | None = Field(None, description="Drop system turns.")
    train_on_inputs: bool | None = Field(None, description="Per-dataset override.")
    shards: int | None = Field(None, ge=1, description="Use 1/shards of the data.")


class LrGroup(_Strict):
    """One of Axolotl's `lr_groups`: parameters of these modules train at this LR."""

    name: str = Field(description="A label for the group (logs).")
    modules: list[str] = Field(min_length=1, description="Parameter-name parts, e.g. "
                               "[q_proj, v_proj]; a parameter joins the first group matching.")
    lr: float = Field(gt=0, description="The group's peak learning rate.")


class FsdpConfig(_Strict):
    """Axolotl's `fsdp_config:`. Keys may be written with or without the `fsdp_` prefix."""

    fsdp_version: Literal[1, 2] = Field(2, description="ft always shards with FSDP2; "
                                        "1 is accepted and run as FSDP2 with a warning.")
    transformer_layer_cls_to_wrap: str | list[str] | None = Field(
        None, description="Decoder layer class(es) to shard; default: detected from the model.")
    auto_wrap_policy: Literal["TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP"] | None = None
    offload_params: bool = Field(False, description="Keep sharded params on the CPU.")
    cpu_ram_efficient_loading: bool = Field(
        False, description="Rank 0 loads weights and broadcasts (one host copy per node).")
    state_dict_type: Literal["FULL_STATE_DICT", "SHARDED_STATE_DICT"] = "FULL_STATE_DICT"
    sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD",
                               "NO_SHARD"] = "FULL_SHARD"
    reshard_after_forward: bool = Field(True, description="Free gathered params after forward.")
    activation_checkpointing: bool = False
    replicate_frozen_params: Literal["auto"] | bool = Field(
        "auto", description="ft's own key. Keep what does not train (an adapter's frozen "
        "base) whole on every GPU instead of sharding it, so no step all-gathers it; only "
        "the trainable weights are sharded. auto: when the memory estimate says it costs "
        "no extra recomputed layers (GPU only; a CPU run shards).")
    # Accepted with a warning (orchestrator/spec/rules.py): ft's FSDP2 plan decides these.
    cpu_offload_pin_memory: bool | None = None
    final_state_dict_type: str | None = None
    min_num_params: int | None = None
    mixed_precision_policy: str | None = None
    # FSDP1-era switches Axolotl configs carry; FSDP2 has no equivalent, so they change nothing.
    sync_module_states: bool | None = None
    use_orig_params: bool | None = None
    limit_all_gathers: bool | None = None
    backward_prefetch: str | None = None
    forward_prefetch: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _strip_prefix(cls, data: Any) -> Any:
        """Accept `fsdp_offload_params` and `offload_params` alike (Axolotl uses both)."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            short = key[5:] if key.startswith("fsdp_") and key != "fsdp_version" else key
            short = "fsdp_version" if short == "version" else short
            if short in out:
                raise ValueError(f"`{key}` is given twice (with and without the fsdp_ prefix)")
            out[short] = value
        return out


class SpecialTokens(_Strict):
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None


class TrainingConfig(_Strict):
    """Axolotl-compatible training keys (top level of the spec)."""

    # model
    base_model: str = Field(description="Hub id or local directory of the model to fine-tune.")
    base_model_config: str | None = Field(None, description="Config source, if not base_model.")
    overrides_of_model_config: dict[str, Any] | None = Field(
        None, description="Axolotl's `model_config`: values set on the model's config before "
        "the weights load (e.g. {output_router_logits: true}); a key the config does not "
        "have is an error (trainer/models/config_overrides.py).")
    reinit_weights: bool | None = Field(
        None, description="Build the model from its config with random weights instead of "
        "loading the pretrained ones (pretraining from scratch).")
    model_type: str | None = Field(None, description="transformers class, e.g. "
                                   "LlamaForCausalLM (default: AutoModelForCausalLM).")
    tokenizer_type: str | None = Field(None, description="e.g. AutoTokenizer.")
    tokenizer_config: str | None = Field(None, description="Tokenizer source, if not base_model.")
    trust_remote_code: bool = False
    revision_of_model: str | None = Field(None, description="Hub branch, tag or commit of "
                                          "base_model (and of its tokenizer).")
    tokenizer_use_fast: bool | None = Field(None, description="false: the slow tokenizer.")
    tokenizer_legacy: bool | None = Field(None, description="The tokenizer's `legacy` flag.")
    tokenizer_use_mistral_common: bool | None = Field(
        None, description="Tokenize and render chats with Mistral's own `mistral-common` "
        "library (tekken.json / tokenizer.model.v* in the model directory), as Mistral's "
        "Magistral, Ministral, Devstral models expect; its chat encoding is the template, so "
        "`chat_template` must stay unset. docs/training.md")
    resize_token_embeddings_to_32x: bool | None = Field(
        None, description="Pad the embedding matrix to a multiple of 32 rows.")
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    model_quantization_config: Literal["Mxfp4Config", "FineGrainedFP8Config"] | None = Field(
        None, description="How a pre-quantized checkpoint is read. `Mxfp4Config` with "
        "`model_quantization_config_kwargs: {dequantize: true}`: gpt-oss's MXFP4 experts are "
        "dequantized to bf16 while loading, then trained like any weights. "
        "docs/training.md")
    model_quantization_config_kwargs: dict[str, Any] | None = Field(
        None, description="Arguments of `model_quantization_config` (Mxfp4Config: "
        "`dequantize`, `modules_to_not_convert`).")
    quantize_moe_experts: bool = Field(
        False, description="QLoRA on a mixture-of-experts model: also store the routed "
        "experts' fused weights bitsandbytes 4-bit (as `bnb_4bit_quant_type`).")
    experts_implementation: Literal["eager", "grouped_mm", "batched_mm"] | None = Field(
        None, description="transformers' kernel for a MoE model's experts; default: the "
        "model's (grouped_mm where it runs).")
    qat: QatSpec | None = Field(None, description="Quantization-aware training: torchao fake "
                                "quantization of the linear layers (trainer/models/qat.py).")
    attn_implementation: Literal["flash_attention_2", "sdpa", "flex_attention", "eager"] \
        | HubKernel | None = Field(None, description="Attention kernel, or a hub kernel "
                                  "`org/repo` (loaded where it can; else the best installed, "
                                  "with a warning); default: the best one installed.")
    flash_attention: bool | None = Field(None, description="Axolotl spelling of "
                                         "attn_implementation: flash_attention_2.")
    sdp_attention: bool | None = None
    flex_attention: bool | None = None
    eager_attention: bool | None = None
    special_tokens: SpecialTokens | None = None
    tokens: list[str] | None = Field(None, description="New tokens to add (embeddings resized).")
    chat_template: str | None = Field(None, description="tokenizer_default, chatml, llama3, "
                                      "... or an inline jinja template.")
    chat_template_jinja: str | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="Extra variables for the chat template (e.g. enable_thinking).")
    eot_tokens: list[str] | None = Field(
        None, description="Tokens that end a turn (trained per `train_on_eot`); default: "
        "EOS alone.")
    default_system_message: str | None = None
    # adapter
    adapter: Literal["lora", "qlora"] | None = Field(None, description="Omit for a full "
                                                     "fine-tune.")
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | str | None = None
    lora_target_linear: bool | None = Field(None, description="Target every linear layer.")
    lora_target_parameters: list[str] | str | None = Field(
        None, description="LoRA on parameters, not layers: a MoE model's fused expert "
        "weights, e.g. mlp.experts.gate_up_proj and mlp.experts.down_proj.")
    lora_modules_to_save: list[str] | None = None
    peft_use_dora: bool = False
    peft_use_rslora: bool = False
    unfrozen_parameters: list[str] | None = Field(
        None, description="Regexes of the parameter names that train; every other one is "
        "frozen. Axolotl's syntax: matched from the start of the name, `.` is a literal dot, "
        "a trailing [start:end] trains only those rows. With an adapter, it picks which "
        "adapter weights train (trainer/models/unfrozen.py).")
    # data
    datasets: list[DatasetSpec] = Field(min_length=1)
    test_datasets: list[DatasetSpec] | None = None
    dataset_prepared_path: str | None = Field(None, description="Tokenized-data cache dir.")
    dataset_exact_deduplication: bool | None = Field(
        None, description="Drop rows whose tokens and labels repeat an earlier row's, before "
        "the val split (so no eval row is also a train row); test_datasets on their own.")
    shuffle_merged_datasets: bool = Field(
        True, description="Shuffle the rows of all datasets together (with `seed`).")
    shuffle_before_merging_datasets: bool = Field(
        False, description="Shuffle each dataset's rows on its own before merging.")
    curriculum_sampling: bool | None = Field(
        None, description="Train on rows in dataset order: no shuffle of a single dataset, "
        "sequential sampling and packing in order.")
    dataset_shard_num: int | None = Field(
        None, ge=1, description="With `dataset_shard_idx`: train on one of this many "
        "interleaved shards of the merged rows.")
    dataset_shard_idx: int | None = Field(None, ge=0, description="Which shard (from 0).")
    val_set_size: float = Field(0.0, ge=0.0, lt=1.0)
    dataset_processes: int | None = Field(None, ge=1)
    sequence_len: int = Field(2048, ge=8)
    sample_packing: bool = False
    eval_sample_packing: bool | None = None
    pad_to_sequence_len: bool | None = None
    train_on_inputs: bool = False
    # optimisation
    micro_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    num_epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    optimizer: str = Field("adamw_torch_fused", description="A transformers `optim` name "
                           "(trainer/torch_free/optimizers.py lists those ft trains; the "
                           "torchao ones, adamw_torch_4bit / adamw_torch_8bit, included).")
    lr_scheduler: str = Field("cosine", description="A transformers scheduler name, or "
                              "Axolotl's `one_cycle` (torch's OneCycleLR).")
    lr_scheduler_kwargs: dict[str, Any] | None = None
    cosine_min_lr_ratio: float | None = Field(
        None, ge=0, le=1, description="`lr_scheduler: cosine` decays to this share of "
        "`learning_rate` instead of 0.")
    cosine_constant_lr_ratio: float | None = Field(
        None, ge=0, le=1, description="With `cosine_min_lr_ratio`: the cosine reaches the "
        "minimum LR at this share of the steps, which then holds it to the end.")
    lr_quadratic_warmup: bool | None = Field(
        None, description="`lr_scheduler: cosine` warms up as (step / warmup)^2, then decays "
        "to 0.")
    lr_groups: list[LrGroup] | None = Field(
        None, description="Per-module learning rates (decayed weights only, not embeddings "
        "or the output head); the schedule scales each from its own LR.")
    lr_div_factor: float | None = Field(
        None, gt=0, description="`lr_scheduler: one_cycle` starts at learning_rate / this "
        "(default 25).")
    learning_rate: float = Field(2e-4, gt=0)
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    adam_epsilon: float | None = None
    optim_args: dict[str, Any] | str | None = None
    seed: int = 42
    bf16: bool | Literal["auto"] | None = "auto"
    fp16: bool | None = None
    tf32: bool | None = None
    gradient_checkpointing: bool | Literal["unsloth", "offload", "auto"] = Field(
        "auto", description="Recompute activations in backward. auto (default): only as many "
        "decoder layers as the GPU's memory needs (none when they all fit); true: every layer; "
        "offload: `activation_offloading: true`; unsloth: every layer, its input kept in CPU "
        "memory (`activation_offloading: hidden_states`).")
    gradient_checkpointing_kwargs: dict[str, Any] | None = None
    activation_offloading: bool | Literal["legacy", "hidden_states", "disk"] | None = Field(
        None, description="Keep saved activations in CPU memory between forward and backward "
        "(trainer/loop/activation_offload.py). true/legacy: with an adapter nothing is "
        "recomputed and every saved activation is offloaded; a full fine-tune recomputes each "
        "decoder layer and offloads the layer inputs. hidden_states: recompute every layer "
        "and offload its input, adapter or not. `gradient_checkpointing: offload` is true.")
    torch_compile: bool | Literal["auto"] | None = Field(
        None, description="Compile the model with torch.compile (the Trainer's "
        "torch_compile). auto: true.")
    torch_compile_backend: str | None = Field(None, description="torch.compile backend "
                                              "(default: inductor).")
    torch_compile_mode: Literal["default", "reduce-overhead", "max-autotune"] | None = None
    # distributed
    fsdp: list[str] | str | None = Field(None, description="e.g. [full_shard, auto_wrap].")
    fsdp_config: FsdpConfig | None = None
    dp_shard_size: int | None = Field(
        None, ge=1, description="FSDP: GPUs each weight is sharded over (default: all). Less "
        "than the GPU count is HSDP: e.g. the GPUs of one node, so only gradient all-reduces "
        "cross nodes; the remaining factor replicates (dp_replicate_size).")
    dp_replicate_size: int | None = Field(
        None, ge=1, description="FSDP: copies of each shard group (HSDP; default: GPU count / "
        "dp_shard_size). dp_shard_size x dp_replicate_size must equal the GPU count.")
    deepspeed: str | None = Field(None, description="Path to a DeepSpeed ZeRO JSON config.")
    ddp_timeout: int | None = Field(None, ge=1, description="Collective timeout, seconds.")
    # evaluation, saving, logging
    evals_per_epoch: int | None = Field(None, ge=0)
    eval_steps: int | float | None = None
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(
        None, description="Default: steps from eval_steps / evals_per_epoch, else no eval.")
    eval_batch_size: int | None = Field(None, ge=1, description="Default: micro_batch_size.")
    saves_per_epoch: int | None = Field(None, ge=0)
    save_steps: int | float | None = None
    save_strategy: Literal["no", "steps", "epoch", "best"] | None = Field(
        None, description="Default: steps from save_steps / saves_per_epoch, else no "
        "checkpoints. best: a checkpoint whenever `metric_for_best_model` improves.")
    metric_for_best_model: str | None = Field(
        None, description="Eval metric that picks the best checkpoint, e.g. eval_loss.")
    greater_is_better: bool | None = Field(
        None, description="Whether a larger `metric_for_best_model` is better (default: "
        "false for a loss, true otherwise).")
    load_best_model_at_end: bool | None = Field(
        None, description="Load the best checkpoint at the end and save it as the model "
        "(on by default with `early_stopping_patience`).")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations in a row without "
        "improving `metric_for_best_model` (default eval_loss).")
    save_total_limit: int | None = Field(None, ge=1)
    save_first_step: bool = False
    logging_steps: int = Field(1, ge=1)
    logging_nan_inf_filter: bool = Field(
        False, description="transformers' filter that logs a NaN/inf loss as the running "
        "average. Off in ft (Axolotl: on): a diverged run shows NaN in its log instead of the "
        "last good average, and the check's host sync after every micro-batch is gone.")
    output_dir: str = "./outputs"
    resume_from_checkpoint: str | None = Field(None, description="A checkpoint dir or `auto`.")
    auto_resume_from_checkpoints: bool | None = None
    hub_model_id: str | None = None
    hub_strategy: str | None = None
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_name: str | None = None
    wandb_run_id: str | None = None
    wandb_mode: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_name: str | None = None
    use_tensorboard: bool | None = None
    dataloader_num_workers: int | None = Field(None, ge=0)
    dataloader_pin_memory: bool | None = None
    dataloader_prefetch_factor: int | None = None
    # fused kernels (trainer/kernels/plan.py). None = ft decides: on where liger-kernel is
    # installed, a GPU trains and Liger supports the model type (the maths is unchanged).
    plugins: list[str] | None = Field(None, description="Axolotl plugins; ft implements "
                                      f"{', '.join(KNOWN_PLUGINS)} itself.")
    liger_kernel: bool | None = Field(None, description="false: no Liger kernel at all; "
                                      "true: every Liger kernel the model type has.")
    liger_rope: bool | None = Field(None, description="Liger's fused rotary embedding.")
    liger_rms_norm: bool | None = Field(None, description="Liger's RMSNorm kernel.")
    liger_glu_activation: bool | None = Field(None, description="Liger's SwiGLU/GeGLU MLP.")
    liger_layer_norm: bool | None = Field(None, description="Liger's LayerNorm kernel.")
    liger_fused_linear_cross_entropy: bool | None = Field(
        None, description="lm_head + cross-entropy in chunks: the [tokens x vocab] logits are "
        "never stored (the largest activation of a 128k-vocabulary model).")
    liger_cross_entropy: bool | None = Field(None, description="Liger's cross-entropy on "
                                             "materialised logits.")
    cut_cross_entropy: bool | None = Field(None, description="Apple's cut-cross-entropy "
                                           "(CutCrossEntropyPlugin): logits never stored.")
    lora_mlp_kernel: bool | None = Field(None, description="Lean LoRA forward on "
                                         "gate/up/down_proj (default: on a GPU, plain LoRA).")
    lora_qkv_kernel: bool | None = Field(None, description="The same on q/k/v_proj.")
    lora_o_kernel: bool | None = Field(None, description="The same on o_proj.")

    @field_validator("plugins")
    @classmethod
    def _known_plugins(cls, plugins: list[str] | None) -> list[str] | None:
        unknown = [p for p in plugins or [] if p not in KNOWN_PLUGINS]
        if unknown:
            raise ValueError(f"ft does not have {', '.join(unknown)}; the plugins it "
                             f"implements are {', '.join(KNOWN_PLUGINS)}")
        return plugins

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, name: str) -> str:
        if name not in KNOWN_SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; ft knows "
                             f"{', '.join(KNOWN_SCHEDULERS)}")
        return name

    @field_validator("eval_strategy", "save_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare `no` as false; `save_strategy: no` means the word."""
        return "no" if value is False else value

    @property
    def requested_attention(self) -> str | None:
        """The attention kernel the spec asks for, Axolotl's boolean spellings included: the
        one answer validation, model loading and the collator all use."""
        if self.attn_implementation:
            return self.attn_implementation
        for flag, name in ((self.flash_attention, "flash_attention_2"),
                           (self.flex_attention, "flex_attention"),
                           (self.sdp_attention, "sdpa"), (self.eager_attention, "eager")):
            if flag:
                return name
        return None

    @property
    def uses_fsdp(self) -> bool:
        return bool(self.fsdp) or self.fsdp_config is not None
