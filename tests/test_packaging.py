"""The wheel must carry every Python package and the templates/clusters data.

A package missing from setup.py's list works in the checkout (tests import the source) and
breaks only for users who pip install: this catches it without building a wheel.
"""

import re
import runpy
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_for_the_wheel():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    setup_py = runpy.run_path(str(REPO / "setup.py"), run_name="ft_setup")
    listed = set(setup_py["packages"]())
    on_disk = {str(init.parent.relative_to(REPO)).replace("/", ".")
               for top in ("orchestrator", "trainer") for init in (REPO / top).rglob("__init__.py")}
    assert on_disk <= listed, f"not found by setup.py: {sorted(on_disk - listed)}"
    assert set(config["package-data"]) <= listed, "package data of a package not shipped"
    for package, directory in config["package-dir"].items():
        assert package in listed and (REPO / directory).is_dir()
        patterns = config["package-data"][package]
        assert any(any((REPO / directory).glob(p)) for p in patterns), package


def test_the_shipped_build_copies_what_setup_py_walks():
    """`ft launch` builds the wheel from a copy of the tree (orchestrator/shipping/wheel.py):
    it must copy every package root that setup.py discovers packages under."""
    from orchestrator.shipping.wheel import IMPORT_PACKAGES

    setup_py = runpy.run_path(str(REPO / "setup.py"), run_name="ft_setup")
    assert tuple(setup_py["IMPORT_PACKAGES"]) == IMPORT_PACKAGES


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_base_install_is_the_cli_and_the_extras_add_the_rest():
    """`pip install ft-finetune` stays torch-free and modal-free; [train] holds every module `ft
    train` checks for; [modal] is Modal's client; [test] pulls [train], [deepspeed] and
    [modal] through a self-reference."""
    from orchestrator.train_stack import TRAIN_MODULES

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    base = _names(project["dependencies"])
    assert not base & (set(TRAIN_MODULES) | {"bitsandbytes", "deepspeed", "submitit", "modal"})
    assert set(TRAIN_MODULES) <= _names(extras["train"])
    assert _names(extras["modal"]) == {"modal"}
    (self_reference,) = [req for req in extras["test"] if _names([req]) == {project["name"]}]
    assert {"train", "deepspeed", "modal"} <= set(
        re.search(r"\[(.*)\]", self_reference)[1].split(","))


def test_distribution_name_is_ours_everywhere():
    """`ft` on the package index is someone else's project: pyproject, the version lookup,
    the install hints, the README and docs/ all use the one name in orchestrator.DISTRIBUTION."""
    from orchestrator import DISTRIBUTION
    from orchestrator.train_stack import INSTALL_HINT

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "ft"
    assert project["scripts"]["ft"] == "orchestrator.cli:main"
    assert f"'{DISTRIBUTION}[train]'" in INSTALL_HINT
    readme = (REPO / "README.md").read_text()
    assert f"the distribution is `{DISTRIBUTION}`" in readme
    for page in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        text = page.read_text()
        assert "'ft[" not in text and "ft[train]" not in text.replace(f"{DISTRIBUTION}[", ""), page


def test_readme_test_row_and_command_match_pyproject_and_ci() -> None:
    """The README's `[test]` row names every tool the extra adds, and its test command is
    the one CI runs verbatim (`-n auto` needs pytest-xdist, which the extra pulls)."""
    readme = (REPO / "README.md").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    tools = [re.split(r"[<>=\[ ]", req)[0] for req in extras["test"] if "[" not in req]
    row = next(line for line in readme.splitlines() if line.startswith("| `pip install '.[test]'`"))
    assert all(tool in row for tool in tools), (tools, row)
    command = re.search(r"Run the tests:\n\n```bash\n(.+)\n```", readme).group(1)
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci_lines and "pytest-xdist" in tools
