"""The shared code knows no backend by name: outside each backend's own package
(orchestrator/backends/<name>/) and the one registry (orchestrator/backends/__init__.py), no
identifier, string (docstrings included) or comment names a registered backend or the tool it
submits with. What is special about a backend lives in its package, so adding one touches
nothing else (tests/test_backend_protocol.py adds one)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from orchestrator import backends

REPO = Path(__file__).resolve().parent.parent
REGISTRY = (REPO / "orchestrator" / "backend_registry.py",
            REPO / "orchestrator" / "backends" / "__init__.py")
# Words common enough to name other things: the local backend runs here ("local" is also
# plain English); its package is still its own.
PLAIN_WORDS = {"local"}


def backend_words() -> set[str]:
    """Each registered backend's name and the program it submits with (sbatch, sky, ...)."""
    words = set()
    for name in backends.names():
        backend = backends.get(name)
        words.add(name)
        if backend.tool is not None:
            words.add(backend.tool.program)
    return words - PLAIN_WORDS


def _pattern(words: set[str]) -> re.Pattern[str]:
    # A word on its own or in an identifier (SLURM_JOB_ID, skypilot_tier), not inside a
    # longer word (multimodal, dstackai).
    return re.compile(r"(?<![A-Za-z])(" + "|".join(sorted(words)) + r")(?![A-Za-z])",
                      re.IGNORECASE)


def shared_files() -> list[Path]:
    own = {REPO / "orchestrator" / "backends" / name for name in backends.names()}
    files = []
    for path in sorted((REPO / "orchestrator").rglob("*.py")):
        if path in REGISTRY or any(own_dir in path.parents for own_dir in own):
            continue
        files.append(path)
    return files


def mentions(source: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """(line, text) of every identifier, string or comment that names a backend."""
    found = []
    for node in ast.walk(ast.parse(source)):
        texts = []
        if isinstance(node, ast.Name):
            texts = [node.id]
        elif isinstance(node, ast.Attribute):
            texts = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts = [node.name]
        elif isinstance(node, ast.arg) or isinstance(node, ast.keyword) and node.arg:
            texts = [node.arg]
        elif isinstance(node, ast.alias):
            texts = [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            texts = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts = [node.value]
        found += [(getattr(node, "lineno", 0), text) for text in texts if pattern.search(text)]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and pattern.search(token.string):
            found.append((token.start[0], token.string))
    return sorted(found)


def test_the_words_come_from_the_registry():
    words = backend_words()
    assert {"slurm", "sbatch", "dstack", "skypilot", "sky", "modal"} <= words
    assert mentions("x = 'SLURM_JOB_ID'  # and multimodal", _pattern(words)) == \
        [(1, "SLURM_JOB_ID")]
    assert mentions("def f():\n    '''dstackai/base is not dstack.'''", _pattern(words))


@pytest.mark.parametrize("path", shared_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_shared_modules_name_no_backend(path):
    found = mentions(path.read_text(), _pattern(backend_words()))
    assert not found, "\n".join(f"{path.relative_to(REPO)}:{line}: {text[:120]!r}"
                                for line, text in found) + (
        "\nMove what is special about a backend into orchestrator/backends/<name>/, or "
        "ask the backend (orchestrator.backends.base.Backend) or the registry.")
