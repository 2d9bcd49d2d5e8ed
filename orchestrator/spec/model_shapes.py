"""The shape of the model a spec fine-tunes, before anything is downloaded: for the memory
estimate `ft validate` prints (orchestrator/spec/memory_fit.py).

Where it comes from, first found wins:
1. `base_model_config` or `base_model` is a directory here with a config.json;
2. the Hugging Face cache of this machine holds the repo's config.json;
3. a table of well-known architectures by name (facts from their config.json files);
4. the hub's config.json, when reachable (`HF_HUB_OFFLINE=1` skips it), bounded in time.
None of them: the estimate is skipped and the reason said.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from trainer.torch_free.memory_estimate import Shape, shape_from_config
from trainer.torch_free.training import TrainingConfig

HUB_TIMEOUT_S = 1.0  # a firewalled hub must not slow every `ft validate` down

_LLAMA3_VOCAB, _QWEN_VOCAB = 128256, 151936
# name (lowercase, no org, no -instruct/-it/-chat/-base suffix) -> shape
KNOWN: dict[str, Shape] = {
    "llama-3.2-1b": Shape(16, 2048, 8192, _LLAMA3_VOCAB, 32, 8, 64, tied_embeddings=True),
    "llama-3.2-3b": Shape(28, 3072, 8192, _LLAMA3_VOCAB, 24, 8, 128, tied_embeddings=True),
    "llama-3.1-8b": Shape(32, 4096, 14336, _LLAMA3_VOCAB, 32, 8, 128),
    "llama-3-8b": Shape(32, 4096, 14336, _LLAMA3_VOCAB, 32, 8, 128),
    "llama-3.1-70b": Shape(80, 8192, 28672, _LLAMA3_VOCAB, 64, 8, 128),
    "llama-3.3-70b": Shape(80, 8192, 28672, _LLAMA3_VOCAB, 64, 8, 128),
    "llama-3-70b": Shape(80, 8192, 28672, _LLAMA3_VOCAB, 64, 8, 128),
    "llama-3.1-405b": Shape(126, 16384, 53248, _LLAMA3_VOCAB, 128, 8, 128),
    "qwen3-0.6b": Shape(28, 1024, 3072, _QWEN_VOCAB, 16, 8, 128, tied_embeddings=True),
    "qwen3-1.7b": Shape(28, 2048, 6144, _QWEN_VOCAB, 16, 8, 128, tied_embeddings=True),
    "qwen3-4b": Shape(36, 2560, 9728, _QWEN_VOCAB, 32, 8, 128, tied_embeddings=True),
    "qwen3-8b": Shape(36, 4096, 12288, _QWEN_VOCAB, 32, 8, 128),
    "qwen3-14b": Shape(40, 5120, 17408, _QWEN_VOCAB, 40, 8, 128),
    "qwen3-32b": Shape(64, 5120, 25600, _QWEN_VOCAB, 64, 8, 128),
    "qwen3-30b-a3b": Shape(48, 2048, 6144, _QWEN_VOCAB, 32, 4, 128, experts=128,
                           active_experts=8, expert_intermediate=768),
    "qwen3-235b-a22b": Shape(94, 4096, 12288, _QWEN_VOCAB, 64, 4, 128, experts=128,
                             active_experts=8, expert_intermediate=1536),
    "qwen2.5-0.5b": Shape(24, 896, 4864, _QWEN_VOCAB, 14, 2, 64, tied_embeddings=True),
    "qwen2.5-1.5b": Shape(28, 1536, 8960, _QWEN_VOCAB, 12, 2, 128, tied_embeddings=True),
    "qwen2.5-7b": Shape(28, 3584, 18944, 152064, 28, 4, 128),
    "qwen2.5-72b": Shape(80, 8192, 29568, 152064, 64, 8, 128),
    "mistral-7b-v0.3": Shape(32, 4096, 14336, 32768, 32, 8, 128),
    "mistral-7b-v0.1": Shape(32, 4096, 14336, 32000, 32, 8, 128),
    "mixtral-8x7b-v0.1": Shape(32, 4096, 14336, 32000, 32, 8, 128, experts=8,
                               active_experts=2, expert_intermediate=14336),
    "gemma-2-9b": Shape(42, 3584, 14336, 256000, 16, 8, 256, tied_embeddings=True),
}
_SUFFIXES = re.compile(r"-(instruct|it|chat|base|hf)(-\d{4})?$")


@dataclass(frozen=True)
class Found:
    shape: Shape | None
    source: str  # where the shape came from, or why there is none


def known_name(model: str) -> str:
    """`meta-llama/Llama-3.1-8B-Instruct` -> `llama-3.1-8b`."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower().removeprefix("meta-")
    return _SUFFIXES.sub("", name)


def find_shape(t: TrainingConfig) -> Found:
    model = t.base_model_config or t.base_model
    local = Path(model).expanduser()
    if local.is_dir():
        return _from_file(local / "config.json", f"{local}/config.json")
    if model.startswith((".", "/", "~")):
        return Found(None, f"{model} is not a directory here")
    cached = _cached_config(model)
    if cached is not None:
        return _from_file(cached, f"{model} (config.json in the Hugging Face cache)")
    if known_name(model) in KNOWN:
        return Found(KNOWN[known_name(model)], f"{model} (ft's table of known shapes)")
    return _from_hub(model, t.revision_of_model or "main")


def _from_file(path: Path, source: str) -> Found:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Found(None, f"cannot read {path}: {exc}")
    shape = shape_from_config(config)
    return Found(shape, source if shape else f"{path} has no decoder dimensions "
                 "(num_hidden_layers, hidden_size, intermediate_size, vocab_size)")


def _cached_config(model: str) -> Path | None:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{model.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1] if found else None


def _from_hub(model: str, revision: str) -> Found:
    import urllib.error  # here: most specs never reach the hub, and validate stays quick
    import urllib.request

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or \
            os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0"):
        return Found(None, f"{model} is not in ft's table of known shapes and "
                     "HF_HUB_OFFLINE is set (name a local directory to get an estimate)")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/{model}/resolve/{revision}/config.json")
    token = os.environ.get("HF_TOKEN")
    if token:  # gated repos (Llama, Gemma) answer 401 without it
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT_S) as response:
            config = json.loads(response.read(1 << 20))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Found(None, f"{model} is not in ft's table of known shapes and its "
                     f"config.json could not be read from the hub ({reason})")
    shape = shape_from_config(config) if isinstance(config, dict) else None
    return Found(shape, f"{model} (the hub's config.json)" if shape else
                 f"{model}'s config.json has no decoder dimensions")
