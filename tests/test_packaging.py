"""The wheel must carry every Python package and the templates/clusters data.

A package missing from pyproject's list works in the checkout (tests import the source) and
breaks only for users who pip install: this catches it without building a wheel.
"""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_for_the_wheel():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {str(init.parent.relative_to(REPO)).replace("/", ".")
               for top in ("orchestrator", "trainer") for init in (REPO / top).rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    for package, directory in config["package-dir"].items():
        assert package in listed and (REPO / directory).is_dir()
        patterns = config["package-data"][package]
        assert any(any((REPO / directory).glob(p)) for p in patterns), package
