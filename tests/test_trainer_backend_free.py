"""The trainer names no backend: not in code (identifiers, strings) nor in comments.

A backend owns all of itself (its package under orchestrator/backends/); what the trainer
needs from one reaches it through a neutral variable that `ft node` exports (FT_JOB_ID, the
launcher's RANK / WORLD_SIZE ...). A backend named in the trainer is how Modal came to have
no job id: the list of job-id variables lived here and nobody added the fifth.

Names are matched as words, so `multimodal` is not Modal while `SlurmOptions`,
`SLURM_JOB_ID` and `skypilot` are what they say.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from orchestrator import backends
from tests.cli_runner import REPO

TRAINER = REPO / "trainer"
# Every registered backend but `local` (an ordinary word, and no scheduler's name), and the
# tool each one submits with (sbatch, sky, ...).
NAMES = frozenset({name for name in backends.names() if name != "local"} |
                  {backends.get(name).tool.program for name in backends.render_names()})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _words(text: str) -> list[str]:
    """`SkyPilotOptions` -> sky, pilot, options; `FT_MODAL_JOB_ID` -> ft, modal, job, id."""
    return [word.lower() for word in _WORD.findall(text)]


def backends_named(text: str) -> set[str]:
    """The backend names in `text`, each as one word or two or three adjacent ones."""
    words = _words(text)
    joined = {"".join(words[i:i + n]) for n in (1, 2, 3) for i in range(len(words))}
    return joined & NAMES


def _identifiers_and_strings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:  # not `**kwargs`
            found.append((node.lineno, node.arg))
        elif isinstance(node, ast.alias):
            found.append((node.lineno, node.name))
            if node.asname:
                found.append((node.lineno, node.asname))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))  # docstrings included
    return found


def _comments(source: str) -> list[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(token.start[0], token.string) for token in tokens if token.type == tokenize.COMMENT]


def _trainer_files() -> list[Path]:
    return sorted(path for path in TRAINER.rglob("*") if path.is_file()
                  and "__pycache__" not in path.parts)


def test_the_matcher_finds_backend_names_as_words_only():
    assert backends_named("SlurmOptions SLURM_JOB_ID") == {"slurm"}
    assert backends_named("SkyPilot's SKYPILOT_TASK_ID") == {"skypilot", "sky"}
    assert backends_named("an sbatch script") == {"sbatch"}
    assert backends_named("a dstack run, DStack") == {"dstack"}
    assert backends_named("FT_MODAL_JOB_ID") == {"modal"}
    assert backends_named("MULTIMODAL templates, multimodal inputs, MODALITY") == set()


def test_no_trainer_module_names_a_backend_in_code_or_comments():
    named = []
    for path in _trainer_files():
        where = path.relative_to(REPO)
        if path.suffix != ".py":  # shipped data (DeepSpeed configs): the text as it is
            named += [f"{where}: {found}" for found in backends_named(path.read_text())]
            continue
        source = path.read_text()
        for line, text in [*_identifiers_and_strings(ast.parse(source)), *_comments(source)]:
            for offset, part in enumerate(text.splitlines()):  # a docstring line by line
                named += [f"{where}:{line + offset}: {found} in {part.strip()!r}"
                          for found in backends_named(part)]
    assert not named, ("the trainer names a backend; let `ft node` export what it needs "
                       "as an FT_* variable instead:\n" + "\n".join(named))
