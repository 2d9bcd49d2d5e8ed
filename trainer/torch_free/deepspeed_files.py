"""`deepspeed:` in the spec: which ZeRO JSON, what it asks for, and whether ft can run it.

Shipped configs live in trainer/deepspeed_configs/ (zero1, zero2, zero3, zero3_offload,
zero3_offload_params); `ft fetch deepspeed-configs` copies them out for editing, as Axolotl
users are used to. The spec may name one (`deepspeed: zero2`) or give a path to any JSON.
Axolotl's own paths (`deepspeed_configs/zero3_bf16.json`, ...) name ft's equivalent unless
that file exists: a user who fetched and edited Axolotl's copy keeps it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from trainer.torch_free.errors import UserError

# The JSONs ship as package data of trainer.deepspeed_configs (one level up).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "deepspeed_configs"


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.json"))


# Axolotl's shipped deepspeed_configs/ -> ft's config doing the same. ft's configs take bf16
# from the spec ("auto"), so Axolotl's *_bf16 variants are the plain ones.
AXOLOTL_NAMES = {
    "zero1": "zero1", "zero2": "zero2", "zero3": "zero3", "zero3_bf16": "zero3",
    "zero3_bf16_cpuoffload_all": "zero3_offload",
    "zero3_bf16_cpuoffload_params": "zero3_offload_params",
}
# Axolotl configs ft has no equivalent for, with the reason.
AXOLOTL_REFUSED = {
    "zero1_torch_compile": ("DeepSpeed's own compile (its `compile` block) is not supported; "
                            "use deepspeed_configs/zero1.json with `torch_compile: true`"),
    "zero2_torch_compile": ("DeepSpeed's own compile (its `compile` block) is not supported; "
                            "use deepspeed_configs/zero2.json with `torch_compile: true`"),
}
AXOLOTL_DIR = "deepspeed_configs/"


def resolve(value: str, base_dir: Path | None = None) -> Path:
    """A shipped config by name (`zero2`, `zero2.json`), an Axolotl shipped path
    (`deepspeed_configs/zero2.json`) unless that file exists, else a path (relative to
    base_dir)."""
    stem = value[:-5] if value.endswith(".json") else value
    if "/" not in value and stem in shipped_names():
        return SHIPPED_DIR / f"{stem}.json"
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    axolotl = _axolotl_stem(value)
    if axolotl in AXOLOTL_NAMES and not path.exists():
        return SHIPPED_DIR / f"{AXOLOTL_NAMES[axolotl]}.json"
    return path


def is_shipped(value: str) -> bool:
    """Whether `deepspeed: value` names one of ft's own configs (nothing to ship with a job:
    every node has them), by name or by an Axolotl path with no file behind it here."""
    return resolve(value).parent == SHIPPED_DIR


def _axolotl_stem(value: str) -> str | None:
    tail = value.removeprefix("./").removeprefix("axolotl/")
    if tail.startswith(AXOLOTL_DIR) and tail.endswith(".json"):
        return tail[len(AXOLOTL_DIR):-5]
    return None


def axolotl_refusal(value: str) -> str | None:
    """Why an Axolotl shipped config ft has no equivalent for is refused (None otherwise)."""
    stem = _axolotl_stem(value)
    return AXOLOTL_REFUSED.get(stem) if stem else None


def zero_stage(path: Path) -> int:
    """The `zero_optimization.stage` of a config (0 when absent), with a clear error for a
    missing or malformed file."""
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"`deepspeed`: {path} does not exist; name a shipped config "
                        f"({', '.join(shipped_names())}) or run `ft fetch deepspeed-configs`"
                        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"`deepspeed`: cannot read {path}: {exc}") from None
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise UserError(f"`deepspeed`: {path}: zero_optimization.stage must be 0-3, not "
                        f"{stage!r}")
    return stage


def quantized_zero3_problem(stage: int, load_in_4bit: bool, load_in_8bit: bool) -> str | None:
    """ZeRO-3 with bitsandbytes weights trains, but its checkpoints cannot be saved
    (bitsandbytes' state-dict conversion asserts on the partitioned weights; seen with
    DeepSpeed 0.19.8 and bitsandbytes 0.50.2), so ft refuses it up front."""
    if stage == 3 and (load_in_4bit or load_in_8bit):
        return ("ZeRO-3 with 4/8-bit weights is not supported (its checkpoints of "
                "bitsandbytes weights fail to save); for sharded QLoRA use FSDP "
                "(`fsdp: [full_shard]` with `fsdp_config`), or ZeRO-2 (`deepspeed: zero2`), "
                "which shards optimizer state and gradients only")
    return None


def fetch(destination: Path) -> list[Path]:
    """Copy the shipped configs into `destination`; existing files are left alone."""
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(SHIPPED_DIR.glob("*.json")):
        target = destination / source.name
        if target.exists():
            continue
        shutil.copyfile(source, target)
        written.append(target)
    return written
