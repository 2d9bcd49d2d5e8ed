"""Rules that read this machine: the paths of a job that runs here, and the chat template.

A job runs here under `ft train` and `ft launch --backend local` (which also needs this
machine's GPUs); on a cluster, `ft node` makes the same checks on every node before torchrun
starts a rank, and each rank's `ft train` again before it imports the trainer, so what one
passes, training does not refuse later for a reason a check could see. Relative paths are
relative to the directory ft runs in (as in Axolotl, and as the trainer opens them):

- a model or tokenizer path written as `./x`, `../x`, `~/x` or `/x` must exist (anything
  else may be a hub id);
- a dataset path must exist when it looks local (`trainer.torch_free.data_paths`: the rule the
  trainer's data loading applies itself);
- `output_dir` and `dataset_prepared_path` must be writable directories, or creatable;
- an explicit `resume_from_checkpoint` must hold a checkpoint that loads
  (`orchestrator.spec.checkpoint_files`) and, if ft marked it complete, still match its
  marker (trainer/checkpoint/resume.py, the check resume itself makes).

`ft validate` and `ft render` of a cluster backend check none of these here: the paths are
the cluster's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from orchestrator.spec.checkpoint_files import loadable_problem
from orchestrator.spec.yaml_source import format_path, line_of, load_yaml_with_lines
from trainer.torch_free.chat_templates import (
    FAMILIES,
    TOKENIZER_ONLY,
    choice_problem,
    fallback_target,
    jinja_problem,
    jinja_settings,
)
from trainer.torch_free.data_paths import missing_local_dataset
from trainer.torch_free.errors import Problem, SpecError
from trainer.torch_free.training import TrainingConfig

Rule = tuple[tuple, str]
_LOCAL_PREFIXES = ("./", "../", "~/", ".\\", "..\\", "/")


def explicitly_local(value: str) -> Path | None:
    return Path(value).expanduser() if value.startswith(_LOCAL_PREFIXES) else None


def local_file_problems(t: TrainingConfig, base: Path, spec_dir: Path | None = None
                        ) -> Iterator[Rule]:
    """Every path of `t` a job running in `base` would fail on; `spec_dir`, the spec's own
    directory, only makes a message more helpful."""
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        value = getattr(t, key)
        path = explicitly_local(value) if value else None
        if path is not None and not (base / path).exists():
            yield (key,), _not_found(value, base / path, base, spec_dir)
    for section in ("datasets", "test_datasets"):
        for index, ds in enumerate(getattr(t, section) or []):
            missing = missing_local_dataset(ds.path, base)
            if missing is not None:
                yield (section, index, "path"), _not_found(ds.path, missing, base, spec_dir)
    for key in ("output_dir", "dataset_prepared_path"):
        value = getattr(t, key)
        problem = value and writable_problem(base / Path(value).expanduser())
        if problem:
            yield (key,), f"{value}: {problem}"
    if t.resume_from_checkpoint not in (None, "", "auto"):
        problem = resume_problem(base / Path(t.resume_from_checkpoint).expanduser())
        if problem:
            yield ("resume_from_checkpoint",), (
                f"{t.resume_from_checkpoint}: {problem}; point it at a `checkpoint-N` "
                "directory of a run, or write `auto` (the newest complete one in `output_dir`)")


def _not_found(value: str, path: Path, base: Path, spec_dir: Path | None) -> str:
    message = (f"{value} not found (looked for {os.path.normpath(path)}: relative paths are "
               f"relative to the directory ft runs in, {base})")
    beside_spec = spec_dir / Path(value).expanduser() if spec_dir else None
    if beside_spec is not None and beside_spec.exists() and spec_dir.resolve() != base.resolve():
        hint = os.path.relpath(beside_spec, base)
        message += (f"; it is beside the spec: run ft from {spec_dir}, or write "
                    f"`{hint if hint.startswith('.') else './' + hint}`")
    return message


def writable_problem(directory: Path) -> str | None:
    """Why a job cannot write into `directory` (creating it if needed), or None."""
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return (f"{existing} is a file, not a directory" if existing == directory else
                f"cannot be created: {existing} is a file")
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    what = "is" if existing == directory else f"cannot be created: {existing} is"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{what} on a read-only filesystem; use a writable directory"
    return f"{what} not writable by this user; use a writable directory"


def resume_problem(directory: Path) -> str | None:
    """Why resuming from `directory` would fail, as resume itself would judge it."""
    problem = loadable_problem(directory)
    if problem or not directory.joinpath("ft-complete.json").is_file():
        return problem
    # Imported here: trainer/checkpoint/resume.py is torch-free but outside the contract.
    from trainer.checkpoint.resume import checkpoint_problem

    problem = checkpoint_problem(directory)
    return f"is damaged: {problem}" if problem else None


def local_problems(t: TrainingConfig, source: str, base: Path | None = None) -> list[Problem]:
    """local_file_problems located in the spec file (for a job that runs on this machine)."""
    try:
        _, lines = load_yaml_with_lines(Path(source).read_text(), source)
    except OSError:
        lines = {}
    return [Problem(format_path(path), message, line_of(lines, path))
            for path, message in local_file_problems(t, base or Path.cwd(),
                                                     Path(source).parent)]


def require_local_files(spec) -> None:
    """For a command that runs the job here (`ft train`, `ft node`)."""
    problems = local_problems(spec.training, spec.source)
    if problems:
        raise SpecError(problems, spec.source)


def local_launch_problems(spec) -> list[Problem]:
    """What `ft launch --backend local` needs here: the job's paths, and a GPU of this machine
    for each GPU of each emulated node (they split this machine's GPUs between them)."""
    problems = local_problems(spec.training, spec.source)
    launch = spec.launch
    needed = launch.nodes * launch.gpus_per_node
    have, counted = visible_gpus()
    if needed > have:
        path = ("launch", "gpus_per_node")
        try:
            _, lines = load_yaml_with_lines(Path(spec.source).read_text(), spec.source)
        except OSError:
            lines = {}
        problems.append(Problem(format_path(path), (
            f"{launch.nodes} node(s) x {launch.gpus_per_node} GPU(s) need {needed} GPUs of this "
            f"machine, which has {have} ({counted}); lower `launch.gpus_per_node` or "
            "`--nodes`, or set `gpus_per_node: 0` for a CPU run"), line_of(lines, path)))
    return problems


def require_local_launch(spec) -> None:
    problems = local_launch_problems(spec)
    if problems:
        raise SpecError(problems, spec.source)


def visible_gpus(environ=os.environ, dev: Path = Path("/dev")) -> tuple[int, str]:
    """(how many NVIDIA GPUs this process may use, where that count comes from), without
    torch: CUDA_VISIBLE_DEVICES when set, else the /dev/nvidiaN device files (a container
    gets only those of its own GPUs), else `nvidia-smi -L` where it exists (WSL has no
    /dev/nvidiaN)."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()]), \
            f"CUDA_VISIBLE_DEVICES={visible}"
    count = len([p for p in dev.glob("nvidia*") if p.name.removeprefix("nvidia").isdigit()])
    if count or not shutil.which("nvidia-smi"):
        return count, f"/dev/nvidia0.. {'found' if count else 'not found'}"
    from orchestrator.process import run_cmd

    listed = run_cmd(["nvidia-smi", "-L"])
    count = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    return count, "nvidia-smi -L"


def chat_template_problems(t: TrainingConfig) -> Iterator[Rule]:
    if t.chat_template:
        problem = choice_problem(t.chat_template)
        if problem:
            yield ("chat_template",), problem
    for key, value in jinja_settings(t):
        problem = jinja_problem(value)
        if problem:
            yield key, problem
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
    # A fallback name renders its named template when the tokenizer has none.
    named = [fallback_target(n) or n if not tokenizer.template else n for n in chat_sets]
    for name in dict.fromkeys(n for n in named if n in FAMILIES):
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
        if not self.vocab:
            return []  # unknown vocabulary
        return [token for token in FAMILIES[name].closing if token not in self.vocab]


def _vocabulary(path: Path) -> set[str]:
    """Token strings of a fast tokenizer's tokenizer.json (empty when there is none)."""
    if not path.is_file():
        return set()
    data = json.loads(path.read_text())
    vocab = data.get("model", {}).get("vocab") or {}
    tokens = set(vocab) if isinstance(vocab, dict) else {str(v[0]) for v in vocab}
    return tokens | {entry["content"] for entry in data.get("added_tokens", [])}
