"""Every key Axolotl's schema knows gets an answer from ft, and every key ft accepts is used.

tests/fixtures/axolotl/schema_keys.txt is Axolotl's key list, extracted once from its
source (tests/fixtures/axolotl/extract_schema_keys.py). A key is a TrainingConfig field
(then some code outside the schema reads it), an alias of one, refused with the feature's
name, or accepted with one warning (orchestrator/spec/axolotl_keys.py, axolotl_warned.py).
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from orchestrator.spec import axolotl_keys as keys
from orchestrator.spec import axolotl_warned as warned
from orchestrator.spec import rules
from orchestrator.spec.axolotl_compat import MOVED
from orchestrator.spec.key_hints import closest_key
from orchestrator.spec.load import SpecWarning, parse_spec
from trainer.torch_free.errors import SpecError
from trainer.torch_free.training import DatasetSpec, FsdpConfig, SpecialTokens, TrainingConfig

REPO = Path(__file__).resolve().parent.parent
AXOLOTL_KEYS = [line.strip() for line in
                (REPO / "tests/fixtures/axolotl/schema_keys.txt").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "plugin "))]
BASE = "base_model: org/model\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"

# Fields whose value is only validated: Axolotl's `plugins:` enables nothing by itself (its
# plugins' keys do, and ft reads those keys directly).
VALIDATED_ONLY = {"plugins"}
# Fields read through a TrainingConfig property, which is what the trainer consumes.
VIA_PROPERTY = {"requested_attention": {"attn_implementation", "flash_attention",
                                        "sdp_attention", "flex_attention", "eager_attention"},
                # the whole block goes to tokenizer.add_special_tokens (models/load.py)
                "special_tokens": {"bos_token", "eos_token", "pad_token"}}
# fsdp_config keys ft warns about when set (orchestrator/spec/rules.py ignored_settings).
FSDP_WARNED = {"fsdp_version", *rules._FSDP1_ONLY, *rules._FSDP_PLAN_DECIDES}


def _problems(text: str, strict: bool = False) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "spec.yaml", strict=strict)
    return [p.message for p in info.value.problems]


def _warnings(text: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(text, "spec.yaml")
    return [str(w.message) for w in caught if issubclass(w.category, SpecWarning)]


def test_the_extracted_key_list_is_axolotls_whole_schema():
    assert len(AXOLOTL_KEYS) > 450  # the schema module, its bases and plugin args
    for known in ("base_model", "pretraining_dataset", "eot_tokens", "fsdp_version",
                  "model_config", "liger_rope", "processor_type", "rl"):
        assert known in AXOLOTL_KEYS


def test_every_axolotl_key_has_an_answer():
    unanswered = [k for k in AXOLOTL_KEYS if k not in TrainingConfig.model_fields
                  and k not in keys.ALIASES and k not in keys.REFUSED and k not in warned.WARNED
                  and k not in MOVED]
    assert unanswered == []
    assert not set(keys.REFUSED) & set(warned.WARNED)
    assert all(target in TrainingConfig.model_fields for target in keys.ALIASES.values())
    assert all("not supported" in reason for reason in keys.REFUSED.values())


def test_a_set_refused_key_names_its_feature_and_an_empty_one_asks_for_nothing():
    for key, reason in keys.REFUSED.items():
        assert _problems(BASE + f"{key}: 7\n") == [reason + "; remove it or leave it empty"]
        parse_spec(BASE + f"{key}:\n", "spec.yaml")


def test_a_set_warned_key_warns_once_with_what_ft_does():
    for key, instead in warned.WARNED.items():
        assert _warnings(BASE + f"{key}: 7\n") == [f"`{key}`: {instead}"]
        assert _warnings(BASE + f"{key}:\n") == []


def test_the_multimodal_and_rl_refusals_say_so():
    assert _problems(BASE + "processor_type: AutoProcessor\n") == [
        "multimodal training (image or audio inputs through a processor) is not supported; "
        "ft trains text-only causal LMs on `datasets` of text; remove it or leave it empty"]
    assert "RL / preference training" in _problems(BASE + "rl: dpo\n")[0]
    assert _problems(BASE + "reward_model: true\n")[0].startswith("reward models (")


AXOLOTL_DATASET_KEYS = [
    line.strip() for line in (REPO / "tests/fixtures/axolotl/dataset_keys.txt").read_text()
    .splitlines() if line.strip() and not line.startswith("#")]
# PretrainingDataset's own keys: orchestrator/spec/pretraining.py reads them.
PRETRAINING_ONLY = {"text_column", "skip"}


def test_every_axolotl_dataset_key_has_an_answer():
    """Every key of Axolotl's dataset entry (SFT, DPO, KTO, stepwise, synthetic, pretraining
    schemas) is a DatasetSpec field or answered, so none is called unknown."""
    assert {"step_separator", "field_messages", "weight", "text_column"} <= \
        set(AXOLOTL_DATASET_KEYS)
    unanswered = [k for k in AXOLOTL_DATASET_KEYS if k not in DatasetSpec.model_fields
                  and k not in keys.DATASET_REFUSED and k not in warned.DATASET_WARNED
                  and k not in PRETRAINING_ONLY]
    assert unanswered == []
    assert _problems(BASE + "    step_separator: \"\\n\\n\"\n") == [
        keys.REFUSED["process_reward_model"] + "; remove it or leave it empty"]


def test_a_refused_key_set_to_what_ft_does_passes():
    parse_spec(BASE + "nf4_backend: bitsandbytes\nlabel_balance_window_optim_steps: 1\n",
               "spec.yaml")
    assert "torchao's NF4" in _problems(BASE + "nf4_backend: torchao\n")[0]


def test_dataset_level_axolotl_keys_are_answered_too():
    refused = _problems(BASE + "    field_human: human\n")
    assert refused == [keys.DATASET_REFUSED["field_human"] + "; remove it or leave it empty"]
    assert _warnings(BASE + "    preprocess_shards: 4\n") == [
        f"`datasets[0].preprocess_shards`: {warned.DATASET_WARNED['preprocess_shards']}"]


def test_aliases_rename_and_clash_with_their_target():
    spec = parse_spec(BASE + "dataset_num_proc: 3\nmodel_revision: v2\nlora_rank: 16\n",
                      "spec.yaml")
    t = spec.training
    assert (t.dataset_processes, t.revision_of_model, t.lora_r) == (3, "v2", 16)
    assert _problems(BASE + "lora_rank: 16\nlora_r: 8\n") == [
        "`lora_rank` is Axolotl's other name for `lora_r`, which is set too; keep one"]


def test_empty_values_mean_unset():
    spec = parse_spec(BASE + "lora_r:\ngradient_checkpointing:\nsample_packing:\n"
                      "special_tokens:\nfsdp_config:\n", "spec.yaml")
    defaults = TrainingConfig.model_fields
    assert spec.training.lora_r == defaults["lora_r"].default
    assert spec.training.gradient_checkpointing == "auto"
    assert spec.training.fsdp_config is None
    sections = parse_spec(BASE + "fsdp_config:\n  offload_params:\nspecial_tokens:\n"
                          "  pad_token:\nlr_scheduler_kwargs: {power: null}\n", "spec.yaml")
    assert sections.training.fsdp_config is None and not sections.training.uses_fsdp
    assert sections.training.special_tokens is None
    assert sections.training.lr_scheduler_kwargs == {"power": None}  # free-form: kept


def test_a_wrong_union_value_has_no_pydantic_internals():
    (message,) = _problems(BASE + "gradient_checkpointing: maybe\n")
    assert message == ("expected true/false or one of 'unsloth', 'offload' or 'auto' "
                       "(got 'maybe')")


@pytest.mark.parametrize(("typo", "hint"), [("eot_tokenz", "eot_tokens"),
                                            ("pretraining_datasett", "pretraining_dataset"),
                                            ("lora_alhpa", "lora_alpha"),
                                            ("learning_rat", "learning_rate")])
def test_typos_get_the_key_they_misspell(typo, hint):
    assert _problems(BASE + f"{typo}: 1\n", strict=True) == [
        f"unknown key; did you mean `{hint}`?"]
    assert _warnings(BASE + f"{typo}: 1\n") == [
        f"spec.yaml:5: `{typo}`: unknown key; did you mean `{hint}`? Ignored, as Axolotl does "
        "(`ft validate --strict` makes it an error)"]


@pytest.mark.parametrize("unrelated", ["tokens_of_eot", "pretraining_mix", "foo"])
def test_unrelated_unknown_keys_get_no_hint(unrelated):
    assert _problems(BASE + f"{unrelated}: 1\n", strict=True) == [
        "unknown key, neither ft's nor Axolotl's (`ft schema` lists every key)"]


def test_the_hint_never_pairs_keys_that_only_share_a_word():
    known = [*TrainingConfig.model_fields, *keys.REFUSED, *warned.WARNED]
    assert closest_key("eot_tokens", ["tokens"]) is None
    assert closest_key("pretraining_dataset", ["learning_rate"]) is None
    assert closest_key("save_strategy", known) == "save_strategy"


def _consumed_names() -> set[str]:
    """Attribute names read and string constants used anywhere outside the schema and its
    validation: where a field's value goes to work."""
    names: set[str] = set()
    skip = {REPO / "trainer/torch_free/training.py"}
    files = [*(REPO / "trainer").rglob("*.py"), *(REPO / "orchestrator").rglob("*.py")]
    for path in files:
        if path in skip or (REPO / "orchestrator/spec") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return names


@pytest.mark.parametrize("model", [TrainingConfig, DatasetSpec, FsdpConfig, SpecialTokens],
                         ids=lambda m: m.__name__)
def test_every_accepted_field_reaches_a_consumer_or_is_declared_warned(model):
    consumed = _consumed_names()
    for prop, fields in VIA_PROPERTY.items():
        assert prop in consumed
        consumed |= fields
    declared = VALIDATED_ONLY | (FSDP_WARNED if model is FsdpConfig else set())
    unread = [f for f in model.model_fields if f not in consumed and f not in declared]
    assert unread == []


def test_declared_fsdp_warnings_fire():
    notes = _warnings(BASE + "fsdp: [full_shard]\nfsdp_config: {fsdp_version: 1, "
                      "sync_module_states: true, mixed_precision_policy: bf16}\n")
    assert any("fsdp_version: 1" in n for n in notes)
    assert any("sync_module_states" in n for n in notes)
    assert any("mixed_precision_policy" in n for n in notes)


AXOLOTL_PLUGINS = [line.split()[1] for line in
                   (REPO / "tests/fixtures/axolotl/schema_keys.txt").read_text().splitlines()
                   if line.startswith("plugin ")]


def test_every_axolotl_plugin_is_implemented_or_answered():
    from trainer.torch_free.training import KNOWN_PLUGINS

    assert len(AXOLOTL_PLUGINS) >= 15
    for plugin in AXOLOTL_PLUGINS:
        text = BASE + f"plugins:\n  - {plugin}\n"
        key = keys.PLUGIN_ANSWERS.get(plugin.rsplit(".", 1)[-1])
        if plugin in KNOWN_PLUGINS:
            assert _warnings(text) == []
        elif key in keys.REFUSED:
            assert _problems(text) == [f"{plugin}: {keys.REFUSED[key]}"]
        else:
            assert _warnings(text) == [f"`plugins`: {plugin}: {warned.WARNED[key]}"]
