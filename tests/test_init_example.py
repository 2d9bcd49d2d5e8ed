"""`ft init`: the starter spec validates without a warning about itself, and `ft init
--example tiny DIR` gives a runnable example from any directory (the installed package's
copy of the files is covered by tests/test_base_install.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.example_init import example_text, spec_prefix
from tests.cli_runner import REPO, run_ft
from tests.specs import BACKENDS
from trainer.models.tiny import is_built
from trainer.torch_free.example_files import example_files


def test_starter_spec_validates_without_warnings_and_renders_for_every_backend(tmp_path):
    written = run_ft("init", cwd=tmp_path)
    assert written.returncode == 0 and "warning:" not in written.stderr, written.stderr
    validated = run_ft("validate", "ft.yaml", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert "warning:" not in validated.stderr, validated.stderr
    for backend in BACKENDS:
        assert f"--backend {backend}: ready" in validated.stdout, validated.stderr
        rendered = run_ft("render", "ft.yaml", "--backend", backend, cwd=tmp_path)
        assert rendered.returncode == 0, (backend, rendered.stderr)


def test_example_written_into_examples_tiny_is_the_shipped_spec():
    """The shipped spec's paths are what `ft init --example tiny examples/tiny` writes from
    the repo root: one rewrite rule serves both."""
    prefix = spec_prefix(REPO / "examples" / "tiny", REPO)
    assert example_text("tiny", Path("tiny.yaml"), prefix) == \
        (REPO / "examples" / "tiny" / "tiny.yaml").read_text(encoding="utf-8")


def test_spec_prefix_outside_the_working_directory_is_absolute(tmp_path):
    assert spec_prefix(tmp_path / "a", tmp_path) == "./a/"
    assert spec_prefix(tmp_path, tmp_path) == "./"
    assert spec_prefix(tmp_path / "a", tmp_path / "b") == f"{(tmp_path / 'a').as_posix()}/"


@pytest.mark.slow
def test_init_example_then_train_from_another_directory(tmp_path):
    result = run_ft("init", "--example", "tiny", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # What it says, and nothing else: no DeepSpeed accelerator notice, no progress bar.
    assert result.stderr == ""
    assert result.stdout.splitlines()[0] == "built the model in mine/model"
    assert all(line.startswith(("wrote mine/", "from here: ")) for line in
               result.stdout.splitlines()[1:]), result.stdout
    target = tmp_path / "mine"
    assert is_built(target / "model")
    for relative in example_files("tiny"):
        assert (target / relative).is_file(), relative
    assert "./mine/model" in (target / "tiny.yaml").read_text()
    validated = run_ft("validate", "mine/tiny.yaml", cwd=tmp_path)
    assert validated.returncode == 0 and "warning:" not in validated.stderr, validated.stderr
    trained = run_ft("train", "mine/tiny.yaml", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "gemm_4bit_forward" not in trained.stderr  # bitsandbytes' import-time notice
    assert trained.stderr.strip(), "no output at all"
    assert "\n\n" not in trained.stderr and "\r" not in trained.stderr  # one line per bar
    assert (tmp_path / "outputs" / "tiny" / "adapter_model.safetensors").is_file()


def test_init_example_refuses_to_overwrite_and_names_the_examples(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "tiny.yaml").write_text("mine\n")
    refused = run_ft("init", "--example", "tiny", "mine", cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr, refused.stderr
    assert (tmp_path / "mine" / "tiny.yaml").read_text() == "mine\n"
    assert not (tmp_path / "mine" / "model").exists(), "checked before building anything"
    unknown = run_ft("init", "--example", "huge", cwd=tmp_path)
    assert unknown.returncode == 2 and "there is: tiny" in unknown.stderr
    assert "Traceback" not in refused.stderr + unknown.stderr
