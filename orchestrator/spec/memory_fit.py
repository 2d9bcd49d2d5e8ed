"""Memory before queueing: `ft validate` and `ft launch` print the estimated peak per GPU
against the GPU the spec asks for (`launch.gpu`), and refuse a spec that cannot fit before
it waits in any queue. The arithmetic is the trainer's own (trainer/torch_free/
memory_estimate.py); the model's shape comes from orchestrator/spec/model_shapes.py.

Kernels: ft turns Liger's fused loss and RMSNorm on where liger-kernel is installed in the
image, which this machine cannot see. The printed estimate assumes the plain ops unless the
spec asks for Liger or cut-cross-entropy; a spec is refused only when it cannot fit even with
every kernel ft may pick and as many layers recomputed as its `gradient_checkpointing` lets
the trainer recompute, so what is refused here would also run out of memory there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from orchestrator.spec.load import Spec
from orchestrator.spec.memory_fixes import fixes
from orchestrator.spec.model_shapes import find_shape
from trainer.torch_free.activation_offloading import offload_mode
from trainer.torch_free.deepspeed_files import resolve as resolve_deepspeed
from trainer.torch_free.dp_mesh import shard_group_size
from trainer.torch_free.errors import UserError
from trainer.torch_free.memory_estimate import (
    GIB,
    PROJECTIONS,
    Estimate,
    Peak,
    Setup,
    Shape,
    Static,
    budget,
    layers_to_checkpoint,
    peak,
    replication_pays,
    static_from_shape,
)
from trainer.torch_free.optimizers import transformers_name
from trainer.torch_free.training import TrainingConfig

# Nominal memory (GB as vendors write it, which is GiB of HBM) of each GPU type; the driver
# reports about 99% of it as usable (H100 80GB: 79.2 GiB, H200: 139.8).
GPU_MEMORY_GB: dict[str, tuple[int, ...]] = {
    "H100": (80,), "H200": (141,), "H800": (80,), "H20": (96,), "GH200": (96, 144),
    "B200": (180,), "B300": (288,), "A100": (40, 80), "A800": (40, 80), "A10G": (24,),
    "A10": (24,), "A40": (48,), "A6000": (48,), "RTXA6000": (48,), "L4": (24,), "L40": (48,),
    "L40S": (48,), "V100": (16, 32), "T4": (16,), "RTX4090": (24,), "RTX3090": (24,),
    "MI300X": (192,), "MI325X": (256,),
}
USABLE = 0.99


@dataclass(frozen=True)
class Gpu:
    name: str
    total_bytes: int
    note: str = ""  # how the size was chosen when the spec does not say it


def gpu_memory(launch_gpu: str | None) -> Gpu | None:
    """`H100`, `A100:40GB`, `H200:141GB` -> its usable bytes; None: unknown or unreadable
    (a malformed `launch.gpu` is reported by the backends' own check)."""
    if not launch_gpu:
        return None
    name, _, memory = launch_gpu.partition(":")
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(GB|TB)", memory.upper()) if memory else None
    if found:
        gb = float(found.group(1)) * (1024 if found.group(2) == "TB" else 1)
        return Gpu(launch_gpu, int(gb * GIB * USABLE))
    sizes = GPU_MEMORY_GB.get(name.upper().replace("-", "").replace("_", ""))
    if memory or not sizes:
        return None
    note = "" if len(sizes) == 1 else (
        f"; {name} comes with {' or '.join(f'{s}GB' for s in sizes)}: the larger is assumed, "
        f"write e.g. `gpu: {name}:{sizes[0]}GB` to check the smaller")
    return Gpu(f"{name}:{sizes[-1]}GB", int(sizes[-1] * GIB * USABLE), note)


def _targets(t: TrainingConfig) -> tuple[str, ...]:
    wanted = t.lora_target_modules
    if t.lora_target_linear or wanted == "all-linear":
        return PROJECTIONS
    if isinstance(wanted, str):  # peft: a regex over the module names
        return tuple(p for p in PROJECTIONS if re.search(wanted, f"layers.0.self_attn.{p}")
                     or re.search(wanted, f"layers.0.mlp.{p}"))
    return tuple(p for p in PROJECTIONS if any(w.endswith(p) for w in wanted or ()))


def _deepspeed(t: TrainingConfig) -> tuple[int, bool, bool]:
    """(ZeRO stage, optimizer state offloaded, parameters offloaded); a config that cannot
    be read here counts as stage 0 (rules.py reports it)."""
    if not t.deepspeed:
        return 0, False, False
    try:
        zero = json.loads(resolve_deepspeed(t.deepspeed).read_text()).get(
            "zero_optimization", {})
    except (OSError, ValueError, AttributeError):
        return 0, False, False
    off = [(zero.get(k) or {}).get("device", "none") not in ("none", None)
           for k in ("offload_optimizer", "offload_param")]
    return int(zero.get("stage", 0) or 0), off[0], off[1]


def setup_of(t: TrainingConfig, world: int, replicate_frozen: bool = False) -> Setup:
    stage, _, _ = _deepspeed(t)
    shards = shard_group_size(t.dp_shard_size, t.dp_replicate_size, world) if t.uses_fsdp \
        else world if stage else 1
    expert_targets = t.lora_target_parameters or ()
    return Setup(
        adapter=bool(t.adapter), lora_r=t.lora_r, lora_targets=_targets(t),
        expert_targets=(expert_targets,) if isinstance(expert_targets, str)
        else tuple(expert_targets),
        bits=4 if t.load_in_4bit else 8 if t.load_in_8bit else 16,
        double_quant=t.bnb_4bit_use_double_quant, quantize_experts=t.quantize_moe_experts,
        optimizer=transformers_name(t.optimizer), shards=shards, fsdp=t.uses_fsdp,
        replicate_frozen=replicate_frozen and t.uses_fsdp and bool(t.adapter),
        zero_stage=stage)


def _static(shape: Shape, t: TrainingConfig, world: int, replicate_frozen: bool) -> Static:
    static = static_from_shape(shape, setup_of(t, world, replicate_frozen))
    _, states_off, params_off = _deepspeed(t)
    offloaded = t.uses_fsdp and t.fsdp_config is not None and t.fsdp_config.offload_params
    if offloaded or params_off:  # the weights (and what trains with them) live in CPU memory
        return Static(0, 0, static.gathered)
    return replace(static, training=0) if states_off else static


def kernel_choices(t: TrainingConfig, optimistic: bool) -> tuple[bool, bool, bool]:
    """(fused loss, fused norm, lean LoRA forward) as trainer/kernels/plan.py picks them;
    a kernel the spec leaves to ft counts as on only when `optimistic`."""
    def liger(key: str) -> bool:
        value = getattr(t, key)
        if value is not None:
            return bool(value) and t.liger_kernel is not False
        return bool(t.liger_kernel) or (optimistic and t.liger_kernel is not False)

    fused_loss = bool(t.cut_cross_entropy) or (
        liger("liger_fused_linear_cross_entropy") and not t.liger_cross_entropy)
    plain_lora = bool(t.adapter) and t.lora_dropout == 0 and not t.peft_use_dora
    lean = plain_lora and all(getattr(t, k) is not False for k in
                              ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel"))
    return fused_loss, liger("liger_rms_norm"), lean


@dataclass(frozen=True)
class Outcome:
    peak: Peak
    static: Static
    fits: bool
    how: str  # how many layers are recomputed, and why


def evaluate(shape: Shape, t: TrainingConfig, world: int, total_bytes: int | None,
             optimistic: bool) -> Outcome:
    """`total_bytes` None: no GPU named, so `auto` shows every layer recomputed (the least
    it can need)."""
    asked = t.fsdp_config.replicate_frozen_params if t.fsdp_config else "auto"
    static = _static(shape, t, world, asked is True)
    est = Estimate(static.total, t.micro_batch_size * t.sequence_len, t.load_in_4bit,
                   *kernel_choices(t, optimistic))
    if asked == "auto" and t.uses_fsdp and t.adapter and total_bytes is not None:
        # as trainer/models/activation_memory.py's replication_fits decides it
        whole_static = _static(shape, t, world, True)
        whole = replace(est, static_bytes=whole_static.total)
        if replication_pays(shape, est, whole, total_bytes):
            static, est = whole_static, whole
    k, how = _recomputed(shape, t, est, total_bytes)
    result = peak(shape, est, k)
    return Outcome(result, static, total_bytes is None or result.total <= budget(total_bytes),
                   f"{k} of {shape.layers} layers recomputed: {how}")


def _recomputed(shape: Shape, t: TrainingConfig, est: Estimate,
                total_bytes: int | None) -> tuple[int, str]:
    """How many layers the trainer recomputes (trainer/models/activation_memory.py), and why."""
    if offload_mode(t) is not None:
        return shape.layers, "activations offloaded to CPU, counted as all recomputed"
    if t.fsdp_config and t.fsdp_config.activation_checkpointing:
        return shape.layers, "`fsdp_config.activation_checkpointing`"
    if t.gradient_checkpointing is False:
        return 0, "`gradient_checkpointing: false`"
    if t.gradient_checkpointing != "auto":
        return shape.layers, "`gradient_checkpointing: true`"
    if total_bytes is None:
        return shape.layers, "auto, the least it needs: the GPU decides"
    return layers_to_checkpoint(shape, est, total_bytes), "auto"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f}"


def _parts(o: Outcome) -> str:
    p, s = o.peak, o.static
    return (f"weights {_gib(s.weights + s.gathered)} + gradients and optimizer "
            f"{_gib(s.training)} + activations {_gib(p.activations)} ({o.how}) + logits "
            f"{_gib(p.logits)} + backward {_gib(p.transient)} GiB")


def memory_report(spec: Spec) -> list[str]:
    """The lines to print; raises UserError when the spec cannot fit its GPU."""
    lines, too_big = memory_check(spec)
    if too_big:
        raise UserError(too_big)
    return lines


def memory_check(spec: Spec) -> tuple[list[str], str | None]:
    """The lines to print, and why the spec cannot fit its GPU (None when it can, or when
    there is no GPU or shape to judge it by)."""
    t, launch = spec.training, spec.launch
    if launch.gpus_per_node == 0:
        return [], None  # a CPU run
    found = find_shape(t)
    if found.shape is None:
        return [f"memory estimate skipped: {found.source}"], None
    world = launch.nodes * launch.gpus_per_node
    gpu = gpu_memory(launch.gpu)
    total = gpu.total_bytes if gpu else None
    likely = evaluate(found.shape, t, world, total, optimistic=False)
    best = evaluate(found.shape, t, world, total, optimistic=True)
    head = f"memory per GPU (estimate): {_gib(likely.peak.total)} GiB"
    lines = [f"  {_parts(likely)}", f"  shape: {found.source}"]
    if best.peak.total < likely.peak.total:
        lines.append(f"  with Liger's kernels (ft uses them where liger-kernel is in the "
                     f"image): {_gib(best.peak.total)} GiB")
    if gpu is None:
        unknown = f" ({launch.gpu!r} has no known memory size: write NAME:MEMORY)" \
            if launch.gpu else ""
        return [f"{head}; name `launch.gpu` (e.g. H100:80GB) to check it fits{unknown}",
                *lines], None
    usable = f"{_gib(budget(total))} GiB usable on {gpu.name}{gpu.note}"
    if best.fits:
        verdict = "fits" if likely.fits else "fits only with Liger's kernels"
        return [f"{head} of {usable}: {verdict}", *lines], None
    return [], "\n".join([
        f"{spec.source}: does not fit: {head} of {usable}, and still "
        f"{_gib(best.peak.total)} GiB with every kernel ft may use", *lines,
        *(f"  {line}" for line in fixes(found.shape, t, launch, total, evaluate))])
