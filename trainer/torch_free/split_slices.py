"""`datasets[i].split` in the datasets library's slicing syntax, checked without it.

`train`, `train[:20%]`, `train[10:100]`, `train[-10%:]`, `train[:50%](pct1_dropremainder)`
and sums of such parts (`train[:10]+train[-10:]`) are what `datasets.load_dataset(split=...)`
reads. Validation (orchestrator) has no `datasets` installed, so the grammar is restated here
and kept equal to the library's by tests/test_data_order_and_dedup.py (the same strings
validated here and sliced by the library); the loader
(trainer/data/loading.py) passes the string itself to the library.
"""

from __future__ import annotations

import re

_PART = re.compile(r"""
    ^(?P<name>\w+(?:\.\w+)*)
    (?:\[(?P<start>-?[\d_]+%?)?:(?P<stop>-?[\d_]+%?)?\])?
    (?:\((?P<rounding>[^)]*)\))?$""", re.X)
_ROUNDINGS = ("closest", "pct1_dropremainder")
EXAMPLES = "`train`, `train[:20%]`, `train[10:100]`, `train[-10%:]`"


def split_names(split: str) -> list[str]:
    """The split name of each part; ValueError saying what is wrong and what is allowed."""
    names = []
    for text in re.split(r"\s*\+\s*", split.strip()):
        match = _PART.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a split: write a name with an optional "
                             f"[start:stop] slice in rows or percent, e.g. {EXAMPLES}")
        _check_bounds(text, match)
        names.append(match["name"])
    return names


def _check_bounds(text: str, match: re.Match) -> None:
    bounds = [b for b in (match["start"], match["stop"]) if b is not None]
    percent = [b.endswith("%") for b in bounds]
    if any(percent) and not all(percent):
        raise ValueError(f"{text!r} mixes percent and row bounds; use one unit, "
                         "e.g. `train[10%:50%]` or `train[10:50]`")
    if any(percent) and any(abs(int(b[:-1])) > 100 for b in bounds):
        raise ValueError(f"{text!r}: percent bounds lie between -100% and 100%")
    rounding = match["rounding"]
    if rounding is not None and (rounding not in _ROUNDINGS or not any(percent)):
        raise ValueError(f"{text!r}: a `(rounding)` suffix is `(closest)` or "
                         "`(pct1_dropremainder)`, after a percent slice only")


def split_name(split: str) -> str:
    """The one split a local file is read as (a local file holds a single split)."""
    names = set(split_names(split))
    if len(names) != 1:
        raise ValueError(f"a local file is one split, but {split!r} names "
                         f"{', '.join(sorted(names))}; slice one name, e.g. "
                         "`train[:10]+train[-10:]`")
    return names.pop()
