"""The `axolotl` tool of run_bench.py: Axolotl 0.21.0 trained on ft's rows, under the probe.

Axolotl's `AxolotlTrainer` is a `transformers.Trainer` (it passes `callbacks=` by keyword
and its `training_step` calls the Trainer's), so bench/probe.py measures it exactly as it
measures ft and the baseline: `python probe.py OUT.json -m axolotl.cli.train CONFIG`, the
same CUDA-synchronised step timer, wall clock, peak allocation and per-step loss (the loss
each `training_step` returns, so every step is compared, whatever Axolotl logs). Useful
tokens of its packed rows (position_ids, no attention_mask) are the tokens before each
row's right padding.

The config written here trains the case's model directory and data file (the same file
ft reads: the baseline's fixed rows, or the first `--rows` of its `--write-data` stream),
at ft's micro-batch size and sequence length, with the optimizer and schedule of ft's spec
(adamw_torch, lr 2e-4 linear, no warmup, seed 0, bf16 on a GPU), no evaluation and no
checkpoints.
Modifiers (tool_names.MODIFIERS["axolotl"]), each one Axolotl key:
  liger    its Liger plugin: rope, RMSNorm, GLU and fused linear cross-entropy (the best
           configuration the round-3 kit found, with no recompute);
  ckpt     gradient_checkpointing true (non-reentrant); without it, Axolotl's default off;
  nolorak  lora_{mlp,qkv,o,embedding}_kernel false: its Triton LoRA kernels, which it
           otherwise auto-enables for LoRA/QLoRA, off (needed on a CPU).
Everything else is Axolotl's default: attention `sdpa` (on CUDA with bf16 and packing it
auto-enables its torch varlen path), two dataloader workers as the kit ran it.

Installed from carried wheels into its own directory (`--axolotl-site`, default
/tmp/axsite) so ft's and the baseline's processes never see them:

    python3 bench/device_setup.py --wheels .axwhl --target /tmp/axsite

bench/axolotl_shims/ stands in for numba, PIL and wandb, which Axolotl imports at module load
but text LoRA never uses; each goes on the run's path only when the real one is absent.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "axolotl_shims"

LIGER_KEYS = {"liger_rope": True, "liger_rms_norm": True, "liger_glu_activation": True,
              "liger_fused_linear_cross_entropy": True}
LORA_KERNEL_KEYS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel",
                    "lora_embedding_kernel")


def axolotl_config(*, mode: str, packed: bool, model_dir: str, data_path: str, out_dir: Path,
                   prepared_dir: Path, seq: int, mbs: int, steps: int, mods: set[str],
                   bf16: bool = True) -> dict:
    """Axolotl's YAML (as a dict) for one case: the same rows, geometry and optimizer as
    ft's spec of that case (run_bench.Bench.write_spec)."""
    config = {
        "base_model": model_dir,
        "tokenizer_type": "PreTrainedTokenizerFast",
        "model_type": "LlamaForCausalLM",
        # no `type`: pre-tokenized rows (input_ids, attention_mask, labels), used as they are
        "datasets": [{"path": data_path, "ds_type": "json", "split": "train"}],
        "dataset_prepared_path": str(prepared_dir),
        "val_set_size": 0,
        "output_dir": str(out_dir),
        "sequence_len": seq,
        "sample_packing": packed,
        "pad_to_sequence_len": True,
        # full rows are written in the baseline's sampling order (model_prep.py) and ft reads
        # them in file order; so does Axolotl here (no dataset shuffle, a sequential sampler),
        # so step k of all three trains the same rows and the per-step losses compare
        **({} if packed else {"curriculum_sampling": True}),
        "adapter": mode,
        **({"load_in_4bit": True,
            "bnb_config_kwargs": {"bnb_4bit_quant_type": "nf4",
                                  "bnb_4bit_use_double_quant": True}}
           if mode == "qlora" else {}),
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target_linear": True,
        "micro_batch_size": mbs,
        "gradient_accumulation_steps": 1,
        "max_steps": steps,
        "num_epochs": 1,
        "optimizer": "adamw_torch", "learning_rate": 2e-4, "lr_scheduler": "linear",
        "warmup_steps": 0,
        "attn_implementation": "sdpa",
        # as ft's spec on a GPU; fp32 on a CPU (the smoke test: transformers refuses bf16
        # there without use_cpu)
        "bf16": bf16, "fp16": False, "tf32": False,
        "gradient_checkpointing": "ckpt" in mods,
        **({"gradient_checkpointing_kwargs": {"use_reentrant": False}}
           if "ckpt" in mods else {}),
        "logging_steps": 1,
        "save_strategy": "no",
        "dataloader_num_workers": 2,
        "seed": 0,
        "use_wandb": False,
    }
    if "liger" in mods:
        config["plugins"] = ["axolotl.integrations.liger.LigerPlugin"]
        config.update(LIGER_KEYS)
    if "nolorak" in mods:
        config.update(dict.fromkeys(LORA_KERNEL_KEYS, False))
    return config


def kernels(mods: set[str], lines: list[str]) -> dict:
    """What the run used: the plugin the tool set, the LoRA kernels Axolotl enabled (it logs
    when it auto-enables them), and the share of layers recomputed in backward."""
    auto = any("Auto-enabling LoRA kernel" in x for x in lines)
    parts = (["LigerPlugin (rope, rms_norm, glu, fused_linear_cross_entropy)"]
             if "liger" in mods else []) + (["lora_mlp/qkv/o_kernel"] if auto else [])
    return {"kernels": ", ".join(parts) or "none",
            "recomputed_share": 1.0 if "ckpt" in mods else 0.0}


def missing(site: str) -> str | None:
    """Why Axolotl cannot run from `site`, or None."""
    if (Path(site) / "axolotl").is_dir() or importlib.util.find_spec("axolotl"):
        return None
    return (f"axolotl is not installed in {site}: run `python3 bench/device_setup.py "
            f"--wheels .axwhl --target {site}` first (.axwhl: the carried wheels)")


def shims(work: Path) -> Path:
    """A folder with the stand-ins for the modules this machine lacks (only those)."""
    folder = work / "axolotl-shims"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for module in ("numba", "PIL", "wandb"):
        if importlib.util.find_spec(module) is None:
            shutil.copytree(SHIMS / module, folder / module)
    return folder


def environment(env: dict, site: str, work: Path) -> dict:
    """The Axolotl process's environment: its site and the shims after the machine's own
    paths (a carried newer package in /tmp/site still wins), offline, no telemetry."""
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(env, PYTHONPATH=os.pathsep.join([*paths, site, str(shims(work))]),
                AXOLOTL_DO_NOT_TRACK="1", DO_NOT_TRACK="1", WANDB_DISABLED="true",
                WANDB_MODE="disabled", HF_DATASETS_CACHE=str(work / "axolotl-hf-datasets"))
