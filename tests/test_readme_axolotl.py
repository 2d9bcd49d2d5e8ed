"""The "Axolotl configs" section of docs/spec.md and docs/axolotl-compatibility.md state
facts the code and the recorded measurement must keep true.

The lists between `<!-- name:start -->` / `<!-- name:end -->` markers and the key count
are compared with the code here; the behaviour sentences are proven by
tests/test_axolotl_keys.py (answers, empty values, hints), tests/test_axolotl_corpus.py
(fsdp_version, DeepSpeed names, val_set_size, pretraining_dataset, validate/render/train
agreement) and
tests/test_chat_template_families.py (templates, masking, the validate-time check).
"""

from __future__ import annotations

import json
import re

from orchestrator.spec.axolotl_keys import ALIASES, DATASET_REFUSED, REFUSED
from tests.cli_runner import REPO
from trainer.torch_free.chat_templates import FAMILIES, TOKENIZER_ONLY
from trainer.torch_free.deepspeed_files import AXOLOTL_NAMES

PAGE = (REPO / "docs" / "spec.md").read_text()
COMPAT = (REPO / "docs" / "axolotl-compatibility.md").read_text()
SHARE = json.loads((REPO / "bench/results/axolotl-examples-share.json").read_text())


def _block(name: str, page: str = PAGE) -> str:
    return re.search(f"<!-- {name}:start -->(.*?)<!-- {name}:end -->", page, re.S).group(1)


def _ticked(name: str) -> list[str]:
    return re.findall(r"`([^`]+)`", _block(name))


def test_the_key_count_is_the_extracted_lists():
    keys = [line for line in (REPO / "tests/fixtures/axolotl/schema_keys.txt").read_text()
            .splitlines() if line.strip() and not line.startswith(("#", "plugin "))]
    assert f"each of the {len(keys)} top-level keys of Axolotl's current schema" in PAGE


def test_listed_aliases_deepspeed_names_and_templates_are_the_codes():
    assert _ticked("aliases") == list(ALIASES)
    assert _ticked("deepspeed") == list(AXOLOTL_NAMES)
    assert _ticked("templates") == list(FAMILIES)
    assert _ticked("tokenizer-only") == sorted(TOKENIZER_ONLY)


def test_the_refused_list_is_every_refusal_the_code_makes():
    listed = _block("refused", COMPAT).strip().splitlines()
    refusals = dict.fromkeys([*REFUSED.values(), *DATASET_REFUSED.values()])
    expected = [f"- {r.what}: {r.nearest}" for r in refusals]
    assert listed == expected, "docs/axolotl-compatibility.md's refused block should be:\n" \
        + "\n".join(expected)


def test_the_compatibility_page_states_the_recorded_share():
    """The share and the first refusals are bench/results/axolotl-examples-share.json's
    (bench/axolotl_examples_share.py writes it; rerun it after a change to what ft accepts)."""
    share = f"{SHARE['accepted']} of {SHARE['text_finetuning']} ({SHARE['share']:.0%})"
    assert _block("share", COMPAT) == share
    assert SHARE["accepted"] == len(SHARE["accepted_configs"])
    assert SHARE["text_finetuning"] == SHARE["accepted"] + len(SHARE["refused"])
    firsts = [f"- `{key}`: {n}" for key, n in SHARE["first_refusal_keys"].items()]
    assert _block("first-refusals", COMPAT).strip().splitlines() == firsts
    assert sum(SHARE["first_refusal_keys"].values()) == len(SHARE["refused"])


README = (REPO / "README.md").read_text()
README_SECTION = README.split("## Axolotl configs", 1)[1].split("\n## ", 1)[0]


def test_the_readme_states_the_recorded_share():
    share = f"{SHARE['accepted']} of {SHARE['text_finetuning']} ({SHARE['share']:.0%})"
    assert _block("share", README) == share == _block("share", COMPAT)


def test_every_key_the_readme_says_is_honoured_is_a_key_ft_reads():
    """The README's "Axolotl configs" bullets name keys as honoured: each must be a field of
    the spec (or an Axolotl spelling of one), never a refused or warned key."""
    from orchestrator.spec.axolotl_warned import WARNED
    from trainer.torch_free.training import DatasetSpec, TrainingConfig

    fields = {*TrainingConfig.model_fields, *DatasetSpec.model_fields, *ALIASES}
    bullets = README_SECTION.split("\n- ", 1)[1]
    named = {re.split(r"[\s:]", span)[0] for span in re.findall(r"`([^`]+)`", bullets)}
    keys = {name for name in named if re.fullmatch(r"[a-z_0-9]+", name) and "_" in name}
    assert {"quantize_moe_experts", "lora_target_parameters", "unfrozen_parameters",
            "dp_shard_size", "field_thinking"} <= keys
    assert not keys & (set(REFUSED) | set(DATASET_REFUSED) | set(WARNED))
    assert keys <= fields, keys - fields
