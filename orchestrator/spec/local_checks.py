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
from trainer.contract.chat_templates import choice_problem
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
    if "tokenizer_default" in chat_sets and _local_tokenizer_lacks_template(t):
        yield ("chat_template",), ("the tokenizer in " + (t.tokenizer_config or t.base_model)
                                   + " has no chat template, and `tokenizer_default` uses it; "
                                   "name one (e.g. `chat_template: chatml`)")


def _local_tokenizer_lacks_template(t: TrainingConfig) -> bool:
    """Only a tokenizer directory on this machine can be looked into."""
    directory = Path(t.tokenizer_config or t.base_model).expanduser()
    config = directory / "tokenizer_config.json"
    if not config.is_file():
        return False
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json"
                                                        ).is_file():
        return False
    try:
        return not json.loads(config.read_text()).get("chat_template")
    except (OSError, ValueError):
        return False
