"""Install the carried wheels (`.whl/`, see bench/README.md) that this machine lacks or has
in an older version, into /tmp/site (put it first on PYTHONPATH), then print the versions
the benchmark depends on. Offline: pip --no-index --no-deps from the carried files only.

    python3 bench/device_setup.py [--wheels .whl] [--target /tmp/site]
    PYTHONPATH=/tmp/site python3 bench/device_setup.py --wheels .axwhl --target /tmp/axsite \
        --only-missing     # Axolotl's own wheels, for the `axolotl` tool only

`--only-missing` installs only what the machine (with PYTHONPATH) lacks, as the Axolotl kit
did: its small extras (requests, six, dateutil ...) stay the image's own where it has them.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata as md
import os
import re
import subprocess
import sys

KEY_PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "pyarrow",
                "huggingface-hub", "tokenizers", "bitsandbytes", "pydantic", "typer",
                "flash-attn", "liger-kernel", "typing-extensions", "fsspec", "dill", "xxhash")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def older(have: str, want: str) -> bool:
    try:
        from packaging.version import Version

        return Version(have) < Version(want)
    except Exception:  # no packaging, or an odd version string: compare the numbers
        def nums(v: str) -> tuple[int, ...]:
            return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
        return nums(have) < nums(want)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheels", default=".whl")
    ap.add_argument("--target", default="/tmp/site")
    ap.add_argument("--only-missing", action="store_true",
                    help="install only wheels whose package is absent, never an upgrade")
    a = ap.parse_args()
    chosen = []
    for path in sorted(glob.glob(os.path.join(a.wheels, "*.whl"))):
        name, version = os.path.basename(path).split("-")[:2]
        have = installed(norm(name))
        if have is None or (older(have, version) and not a.only_missing):
            chosen.append(path)
            print(f"setup: install {name} {version} (machine has {have})", flush=True)
        else:
            print(f"setup: keep {name} {have} (carried {version})", flush=True)
    if chosen:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", a.target,
                        *chosen], check=True)
    sys.path.insert(0, a.target)
    md_paths = [a.target] + sys.path
    for pkg in KEY_PACKAGES:
        dists = list(md.distributions(name=pkg, path=md_paths)) or \
            list(md.distributions(name=pkg.replace("-", "_"), path=md_paths))
        print(f"version {pkg}: {dists[0].version if dists else None}", flush=True)


if __name__ == "__main__":
    main()
