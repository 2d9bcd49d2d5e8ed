"""The arrows point one way: the trainer (in the container) never imports the orchestrator;
what both sides share lives in trainer/contract."""

from __future__ import annotations

import ast

from tests.cli_runner import REPO


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_trainer_never_imports_the_orchestrator():
    offenders = [f"{path.relative_to(REPO)}: {name}"
                 for path in sorted((REPO / "trainer").rglob("*.py"))
                 for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
                 if name == "orchestrator" or name.startswith("orchestrator.")]
    assert not offenders, offenders
