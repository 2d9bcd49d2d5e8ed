"""The arrows of the layout point one way: orchestrator -> trainer.torch_free, never trainer ->
orchestrator; no torch anywhere under orchestrator/ (the base install has none); and the
orchestrator reaches the rest of the trainer only inside the commands that train."""

from __future__ import annotations

import ast
import functools
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


@pytest.mark.parametrize("path", _python_files("trainer/torch_free"),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_the_contract_is_torch_free(path):
    for module, _ in _imports(path):
        assert _root(module) not in HEAVY, f"{path.name} imports {module}"
        assert _root(module) != "trainer" or module.startswith("trainer.torch_free")


@functools.cache
def _imported_names(path: Path) -> frozenset[str]:
    """Every module a file imports and every `module.name` it takes from one (parsed once)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def _readers(module: str, folder: str, outside: str | None = None) -> list[Path]:
    """Files under `folder` (not under `outside`) that import `module` or a name from it."""
    return [path for path in _python_files(folder)
            if not (outside and (REPO / outside) in path.parents)
            and module in _imported_names(path)]


@pytest.mark.parametrize("path", [p for p in _python_files("trainer/torch_free")
                                  if p.name != "__init__.py"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_the_contract_holds_only_what_both_sides_read(path):
    """A contract module that only one side reads belongs to that side. A module that only
    serves another contract module (a package's parts behind its front module) is read
    through that module."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    fronts = _contract_fronts(module)
    assert any(_readers(front, "orchestrator") for front in fronts), (
        f"no orchestrator module reads {module}")
    assert any(_readers(front, "trainer", outside="trainer/torch_free") for front in fronts), (
        f"no trainer module (outside the contract) reads {module}")


def _contract_fronts(module: str) -> set[str]:
    """The module and every contract module that reads it, directly or through others."""
    fronts, todo = {module}, [module]
    while todo:
        for path in _readers(todo.pop(), "trainer/torch_free"):
            reader = ".".join(path.relative_to(REPO).with_suffix("").parts)
            reader = reader.removesuffix(".__init__")
            if reader not in fronts:
                fronts.add(reader)
                todo.append(reader)
    return fronts


@pytest.mark.parametrize("path", _python_files("orchestrator"),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_orchestrator_imports_no_torch_and_only_the_contract_at_module_level(path):
    for module, top_level in _imports(path):
        assert _root(module) not in HEAVY, f"{path.name} imports {module}"
        if _root(module) == "trainer" and top_level:
            assert module.startswith("trainer.torch_free"), (
                f"{path.name} imports {module} at module level; only trainer.torch_free may be "
                "imported there (the rest needs the [train] extra)")


# ---- the orchestrator's own stack ---------------------------------------------------------
# Lowest first. A unit (a sub-package of orchestrator/, or a module at its top level) imports
# only units of LOWER layers: siblings of one layer know nothing of each other. Every import
# statement is an arrow, wherever it stands (inside a function, under TYPE_CHECKING): a lazy
# import that goes up is how a tangle hides; there is no exception. Not seen: the registry
# loading each backend package by name (importlib), which is how a backend stays one package
# plus one registry line. The same order is written out in orchestrator/__init__.py.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("orchestrator",),  # the package root: __version__ and DISTRIBUTION only
    ("process", "package_data", "output_files", "train_stack", "status_text",
     "backend_registry"),  # backend_registry: names and packages, plain data
    ("clusters", "templating"),  # read package_data
    ("spec",),
    ("shipping",),
    ("backends",),  # the protocol, the registry, what backends share, one package each
    ("jobs", "node", "readiness", "example_init"),
    ("cli",),
)
# Arrows against the order that another branch of the same change removes; each must still
# exist (so that the entry goes when its arrow does).
PENDING: dict[tuple[str, str], str] = {}


def _module_files() -> dict[str, Path]:
    found = {}
    for path in _python_files("orchestrator"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _module_files()


def _known(name: str) -> str | None:
    """The orchestrator module `name` is, or lies in (`a.b.Name` -> `a.b`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _arrows() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of orchestrator code."""
    arrows = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                # `from pkg import sub` is an arrow to the module pkg.sub, `from mod import
                # name` one to mod
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                known = _known(target) if _root(target) == "orchestrator" else None
                if known and known != module:
                    arrows.append((module, known, node.lineno))
    return arrows


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _layer(unit: str) -> int:
    name = unit if unit == "orchestrator" else unit.removeprefix("orchestrator.")
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(f"{unit} is in no layer of LAYERS (tests/test_layering.py): give it "
                         "one, and say so in orchestrator/__init__.py's docstring")


def test_every_unit_of_the_orchestrator_has_a_layer_and_the_docstring_names_it():
    import orchestrator

    units = {_unit(module) for module in MODULES}
    listed = {f"orchestrator.{name}" if name != "orchestrator" else name
              for layer in LAYERS for name in layer}
    assert units == listed, (sorted(units - listed), sorted(listed - units))
    for name in (name for layer in LAYERS[1:] for name in layer):
        assert f"`{name}`" in orchestrator.__doc__, f"orchestrator/__init__.py omits {name}"


def test_the_orchestrator_imports_only_down_its_stack():
    against = [(source, target, line) for source, target, line in _arrows()
               if _unit(source) != _unit(target)
               and _layer(_unit(target)) >= _layer(_unit(source))]
    unexplained = [f"{source}:{line} -> {target}" for source, target, line in against
                   if (source, target) not in PENDING]
    assert not unexplained, "arrows against orchestrator's order (LAYERS):\n" + "\n".join(
        unexplained)
    assert {(source, target) for source, target, _ in against} >= set(PENDING), (
        "a PENDING arrow is gone: delete its entry")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_orchestrator_modules():
    graph: dict[str, set[str]] = {}
    for source, target, _ in _arrows():
        graph.setdefault(source, set()).add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles (each: modules that reach each other):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles)
