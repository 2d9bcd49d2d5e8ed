"""`ft init --example NAME [DIR]`: write a shipped example (spec + data) and build its model.

The shipped spec points at its own files the way Axolotl specs do, relative to where ft
runs: `./examples/tiny/...` from the repo root. Written elsewhere, that prefix becomes
DIR's path from the current directory, so `ft train DIR/tiny.yaml` works from here
(written into ./examples/tiny it reproduces the shipped spec byte for byte).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.output_files import write_atomic
from orchestrator.train_stack import require_train_stack
from trainer.torch_free.errors import UserError
from trainer.torch_free.example_files import example_dir, example_files

# Examples whose spec trains a model built here, not one from a hub.
_BUILT_MODEL = {"tiny": "model"}


def spec_prefix(directory: Path, cwd: Path) -> str:
    """How the spec names files in `directory`: relative to cwd when under it, else absolute."""
    target = directory.resolve()
    try:
        relative = target.relative_to(cwd.resolve())
    except ValueError:
        return f"{target.as_posix()}/"
    return "./" if relative == Path(".") else f"./{relative.as_posix()}/"


def example_text(name: str, relative: Path, prefix: str) -> str:
    """One file of the example; the spec gets its paths rewritten to `prefix`."""
    text = (example_dir(name) / relative).read_text(encoding="utf-8")
    if relative == Path(f"{name}.yaml"):
        text = text.replace(f"./examples/{name}/", prefix)
    return text


def init_example(name: str, directory: Path, force: bool = False,
                 cwd: Path | None = None) -> list[str]:
    """Write example `name` into `directory`; returns what was done, one line each.

    Everything is checked before anything is written, and the model (the slow part) is
    built first, so a failure leaves no spec pointing at a missing model.
    """
    files = example_files(name)
    model = _BUILT_MODEL.get(name)
    if model:
        require_train_stack(f"`ft init --example {name}` (it builds the model)")
    existing = [directory / f for f in files if (directory / f).exists()]
    if existing and not force:
        raise UserError(f"{', '.join(map(str, existing))} exist(s); pass --force to overwrite")
    done = []
    if model:
        done.append(_build_model(name, directory / model))
    prefix = spec_prefix(directory, cwd or Path.cwd())
    # The spec last: its presence means the example is complete.
    for relative in sorted(files, key=lambda f: f == Path(f"{name}.yaml")):
        write_atomic(directory / relative, example_text(name, relative, prefix))
        done.append(f"wrote {directory / relative}")
    spec = directory / f"{name}.yaml"
    done.append(f"from here: ft train {spec}  (or two emulated nodes: "
                f"ft launch {spec} --backend local --nodes 2)")
    return done


def _build_model(name: str, target: Path) -> str:
    # Imported here: the builder needs torch, which the base install lacks.
    from trainer.console.rank_logging import quiet_for_a_model_build
    from trainer.models.tiny import build_tiny_model, is_built

    quiet_for_a_model_build()
    existed = is_built(target)
    build_tiny_model(target)
    return f"{'kept the model already in' if existed else 'built the model in'} {target}"
