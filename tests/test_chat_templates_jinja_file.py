"""`chat_template_jinja:` may name a .jinja file instead of holding the template (as in
Axolotl): training reads the file, validation says when it is neither, and `ft launch`
ships the file to the nodes."""

from __future__ import annotations

import warnings

import pytest

from tests.chat_template_cases import tiny_chat_tokenizer
from trainer.data.templates import resolve_chat_template

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
LAUNCH = "launch:\n  name: tpl\n  nodes: 1\n  gpus_per_node: 8\n  gpu: H100:80GB\n"


def _spec(model: str, jinja: str) -> str:
    return (f"base_model: {model}\nchat_template: jinja\nchat_template_jinja: {jinja}\n"
            "datasets:\n  - path: x.jsonl\n    type: chat_template\n")


def test_a_jinja_file_is_read_and_an_inline_template_used_as_is(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text(TEMPLATE)
    tok = tiny_chat_tokenizer()
    assert resolve_chat_template("jinja", tok, jinja=str(path)).jinja == TEMPLATE
    assert resolve_chat_template("jinja", tok, jinja=TEMPLATE).jinja == TEMPLATE
    with pytest.raises(ValueError, match="`chat_template_jinja`: 'nowhere.jinja' is neither a "
                                         "jinja template"):
        resolve_chat_template("jinja", tok, jinja="nowhere.jinja")


def test_validation_names_a_missing_jinja_file(tmp_path):
    from orchestrator.spec.load import SpecWarning, parse_spec
    from trainer.torch_free.errors import SpecError

    with pytest.raises(SpecError, match="chat_template_jinja.*'nowhere.jinja' is neither"):
        parse_spec(_spec(str(tmp_path), "nowhere.jinja"), "spec.yaml")
    (tmp_path / "mine.jinja").write_text(TEMPLATE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        parse_spec(_spec(str(tmp_path), str(tmp_path / "mine.jinja")), "spec.yaml")


def test_ft_launch_ships_the_jinja_file(tmp_path, monkeypatch):
    from orchestrator.shipping.job_files import job_files
    from orchestrator.spec.load import SpecWarning, parse_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/mine.jinja").write_text(TEMPLATE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        spec = parse_spec(_spec("org/model", "templates/mine.jinja") + LAUNCH, "spec.yaml",
                          for_launch=True)
    (shipped,) = job_files(spec, absolute_ok=False)
    assert (shipped.field, shipped.path) == ("chat_template_jinja", "templates/mine.jinja")
