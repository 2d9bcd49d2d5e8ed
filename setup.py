"""The wheel's package list, found instead of written by hand; the rest is pyproject.toml.

Discovery walks the two import packages (namespace packages too, so the data-only
trainer/deepspeed_configs ships). The packages that pyproject's package-dir maps from the
top-level templates/, clusters/ and examples/ lie outside them, where no discovery looks
(`[tool.setuptools.packages.find]` alone builds a wheel without them), so they are taken
from that mapping.
"""

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

# orchestrator/shipping/wheel.py copies these (and the mapped directories) to build from.
IMPORT_PACKAGES = ("orchestrator", "trainer")


def packages() -> list[str]:
    root = Path(__file__).resolve().parent
    mapped = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    found = find_namespace_packages(str(root), include=[f"{name}*" for name in IMPORT_PACKAGES])
    return sorted(found) + sorted(mapped)


if __name__ == "__main__":  # the build backend runs this file as __main__
    setup(packages=packages())
