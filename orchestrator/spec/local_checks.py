"""Rules that read this machine: explicitly local paths and the chat template.

A path written as `./x`, `../x` or `~/x` is relative to where the job runs. When it runs
here (`ft train`, `--backend local`), a missing one is an error before any work rather than
90 s into training; for a cluster backend it is the node's business. Absolute paths and hub
ids are never checked here: they may exist only on the cluster or the hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from orchestrator.spec.yaml_source import format_path, line_of, load_yaml_with_lines
from trainer.contract.chat_templates import FAMILIES, TOKENIZER_ONLY, choice_problem
from trainer.contract.errors import Problem, SpecError
from trainer.contract.training import TrainingConfig

Rule = tuple[tuple, str]
_LOCAL_PREFIXES = ("./", "../", "~/", ".\\", "..\\")


def explicitly_local(value: str) -> Path | None:
    return Path(value).expanduser() if value.startswith(_LOCAL_PREFIXES) else None


def local_file_problems(t: TrainingConfig) -> Iterator[Rule]:
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        value = getattr(t, key)
        path = explicitly_local(value) if value else None
        if path is not None and not path.exists():
            yield (key,), f"{value} does not exist on this machine (from {Path.cwd()})"
    for section in ("datasets", "test_datasets"):
        for index, ds in enumerate(getattr(t, section) or []):
            path = explicitly_local(ds.path)
            if path is not None and not path.exists():
                yield (section, index, "path"), (f"{ds.path} does not exist on this machine "
                                                 f"(from {Path.cwd()})")


def local_problems(t: TrainingConfig, source: str) -> list[Problem]:
    """local_file_problems located in the spec file (for a job that runs on this machine)."""
    try:
        _, lines = load_yaml_with_lines(Path(source).read_text(), source)
    except OSError:
        lines = {}
    return [Problem(format_path(path), message, line_of(lines, path))
            for path, message in local_file_problems(t)]


def require_local_files(spec) -> None:
    """For a command that runs the job here (`ft train`, `ft launch --backend local`)."""
    problems = local_problems(spec.training, spec.source)
    if problems:
        raise SpecError(problems, spec.source)


def chat_template_problems(t: TrainingConfig) -> Iterator[Rule]:
    if t.chat_template:
        problem = choice_problem(t.chat_template)
        if problem:
            yield ("chat_template",), problem
    chat_sets = []
    for section in ("datasets", "test_datasets"):
        for index, ds in enumerate(getattr(t, section) or []):
            if ds.chat_template:
                problem = choice_problem(ds.chat_template)
                if problem:
                    yield (section, index, "chat_template"), problem
            if ds.type == "chat_template":
                chat_sets.append(ds.chat_template or t.chat_template or "tokenizer_default")
    tokenizer = _LocalTokenizer.find(t)
    if tokenizer is None:  # a hub id: the node checks it when it loads the tokenizer
        return
    own_only = [n for n in chat_sets if n == "tokenizer_default" or n in TOKENIZER_ONLY]
    if own_only and not tokenizer.template:
        yield ("chat_template",), (f"the tokenizer in {tokenizer.directory} has no chat "
                                   f"template, and `{own_only[0]}` uses it; name one ft has "
                                   "(e.g. `chat_template: chatml`)")
    for name in dict.fromkeys(n for n in chat_sets if n in FAMILIES):
        missing = tokenizer.missing_closers(name)
        if missing:
            yield ("chat_template",), (
                f"`{name}` closes turns with {', '.join(missing)}, which the tokenizer in "
                f"{tokenizer.directory} does not have; add it with `special_tokens` / "
                "`tokens`, or use the model's own template (`tokenizer_default`)")


class _LocalTokenizer:
    """What validation can read from a tokenizer directory on this machine, without
    transformers: its chat template and its vocabulary."""

    def __init__(self, directory: Path, template: str | None, vocab: set[str]) -> None:
        self.directory, self.template, self.vocab = directory, template, vocab

    @classmethod
    def find(cls, t: TrainingConfig) -> _LocalTokenizer | None:
        directory = Path(t.tokenizer_config or t.base_model).expanduser()
        config = directory / "tokenizer_config.json"
        if not config.is_file():
            return None
        try:
            template = json.loads(config.read_text()).get("chat_template")
            jinja = directory / "chat_template.jinja"
            template = template or (jinja.read_text() if jinja.is_file() else None)
            vocab = _vocabulary(directory / "tokenizer.json")
        except (OSError, ValueError):
            return None
        added = {str(token) for token in (t.tokens or [])}
        if t.special_tokens:
            added |= set(t.special_tokens.model_dump(exclude_none=True).values())
        return cls(directory, template, vocab | added if vocab else set())

    def missing_closers(self, name: str) -> list[str]:
        family = FAMILIES[name]
        if not self.vocab or (self.template and family.signature in self.template):
            return []  # unknown vocabulary, or the tokenizer's own template is used
        return [token for token in family.closing if token not in self.vocab]


def _vocabulary(path: Path) -> set[str]:
    """Token strings of a fast tokenizer's tokenizer.json (empty when there is none)."""
    if not path.is_file():
        return set()
    data = json.loads(path.read_text())
    vocab = data.get("model", {}).get("vocab") or {}
    tokens = set(vocab) if isinstance(vocab, dict) else {str(v[0]) for v in vocab}
    return tokens | {entry["content"] for entry in data.get("added_tokens", [])}
