"""Install the shipped ft wheel on this node, once: a requeued or restarted job reuses it.

Runs before ft exists on the node, so it uses the standard library only; the bundle carries
a copy as `.ft/<job>/install_ft.py` and the rendered job runs
`python3 .ft/<job>/install_ft.py WHEELS_DIR REQUIREMENT -- ft node ...`, which installs, puts
the environment's `bin` first on PATH and replaces itself with the command after `--` (so
signals reach `ft node` directly). Without a command it prints the `bin` directory.

- One environment per wheel hash in a node-local cache (FT_NODE_CACHE, default
  $TMPDIR/ft-node-cache): a new ft gets a new one, the same ft is never installed twice.
  A file lock serialises the job's processes on one node; a marker written last means
  "complete", so an install killed half-way is redone, never trusted.
- A venv without its own packages whose `.pth` points at this Python's site-packages: the
  image's torch, transformers, ... are used as they are (never reinstalled), ft goes into
  the venv, and nothing is written into the image's or the cluster's shared environment.
- Offline first (`--no-index --find-links`): a node with no index reachable installs as
  long as the environment has ft's dependencies; only missing ones are fetched.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

MARKER = ".ft-installed"
PIP = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check",
       "--no-warn-script-location"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help="directory holding the one shipped wheel")
    parser.add_argument("requirement", help="what to install, e.g. 'ft-finetune[train]==0.1.0'")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    wheels = sorted(args.wheels.glob("*.whl"))
    if len(wheels) != 1:
        return _fail(f"expected one wheel in {args.wheels}, found {len(wheels)}; submit the "
                     "job again with `ft launch` (it ships the wheel)")
    wheel = wheels[0]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("FT_NODE_CACHE") or Path(tempfile.gettempdir()) / "ft-node-cache")
    venv = cache / f"{wheel.name.split('-')[0]}-{digest}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / MARKER).is_file():
            _say(f"{wheel.name} (sha256 {digest}...) is already installed in {venv}; reusing it")
        else:
            code = _install(venv, wheel, args.wheels, args.requirement)
            if code:
                return code
            (venv / MARKER).write_text(f"{wheel.name} {digest}\n")
            _say(f"installed {wheel.name} (sha256 {digest}...) into {venv}")
    if not command:
        print(venv / "bin")
        return 0
    os.environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    os.execvp(command[0], command)  # never returns


def _install(venv: Path, wheel: Path, wheels: Path, requirement: str) -> int:
    shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a killed install
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    _see_this_environment(python)
    env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}
    # --force-reinstall: an ft of the same version in the base environment must not stand
    # in for the shipped wheel (pip leaves that copy alone: it is outside the venv).
    shipped = [python, *PIP, "--no-index", "--no-deps", "--force-reinstall", str(wheel)]
    if subprocess.run(shipped, env=env).returncode != 0:
        return _fail(f"pip could not install {wheel}")
    offline = [python, *PIP, "--no-index", "--find-links", str(wheels), requirement]
    if subprocess.run(offline, env=env, capture_output=True, text=True).returncode == 0:
        return 0
    _say("some of ft's dependencies are not in this environment; fetching them from the "
         "package index")
    online = [python, *PIP, "--find-links", str(wheels), requirement]
    if subprocess.run(online, env=env).returncode != 0:
        return _fail(f"could not install the dependencies of {requirement} (above); use an "
                     "image that has them, or let the nodes reach a package index")
    return 0


def _see_this_environment(python: str) -> None:
    """A .pth in the venv listing this interpreter's site-packages, after the venv's own."""
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], check=True, capture_output=True,
                             text=True).stdout.strip()
    paths = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    Path(purelib, "ft-base-environment.pth").write_text("".join(f"{p}\n" for p in paths))


def _say(message: str) -> None:
    print(f"ft install on {socket.gethostname()}: {message}", file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    _say(f"error: {message}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
