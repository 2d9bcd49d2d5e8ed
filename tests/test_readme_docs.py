"""The README is a short front page and docs/ holds the rest: each claim the front page makes
about itself is checked here (its length, its first lines, its links, the command table, the
quick start, the spec), and every test or repository file a page cites must exist, so a
renamed test or a moved module fails here instead of leaving a page that points nowhere.
The pages' other claims are checked by the tests next to the code they describe
(tests/test_readme_*.py and the tests named in each page's tables)."""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys

import yaml

from orchestrator.backends import get
from orchestrator.spec.load import parse_spec
from tests.cli_runner import REPO, run_ft

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 205  # issue 22 added the speed table (8 lines)
BACKENDS = ("dstack", "skypilot", "slurm", "modal")
# Paths a page names that a checkout does not hold until a command has built them.
BUILT = {"examples/tiny/model"}
TOP_LEVEL = ("orchestrator", "trainer", "bench", "tests", "examples", "clusters", "templates")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def _bash_blocks(text: str) -> list[list[str]]:
    return [block.strip().splitlines() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_the_readme_is_a_short_front_page_that_says_what_ft_is_first():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, len(lines)
    first_paragraph = " ".join(lines[2:lines.index("", 2)])
    assert first_paragraph.startswith("`ft` fine-tunes a language model from one training spec")
    # Then the two commands a newcomer needs on a fresh clone: install, then the tests.
    install, tests = _bash_blocks(README.read_text())[:2]
    assert install == ["python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && "
                       ".venv/bin/pip install '.[test]'"]
    assert tests[0] in (REPO / ".ci" / "run").read_text().splitlines()


def test_every_docs_page_is_linked_from_the_readme():
    readme = README.read_text()
    for page in DOCS:
        assert f"](docs/{page.name})" in readme, page.name


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not ours to check offline
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and resolved.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)
                if anchor not in map(_slug, headings):
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def _defined(file: str) -> set[str]:
    tree = ast.parse((REPO / "tests" / file).read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_a_page_cites_exists():
    """`test_x.py`, `test_x.py::name`, and `::name` for the file cited before it on the line."""
    missing = []
    for page in PAGES:
        for line in page.read_text().splitlines():
            current = None
            for token in re.findall(r"`([^`]+)`", line):
                cited = re.fullmatch(r"(?:tests/)?(test_\w+\.py)(?:::(\w+))?", token)
                same_file = re.fullmatch(r"::(\w+)", token)
                if cited:
                    current, name = cited.groups()
                elif same_file and current:
                    name = same_file.group(1)
                else:
                    continue
                if not (REPO / "tests" / current).is_file():
                    missing.append(f"{page.name}: tests/{current}")
                elif name and name not in _defined(current):
                    missing.append(f"{page.name}: {current}::{name}")
    assert not missing, missing


def test_every_repository_path_and_module_a_page_names_exists():
    """A moved file, folder or module must take its pages along (prose, tables and code
    blocks alike: the layout block of docs/design.md names folders too)."""
    top = "|".join(TOP_LEVEL)
    missing = []
    for page in PAGES:
        text = page.read_text()
        for path in re.findall(rf"(?<![\w./~-])(?:{top})/[\w./-]*[\w/]", text):
            if path.rstrip("/") not in BUILT and not (REPO / path).exists():
                missing.append(f"{page.name}: {path}")
        for dotted in re.findall(r"`((?:orchestrator|trainer)(?:\.\w+)+)`", text):
            if not _importable(dotted):
                missing.append(f"{page.name}: {dotted}")
    assert not missing, missing


def _importable(dotted: str) -> bool:
    """The longest importable module prefix, then attributes for the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_the_command_table_is_every_command_and_only_those():
    from orchestrator.cli import app

    registered = {command.name or command.callback.__name__ for command in
                  app.registered_commands}
    table = _section(README.read_text(), "The commands")
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `ft")]
    listed = {name for cell in first_cells for name in re.findall(r"`ft ([a-z][\w-]*)", cell)}
    assert listed == registered, (listed ^ registered)
    assert any(cell.strip().startswith("`ft --version`") for cell in first_cells)


def test_the_quick_start_runs_as_written(tmp_path):
    """Each line, in order, in a copy of the checkout's example: the model is built, the
    spec validates ready for `--backend local`, the launch is shown by `--dry-run` (training
    that example on two emulated nodes is tests/test_local_multinode.py's), and what a
    cluster would get renders. `.venv/bin/` is this interpreter's environment."""
    shutil.copytree(REPO / "examples" / "tiny", tmp_path / "examples" / "tiny",
                    ignore=shutil.ignore_patterns("model"))
    local, cluster = _bash_blocks(_section(README.read_text(), "Quick start"))
    assert local[0] == ".venv/bin/python -m trainer.models.tiny examples/tiny/model"
    built = subprocess.run([sys.executable, *local[0].split()[1:]], cwd=tmp_path,
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert built.returncode == 0, built.stderr
    for line in local[1:] + cluster:
        program, command, *args = line.split()
        assert program == ".venv/bin/ft", line
        if command == "launch" and "--dry-run" not in args:
            args.append("--dry-run")
        result = run_ft(command, *args, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr)
        if command == "validate":
            assert "--backend local: ready" in result.stdout, result.stdout + result.stderr


def test_the_readme_spec_validates_and_renders_on_every_backend(tmp_path):
    (block,) = re.findall(r"```yaml\n(.*?)```", _section(README.read_text(), "A spec"), re.S)
    data = yaml.safe_load(block)
    assert data["launch"]["nodes"] == 2 and data["launch"]["gpus_per_node"] == 8
    (tmp_path / "spec.yaml").write_text(block)
    validated = run_ft("validate", "spec.yaml", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    spec = parse_spec(block, "README.md", for_launch=True)
    for backend in BACKENDS:
        assert f"--backend {backend}: ready" in validated.stdout, validated.stdout
        assert get(backend).render(spec).files, backend
    # Its comment: on Slurm, where nothing is mounted, a note says every node must mount it.
    assert any("every node mounts" in note for note in get("slurm").render(spec).notes)


def test_a_page_has_one_title():
    for page in PAGES:
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        titles = [line for line in prose.splitlines() if line.startswith("# ")]
        assert len(titles) == 1, (page.name, titles)


def test_the_rank_table_is_each_backends_node_variables():
    """docs/backends.md's table of each backend's variables is the contract `ft node` reads:
    each row names the variables of that backend's `node_vars` (tests/test_node_world.py
    maps every row to a World)."""
    page = (REPO / "docs" / "backends.md").read_text()
    table = _section(page, "How a job starts on each node")
    rows = {row.split("|")[1].strip().lower(): row.split("|")[2:6]
            for row in table.splitlines() if row.startswith("| ") and "`" in row}
    assert set(rows) == set(BACKENDS)
    for backend, cells in rows.items():
        names = get(backend).node_vars
        variables = (names.master, names.rank, names.nnodes, names.nproc)
        for cell, variable in zip(cells, variables, strict=True):
            assert re.search(rf"[`$]{variable}\b", cell), (backend, variable, cell)
