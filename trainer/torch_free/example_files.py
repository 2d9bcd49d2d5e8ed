"""Where the shipped runnable examples live (today: `tiny`, the CPU example).

examples/ at the repo's top level is the source of truth; the wheel carries the tiny one
as package data of `trainer.examples` (pyproject's package-dir maps it), so `ft init
--example tiny` and the tiny model's tokenizer corpus work from an installed package in
any directory. In a checkout the files sit at the top level. Torch-free: the CLI reads it.
"""

from __future__ import annotations

from pathlib import Path

from trainer.torch_free.errors import UserError

_TRAINER_DIR = Path(__file__).resolve().parent.parent
# Installed: trainer/examples/<name>; checkout: <repo>/examples/<name>.
_ROOTS = (_TRAINER_DIR / "examples", _TRAINER_DIR.parent / "examples")
# The files an example consists of (a built model under examples/tiny/model is not one).
SHIPPED_PATTERNS = ("*.yaml", "corpus.txt", "data/*.jsonl")


def examples_root() -> Path:
    for root in _ROOTS:
        if root.is_dir():
            return root
    raise FileNotFoundError("ft's examples are missing from this installation")


def example_names() -> list[str]:
    return sorted(p.name for p in examples_root().iterdir() if (p / f"{p.name}.yaml").is_file())


def example_dir(name: str) -> Path:
    """The directory of example `name`, or a UserError listing the ones there are."""
    names = example_names()
    if name not in names:
        raise UserError(f"no example {name!r}; there is: {', '.join(names)}")
    return examples_root() / name


def example_files(name: str) -> list[Path]:
    """The example's files, relative to its directory, in a stable order."""
    base = example_dir(name)
    found = {p.relative_to(base) for pattern in SHIPPED_PATTERNS for p in base.glob(pattern)}
    return sorted(found)
