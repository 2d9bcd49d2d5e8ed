"""The base install (`pip install ft-finetune`, no extra) is the CLI a laptop or CI needs: it
validates and renders every example for every backend without torch, and the commands
that need the training stack say how to get it (exit 2, no traceback).

A real install, not an import trick: the wheel built from this tree goes into a fresh venv
(its dependencies from the package index, through pip's cache) and `ft` runs from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from orchestrator.shipping.wheel import build_wheel
from tests.specs import BACKENDS, REPO, example_id, example_specs, renders

INSTALL_HINT = "pip install 'ft-finetune[train]'"
# The venv must see only what it installed: no checkout on PYTHONPATH, no other venv.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def base_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding ft's base install and nothing else."""
    root = tmp_path_factory.mktemp("base-install")
    # The same build `ft launch` ships to the nodes (orchestrator.shipping.wheel).
    wheel = build_wheel(root / "wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--prefer-binary",
         "--disable-pip-version-check", str(wheel)], capture_output=True, text=True,
        env=CLEAN_ENV)
    assert install.returncode == 0, install.stdout + install.stderr
    return venv / "bin"


def _ft(bin_dir: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "ft"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=CLEAN_ENV)


def test_base_install_has_no_torch(base_bin):
    for module in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets"):
        probe = subprocess.run([str(base_bin / "python"), "-c", f"import {module}"],
                               capture_output=True, text=True, env=CLEAN_ENV)
        assert probe.returncode != 0, f"the base install pulled {module}"
        assert "ModuleNotFoundError" in probe.stderr


@pytest.mark.parametrize("spec", example_specs(), ids=example_id)
def test_base_install_validates_and_renders_every_example(base_bin, spec):
    """From the installed wheel (its own templates and profiles), each validates cleanly and
    each render is byte-identical to the checkout's golden files."""
    validated = _ft(base_bin, "validate", spec)
    assert validated.returncode == 0, validated.stderr
    assert "warning:" not in validated.stderr, "a shipped example must not warn about itself"
    for backend in filter(lambda name: renders(spec, name), BACKENDS):
        golden = REPO / "tests" / "golden" / backend / example_id(spec)
        rendered = _ft(base_bin, "render", spec, "--backend", backend, "-o", str(golden),
                       "--check")
        assert rendered.returncode == 0, f"{backend}: {rendered.stdout}{rendered.stderr}"
        assert rendered.stdout.startswith("up to date: "), rendered.stdout


@pytest.mark.parametrize("command", [["train"], ["preprocess"], ["merge-lora"],
                                     ["inference", "--prompt", "hi"], ["doctor"],
                                     ["launch", "--backend", "local"]],
                         ids=["train", "preprocess", "merge-lora", "inference", "doctor",
                              "launch-local"])
def test_training_commands_ask_for_the_train_extra(base_bin, command):
    result = _ft(base_bin, *command, "examples/tiny/tiny.yaml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert INSTALL_HINT in result.stderr and "torch" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_example_asks_for_the_train_extra_and_writes_nothing(base_bin, tmp_path):
    result = _ft(base_bin, "init", "--example", "tiny", "tiny", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert INSTALL_HINT in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tiny").exists()


def test_base_install_starter_spec_validates_cleanly(base_bin, tmp_path):
    assert _ft(base_bin, "init", cwd=tmp_path).returncode == 0
    validated = _ft(base_bin, "validate", "ft.yaml", cwd=tmp_path)
    assert validated.returncode == 0 and "warning:" not in validated.stderr, validated.stderr


def test_wheel_ships_the_tiny_example(base_bin, tmp_path):
    """Installed, the example's files come from site-packages, the same ones as here."""
    from trainer.torch_free.example_files import example_files

    probe = subprocess.run(
        [str(base_bin / "python"), "-c", "from trainer.torch_free.example_files import "
         "example_dir, example_files as f; print(example_dir('tiny')); print(*f('tiny'))"],
        cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV)
    assert probe.returncode == 0, probe.stderr
    where, files = probe.stdout.splitlines()
    assert "site-packages" in where
    assert files.split() == [str(path) for path in example_files("tiny")]


LIGHT_COMMANDS = {
    "help": ["--help"],
    "schema": ["schema"],
    "launch-dry-run-slurm": ["launch", "examples/tiny/tiny.yaml", "--backend", "slurm",
                             "--dry-run"],
    "launch-dry-run-dstack": ["launch", "examples/tiny/tiny.yaml", "--backend", "dstack",
                              "--dry-run"],
    "node-dry-run": ["node", "examples/tiny/tiny.yaml", "--backend", "dstack", "--dry-run"],
    "list": ["list"],
}


@pytest.mark.parametrize("args", LIGHT_COMMANDS.values(), ids=LIGHT_COMMANDS.keys())
def test_launcher_side_commands_run_without_torch(base_bin, tmp_path, args):
    """What a laptop or a node runs before training: the CLI side works on the base install."""
    env = {**CLEAN_ENV, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "DSTACK_MASTER_NODE_IP": "10.0.0.5", "DSTACK_NODE_RANK": "0",
           "DSTACK_NODES_NUM": "1", "DSTACK_GPUS_PER_NODE": "1"}
    result = subprocess.run([str(base_bin / "ft"), *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def _wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()
                if not name.endswith("/RECORD")}


def test_an_installed_ft_ships_the_wheel_it_was_installed_from(base_bin, tmp_path):
    """No source tree: `ft launch` from a pip-installed ft packs the installed files back
    into a wheel, and the node installer installs that wheel offline."""
    packed = subprocess.run(
        [str(base_bin / "python"), "-c", "import sys; from pathlib import Path; from "
         "orchestrator.shipping.wheel import build_wheel; print(build_wheel(Path(sys.argv[1])))",
         str(tmp_path / "wheels")], cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV)
    assert packed.returncode == 0, packed.stderr
    repacked = Path(packed.stdout.strip())
    (original,) = (base_bin.parent.parent / "wheel").glob("*.whl")
    assert repacked.name == original.name
    assert _wheel_files(repacked) == _wheel_files(original)

    installer = base_bin.parent / "lib"  # the installed copy of the node installer
    (script,) = installer.glob("python3*/site-packages/orchestrator/shipping/install_ft.py")
    env = {**CLEAN_ENV, "PIP_NO_INDEX": "1", "FT_NODE_CACHE": str(tmp_path / "cache")}
    ran = subprocess.run([str(base_bin / "python"), str(script), str(tmp_path / "wheels"),
                          f"ft-finetune=={_checkout_version()}", "--", "python", "-c",
                          "import orchestrator; print(orchestrator.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"installed {repacked.name}" in ran.stderr
    # The command after `--` ran from the environment the installer made (first on PATH),
    # which uses this environment's packages as they are instead of installing its own.
    assert ran.stdout.startswith(str(tmp_path / "cache")), ran.stdout
    assert not list((tmp_path / "cache").glob("*/lib/python3*/site-packages/jinja2"))


def _checkout_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
