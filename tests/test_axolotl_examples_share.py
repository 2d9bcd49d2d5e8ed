"""bench/axolotl_examples_share.py: the rule that picks text fine-tuning configs and the
counting, on a small git repository of example configs built here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runner import REPO

sys.path.insert(0, str(REPO / "bench"))
from axolotl_examples_share import excluded_category, measure  # noqa: E402

TEXT = "base_model: org/m\ndatasets: [{path: d.jsonl, type: alpaca}]\n"


@pytest.mark.parametrize(("extra", "category"), [
    ("tensor_parallel_size: 1\ncontext_parallel_size: 1\n", None),  # size 1: no parallelism
    ("tensor_parallel_size: 2\n", "tensor / context / expert parallel > 1"),
    ("rl: dpo\n", "RL / preference"),
    ("rl:\n", None),
    ("reward_model: true\n", "reward model"),
    ("processor_type: AutoProcessor\n", "multimodal"),
    ("plugins: [axolotl.integrations.kd.KDPlugin]\n", "knowledge distillation"),
    ("plugins: [axolotl.integrations.liger.LigerPlugin]\n", None),
])
def test_the_rule_for_text_fine_tuning(extra, category):
    import yaml

    assert excluded_category(yaml.safe_load(TEXT + extra)) == category


def test_measure_counts_current_text_configs_and_names_first_refusals(tmp_path: Path):
    files = {"examples/a/ok.yml": TEXT,
             "examples/a/typo.yaml": TEXT + "lerning_rate: 0.1\n",  # warned, accepted
             "examples/b/refused.yml": TEXT + "relora: true\n",
             "examples/b/rl.yml": TEXT + "rl: dpo\n",
             "examples/archived/old.yml": TEXT + "relora: true\n",
             "examples/b/not-a-config.yml": "just: data\n",
             "examples/b/README.md": "text\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "examples"], check=True)
    result = measure(tmp_path, "HEAD")
    assert (result["training_configs"], result["text_finetuning"], result["accepted"]) == \
        (4, 3, 2)
    assert result["excluded"] == {"RL / preference": 1}
    assert list(result["refused"]) == ["examples/b/refused.yml"]
    assert result["refused"]["examples/b/refused.yml"].startswith("`relora`: ReLoRA (")
    assert result["first_refusal_keys"] == {"relora": 1}
    assert result["unknown_keys_warned"] == {"examples/a/typo.yaml": 1}
