"""Every refusal says what the feature is and names the nearest thing ft does.

A refusal is a Refusal (orchestrator/spec/axolotl_keys.py): "<what> is/are not supported;
<nearest>". The nearest part must name something of ft's in backticks (a spec key, a
`key: value`, or an `ft` command) that really exists, so a refusal never points at a key ft
has dropped or never had.
"""

from __future__ import annotations

import re

import pytest

from orchestrator.spec.axolotl_keys import ALIASES, DATASET_REFUSED, REFUSED, Refusal
from trainer.torch_free.training import DatasetSpec, FsdpConfig, TrainingConfig

# ft's fields, the Axolotl spellings ft reads for them (`model_config`), and its commands.
FT_NAMES = {*TrainingConfig.model_fields, *DatasetSpec.model_fields, *FsdpConfig.model_fields,
            *ALIASES, "ft"}
ALL = dict.fromkeys([*REFUSED.values(), *DATASET_REFUSED.values()])


def _named(text: str) -> list[str]:
    """The first word of each backticked span: `adapter: lora` -> adapter, `ft merge-lora`
    -> ft, `datasets[].type: completion` -> datasets."""
    return [re.split(r"[\s:\[.]", span)[0] for span in re.findall(r"`([^`]+)`", text)]


@pytest.mark.parametrize("refusal", list(ALL), ids=lambda r: r.what[:40])
def test_each_refusal_has_what_and_an_existing_nearest(refusal):
    assert isinstance(refusal, Refusal)
    assert refusal.what and refusal.nearest, f"needs '<what> ...; <nearest>': {refusal}"
    assert str(refusal) == f"{refusal.what} {'are' if ' are not ' in refusal else 'is'} not " \
                           f"supported; {refusal.nearest}"
    named = _named(refusal.nearest)
    assert any(name in FT_NAMES for name in named), \
        f"the nearest part names no ft key or command in backticks: {refusal.nearest}"


def test_the_parts_split_as_written():
    refusal = Refusal("ReLoRA (restarts) is not supported; ft trains one LoRA (`adapter: lora`)")
    assert (refusal.what, refusal.nearest) == ("ReLoRA (restarts)",
                                               "ft trains one LoRA (`adapter: lora`)")
    assert Refusal("X is not supported").nearest == ""
