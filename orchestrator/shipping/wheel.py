"""The wheel of the exact ft that is running, for the job's nodes to install.

Two sources, because users run ft both ways:
- a source tree (a checkout, or an editable install of one): built with the build backend
  from a copy of what pyproject lists, so the build's `build/` and `*.egg-info` never land
  in the checkout, and without build isolation when setuptools is here (no index needed);
- an installed wheel (`pip install ft-finetune`): its files are packed back into a wheel
  from the installed distribution's RECORD, byte for byte what was installed.
SOURCE_DATE_EPOCH makes a rebuild of unchanged sources the same bytes, so nodes that cache
installs by the wheel's hash reuse them across submissions.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from orchestrator import DISTRIBUTION, __version__
from trainer.torch_free.errors import UserError

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
# ft's import packages: setup.py finds every package under them for the wheel.
IMPORT_PACKAGES = ("orchestrator", "trainer")
# Files of an installed distribution that describe that installation, not the wheel.
_INSTALL_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def wheel_name() -> str:
    """The file name pip gives ft's wheel (PEP 427: the name's dashes become underscores)."""
    return f"{DISTRIBUTION.replace('-', '_')}-{__version__}-py3-none-any.whl"


def build_wheel(dest: Path) -> Path:
    """Write ft's wheel into `dest` (created if needed) and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    if is_source_tree(_SOURCE_ROOT):
        return _build_from_source(_SOURCE_ROOT, dest)
    return _repack_installed(dest)


def is_source_tree(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return False
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    return project.get("name") == DISTRIBUTION


def _build_from_source(root: Path, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="ft-wheel-") as scratch:
        source = copy_build_sources(root, Path(scratch) / "src")
        out = Path(scratch) / "out"
        isolation = ["--no-build-isolation"] if _has_build_backend() else []
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
             "--disable-pip-version-check", "-w", str(out), str(source)],
            capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
        wheels = sorted(out.glob("*.whl"))
        if built.returncode != 0 or len(wheels) != 1:
            raise UserError(f"building ft's wheel from {root} failed, so the job cannot ship "
                            f"it:\n{built.stdout}{built.stderr}\nTo fix: `pip install "
                            "setuptools wheel` here, or set `launch.install.method: image` "
                            "with an image that has ft")
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def _has_build_backend() -> bool:
    """setuptools new enough for pyproject's build-system (>=69) is here: build with it
    rather than have pip fetch one into an isolated environment."""
    try:
        return int(metadata.version("setuptools").split(".")[0]) >= 69
    except (metadata.PackageNotFoundError, ValueError):
        return False


def copy_build_sources(root: Path, dest: Path) -> Path:
    """What the wheel is built from: the import packages that setup.py walks for its
    package list, and the top-level directories pyproject's package-dir maps into them."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    tops = set(IMPORT_PACKAGES) | {Path(directory).parts[0]
                                   for directory in config["package-dir"].values()}
    for top in sorted(tops):
        # examples/tiny/model is built locally, never shipped (pyproject's package data).
        shutil.copytree(root / top, dest / top,
                        ignore=shutil.ignore_patterns("__pycache__", "model", "outputs"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(root / name, dest / name)
    return dest


def _repack_installed(dest: Path) -> Path:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise UserError(f"ft runs from {_SOURCE_ROOT}, which is neither a source tree nor an "
                        f"installed {DISTRIBUTION}, so it cannot ship itself; install it "
                        "(`pip install .`) or set `launch.install.method: image`") from None
    packed = [path for path in dist.files or () if _belongs_in_wheel(path)]
    metadata_files = [path for path in packed if path.name == "WHEEL"]
    if not metadata_files:
        raise UserError(f"the installed {DISTRIBUTION} has no wheel metadata to repack (an "
                        "editable install of a moved checkout?); reinstall it with "
                        "`pip install .`")
    target = dest / wheel_name()
    record_rows = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted(packed, key=str):
            data = path.locate().read_bytes()
            wheel.writestr(_entry(str(path)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record_rows.append((str(path), f"sha256={digest.decode()}", str(len(data))))
        record = f"{metadata_files[0].parent}/RECORD"
        record_rows.append((record, "", ""))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(record_rows)
        wheel.writestr(_entry(record), text.getvalue())
    return target


def _belongs_in_wheel(path: metadata.PackagePath) -> bool:
    # Outside site-packages (`../../bin/ft`): console scripts pip writes from entry_points.
    return (not str(path).startswith("..") and path.suffix != ".pyc"
            and path.name not in _INSTALL_ONLY)


def _entry(name: str) -> zipfile.ZipInfo:
    """A fixed timestamp: the same installed files always give the same wheel bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
