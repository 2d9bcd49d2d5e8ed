"""The arrows of the layout point one way: orchestrator -> trainer.contract, never trainer ->
orchestrator; no torch anywhere under orchestrator/ (the base install has none); and the
orchestrator reaches the rest of the trainer only inside the commands that train."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets",
         "deepspeed", "liger_kernel")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def _python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _root(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", _python_files("trainer"), ids=lambda p: str(p.relative_to(REPO)))
def test_trainer_never_imports_the_orchestrator(path):
    assert all(_root(module) != "orchestrator" for module, _ in _imports(path))


@pytest.mark.parametrize("path", _python_files("trainer/contract"),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_the_contract_is_torch_free(path):
    for module, _ in _imports(path):
        assert _root(module) not in HEAVY, f"{path.name} imports {module}"
        assert _root(module) != "trainer" or module.startswith("trainer.contract")


@pytest.mark.parametrize("path", _python_files("orchestrator"),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_orchestrator_imports_no_torch_and_only_the_contract_at_module_level(path):
    for module, top_level in _imports(path):
        assert _root(module) not in HEAVY, f"{path.name} imports {module}"
        if _root(module) == "trainer" and top_level:
            assert module.startswith("trainer.contract"), (
                f"{path.name} imports {module} at module level; only trainer.contract may be "
                "imported there (the rest needs the [train] extra)")
