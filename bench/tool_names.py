"""What a `--tools` name means: the tool (ft, the baseline or Axolotl), its attention kernel,
its GPUs (`ft@NxG`) and the one lever each `+modifier` switches.
"""

from __future__ import annotations

import multi_gpu

# Tool modifiers (`ft+liger+nockpt`, `baseline+liger`): each a switch of one lever.
#   ft: no modifier = ft's defaults (kernels and checkpointing chosen by ft);
#       ckpt / nockpt = gradient_checkpointing true / false (default: auto);
#       liger / noliger = liger_kernel true / false (default: Liger where installed);
#       cce = cut_cross_entropy: true; nolorak = lora_*_kernel false (peft's own LoRA
#       forward); compile = torch_compile: true. `ft:ATTN` also sets attn_implementation.
#       `ft@NxG`: N emulated nodes of G GPUs (`ft launch --backend local`), FSDP2 unless
#       `+ddp` (transformers' DDP); `+keep` keeps each layer's gathered weights from
#       forward to backward (reshard_after_forward false: one all-gather per layer and
#       step instead of two); `+shard` shards the frozen base too (replicate_frozen_params
#       false; default auto trains with DDP when the model fits each GPU); `+fsdp` keeps
#       FSDP2 with the base whole on each GPU (replicate_frozen_params true); `+iso` isolates the
#       nodes (own netns: NCCL over veth).
#   baseline: liger = --liger 1 (transformers' use_liger_kernel); nockpt = --grad-ckpt 0.
#   axolotl (Axolotl 0.21, bench/axolotl_tool.py; no modifier = its defaults, which include
#       its Triton LoRA kernels and no recompute): liger = its LigerPlugin; ckpt =
#       gradient_checkpointing true; nolorak = its lora_*_kernel false.
MODIFIERS = {"ft": {"ckpt", "nockpt", "liger", "noliger", "cce", "nolorak", "compile", "ddp",
                    "keep", "shard", "fsdp", "iso"},
             "baseline": {"liger", "nockpt"},
             "axolotl": {"liger", "ckpt", "nolorak"}}


def parse_tool(tool: str) -> tuple[str, str | None, set[str]]:
    """'ft:flex_attention@1x2+liger' -> ('ft', 'flex_attention', {'liger'})."""
    name, *mods = tool.split("+")
    base, _, attn = name.split("@")[0].partition(":")
    unknown = set(mods) - MODIFIERS.get(base, set())
    if base not in MODIFIERS or unknown:
        raise SystemExit(f"unknown tool {tool!r} (modifiers {sorted(unknown)})")
    if base != "ft" and (attn or "@" in name):
        raise SystemExit(f"tool {tool!r}: only ft takes :ATTN or @NxG")
    return base, attn or None, set(mods)


def tool_topology(tool: str) -> tuple[int, int] | None:
    """'ft@2x1+ddp' -> (2, 1); None for a single-process tool."""
    name = tool.split("+")[0]
    return multi_gpu.topology(name.split("@")[1]) if "@" in name else None


def single_gpu_tool(tool: str) -> str:
    """The one-GPU run a multi-GPU tool scales from: 'ft@1x2+ddp+ckpt' -> 'ft+ckpt'."""
    name, *mods = tool.split("+")
    return "+".join([name.split("@")[0], *(m for m in mods if m not in multi_gpu.MODIFIERS)])


def ft_lever_keys(mods: set[str]) -> dict:
    """The spec keys a tool's modifiers set; absent keys leave ft's defaults."""
    keys: dict = {}
    if "ckpt" in mods or "nockpt" in mods:
        keys["gradient_checkpointing"] = "ckpt" in mods
    if "liger" in mods or "noliger" in mods:
        keys["liger_kernel"] = "liger" in mods
    if "cce" in mods:
        keys["cut_cross_entropy"] = True
    if "compile" in mods:
        keys["torch_compile"] = True
    if "nolorak" in mods or "noliger" in mods:  # noliger: the plain path, peft's LoRA too
        keys.update(lora_mlp_kernel=False, lora_qkv_kernel=False, lora_o_kernel=False)
    return keys
