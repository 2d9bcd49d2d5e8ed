"""A training key neither ft nor Axolotl knows: ignored with a warning that names the file,
line and key (Axolotl ignores it silently), an error under `--strict`; `launch:` stays strict.
The in-container commands load the spec the same way, so what validate passes trains."""

from __future__ import annotations

import warnings

import pytest
import yaml

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import run_ft
from tests.train_helpers import write_tiny_spec
from trainer.torch_free.errors import SpecError

SPEC = """\
base_model: org/model
lerning_rate: 0.001
datasets:
  - path: data.jsonl
    type: alpaca
    feld: text
fsdp_config:
  fsdp_offload_paramz: true
  fsdp_version: 2
launch: {nodes: 2, gpus_per_node: 8}
"""
IGNORED = "Ignored, as Axolotl does (`ft validate --strict` makes it an error)"


def _load(text: str, strict: bool = False):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        spec = parse_spec(text, "spec.yaml", strict=strict)
    return spec, [str(w.message) for w in caught if issubclass(w.category, SpecWarning)]


def test_unknown_keys_at_every_depth_are_warned_with_file_line_and_hint():
    spec, notes = _load(SPEC)
    assert notes[:3] == [
        f"spec.yaml:2: `lerning_rate`: unknown key; did you mean `learning_rate`? {IGNORED}",
        f"spec.yaml:6: `datasets[0].feld`: unknown key; did you mean `field`? {IGNORED}",
        # FsdpConfig reads `fsdp_x` as `x`: the warning names the key as written.
        f"spec.yaml:8: `fsdp_config.fsdp_offload_paramz`: unknown key; did you mean "
        f"`offload_params`? {IGNORED}"]
    assert spec.training.learning_rate == 2e-4  # the default: the typo set nothing
    assert spec.training.fsdp_config.offload_params is False
    # The job gets the spec ft validated, without the ignored keys.
    shipped = yaml.safe_load(spec.effective_text)
    assert "lerning_rate" not in shipped and "feld" not in shipped["datasets"][0]
    assert "fsdp_offload_paramz" not in shipped["fsdp_config"]


def test_an_unknown_key_without_a_near_typo_says_so():
    _, notes = _load("base_model: m\ndatasets: [{path: d.jsonl, type: alpaca}]\nfoo: 1\n")
    assert notes == ["spec.yaml:3: `foo`: unknown key, neither ft's nor Axolotl's (`ft schema` "
                     "lists every key); ignored, as Axolotl does (`ft validate --strict` makes "
                     "it an error)"]


def test_strict_makes_each_one_an_error_with_its_line():
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC, "spec.yaml", strict=True)
    assert [p.format("spec.yaml") for p in info.value.problems] == [
        "spec.yaml:2: `lerning_rate`: unknown key; did you mean `learning_rate`?",
        "spec.yaml:6: `datasets[0].feld`: unknown key; did you mean `field`?",
        "spec.yaml:8: `fsdp_config.fsdp_offload_paramz`: unknown key; did you mean "
        "`offload_params`?"]


def test_launch_section_stays_strict_and_is_said_with_the_ignored_keys():
    text = SPEC.replace("{nodes: 2,", "{nodez: 2,")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        with pytest.raises(SpecError) as info:
            parse_spec(text, "spec.yaml")
    assert [p.path for p in info.value.problems] == ["launch.nodez"]
    # The ignored keys are told even though the spec is refused for another reason.
    assert len([w for w in caught if "unknown key" in str(w.message)]) == 3


def test_validate_warns_strict_refuses_and_launch_strict_refuses_before_rendering(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    plain = run_ft("validate", str(spec), "--backend", "slurm")
    assert f"warning: {spec}:2: `lerning_rate`: unknown key" in plain.stderr
    assert "Traceback" not in plain.stderr
    strict = run_ft("validate", str(spec), "--strict")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert f"{spec}:2: `lerning_rate`: unknown key; did you mean `learning_rate`?" \
        in strict.stderr
    for command in ("launch", "render"):
        refused = run_ft(command, str(spec), "--backend", "slurm", "--strict",
                         *(["--dry-run"] if command == "launch" else []))
        assert refused.returncode == 2 and "3 problems found" in refused.stderr, command
        assert "#SBATCH" not in refused.stdout


def test_train_ignores_what_validate_warns_about(tmp_path, tiny_model_dir):
    """`ft train` (the in-container command) loads the spec by the same rule: it trains."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=2, save_steps=100,
                           eval_steps=100, lerning_rate=0.5)
    assert run_ft("validate", str(spec)).returncode == 0
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`lerning_rate`: unknown key; did you mean `learning_rate`? Ignored" in result.stderr


def test_a_pretraining_dataset_entry_follows_the_same_rule():
    text = "base_model: m\npretraining_dataset:\n  - path: c4\n    text_colum: body\n"
    spec, notes = _load(text)
    assert notes[0] == (f"spec.yaml:4: `pretraining_dataset[0].text_colum`: unknown key; did "
                        f"you mean `text_column`? {IGNORED}")
    assert spec.training.datasets[0].field == "text"
    with pytest.raises(SpecError) as info:
        parse_spec(text, "spec.yaml", strict=True)
    assert [p.path for p in info.value.problems] == ["pretraining_dataset[0].text_colum"]
