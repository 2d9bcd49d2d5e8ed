"""The table of docs/storage.md ("Checkpoint storage"): every row names the tests that prove
it, each of which exists, and the facts it quotes are the code's."""

from __future__ import annotations

import ast
import re

from orchestrator.backends.skypilot import storage as skypilot_storage
from tests.cli_runner import REPO

PAGE = (REPO / "docs" / "storage.md").read_text()
TABLE = re.search(r"<!-- storage:start -->(.*?)<!-- storage:end -->", PAGE, re.S).group(1)
ROWS = [line for line in TABLE.strip().splitlines()[2:]]


def _tests(row: str) -> list[tuple[str, str]]:
    """(file, test) of each `file.py::name` or `::name` (same file as the one before)."""
    cited, current = [], ""
    for file, name in re.findall(r"`([\w/]*\.py)?::(\w+)`", row.split("|")[-2]):
        current = file or current
        cited.append((current, name))
    return cited


def _defined(file: str) -> set[str]:
    tree = ast.parse((REPO / "tests" / file).read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_row_names_tests_that_exist():
    assert len(ROWS) == 7
    for row in ROWS:
        cited = _tests(row)
        assert cited, f"no test for: {row[:60]}"
        for file, name in cited:
            assert name in _defined(file), f"{file}::{name} (docs/storage.md)"


def test_the_quoted_skypilot_facts_are_the_codes():
    sky = next(row for row in ROWS if row.startswith("| SkyPilot |"))
    for scheme in skypilot_storage.STORES:
        assert scheme in sky
    for cloud in skypilot_storage.VOLUME_CLOUDS:
        assert f"`{cloud}`" in sky or f"cloud: {cloud}`" in sky
    modes = next(row for row in ROWS if row.startswith("| SkyPilot mount mode |"))
    assert f"up to {skypilot_storage.CACHED_VISIBILITY_WAIT_S} s" in modes
    assert f"`{skypilot_storage.VISIBILITY_WAIT}`" in modes
