"""A split expression (`train[:20%]`, `train[10:100]+test[-5:]`) applied to a dataset saved
with `save_to_disk`: `load_dataset` slices files itself, `load_from_disk` does not, so the
library's own `ReadInstruction` turns the expression into row ranges here (same rounding)."""

from __future__ import annotations

from typing import Any

from trainer.torch_free.split_slices import split_names


def slice_saved(loaded: Any, split: str) -> Any:
    """`loaded` is what `datasets.load_from_disk` returned (a Dataset is one split, named by
    whatever `split` says)."""
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({name: loaded for name in split_names(split)})
    instruction = datasets.ReadInstruction.from_spec(split)
    lengths = {name: len(ds) for name, ds in loaded.items()}
    pieces = [loaded[part.splitname].select(range(part.from_, part.to))
              for part in instruction.to_absolute(lengths)]
    return pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
