"""FSDP2 with `cpu_ram_efficient_loading` on a model whose lm_head is its input embedding
matrix (tests/fixtures/axolotl/corpus/fsdp2-tied-cpu-ram-efficient.yml, on a tied tiny
Llama). Rank 0 loads the weights; the other ranks build a skeleton on the meta device, which
must be tied too, or they shard one tensor more than rank 0 and the first all-gather fails
("Received data size doesn't match expected size"). Two emulated nodes train it as one
process trains it without the option, the tie holds on every rank and in the saved model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.cli_runner import REPO, run_ft
from tests.support.mesh_record import HOOK, read_record
from tests.test_axolotl_corpus import _tiny_copy
from tests.train_helpers import free_port, summary

CONFIG = "fsdp2-tied-cpu-ram-efficient.yml"
EMBED = "model.embed_tokens.weight"


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny Llama with `tie_word_embeddings: true`: one matrix for input and output."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tied-model")
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def _spec(tmp_path: Path, model_dir: Path, name: str, **changes) -> Path:
    path = _tiny_copy(CONFIG, tmp_path, model_dir, "alpaca.jsonl")
    spec = yaml.safe_load(path.read_text())
    spec.update(sequence_len=256, output_dir=str(tmp_path / name), **changes)
    launch = yaml.safe_load((REPO / "examples/tiny/tiny.yaml").read_text())["launch"]
    spec["launch"] = {**launch, "name": "tied", "nodes": 2}
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _losses(output_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in summary(output_dir)["log_history"] if "loss" in e}


def test_tied_model_trains_over_two_nodes_with_rank0_loading(tmp_path, tied_model_dir):
    sharded = _spec(tmp_path, tied_model_dir, "sharded")
    result = run_ft("launch", str(sharded), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), cwd=tmp_path,
                    env={**os.environ, "FT_TRAINER_HOOKS": HOOK})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # The reference: one process, no FSDP (so no rank-0 loading), the same global batch.
    single = _spec(tmp_path, tied_model_dir, "single", micro_batch_size=4, fsdp_version=None,
                   fsdp_config=None)
    reference = run_ft("train", str(single), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "sharded"
    assert summary(out)["world_size"] == 2 and summary(out)["global_step"] == 3
    assert _losses(out) == pytest.approx(_losses(tmp_path / "single"), rel=1e-4)
    assert [read_record(out, rank)["tied"] for rank in (0, 1)] == [True, True]
    saved = load_file(out / "model.safetensors")
    initial = load_file(tied_model_dir / "model.safetensors")
    assert not saved[EMBED].equal(initial[EMBED]), "the embeddings did not train"
    # Tied weights are saved once (or twice, equal); the config still says tied.
    assert "lm_head.weight" not in saved or saved["lm_head.weight"].equal(saved[EMBED])
    assert yaml.safe_load((out / "config.json").read_text())["tie_word_embeddings"] is True
