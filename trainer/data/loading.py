"""`datasets[i]` -> a `datasets.Dataset`: local files/directories or a hub dataset.

Relative paths are relative to the current directory (as in Axolotl). A path that looks local
(it exists, starts with `.`/`/`/`~`, or ends with a data-file extension) never falls through
to the hub, so a typo is a clear "not found" instead of a network error.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from trainer.data.split_slices import slice_saved
from trainer.torch_free.data_paths import BUILDER_OF_EXT, missing_local_dataset
from trainer.torch_free.errors import UserError
from trainer.torch_free.split_slices import split_name
from trainer.torch_free.training import DatasetSpec

BUILDER_OF_DS_TYPE = {"json": "json", "jsonl": "json", "parquet": "parquet", "csv": "csv",
                      "arrow": "arrow", "text": "text"}


class DataSourceError(UserError, ValueError):
    """A dataset entry cannot be read; the message names `datasets[i].path`."""


def load_spec(spec: DatasetSpec, where: str) -> Any:
    """Load one dataset entry; `where` is its YAML path, e.g. `datasets[1]`."""
    local = Path(spec.path).expanduser()
    missing = missing_local_dataset(spec.path, Path.cwd())  # the rule validation applies
    if missing is not None:
        raise DataSourceError(f"{where}.path: {spec.path!r} not found "
                              f"(looked for {missing.resolve()})")
    ds = _load_local(spec, local, where) if local.exists() else _load_hub(spec, where)
    if spec.shards:
        ds = ds.shard(num_shards=spec.shards, index=0, contiguous=True)
    return ds


def _load_local(spec: DatasetSpec, path: Path, where: str) -> Any:
    import datasets

    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        return slice_saved(datasets.load_from_disk(str(path)), spec.split)
    files = _local_files(spec, path, where)
    builder = _builder(spec, files, where)
    try:  # the files are one split, named as `split` names it (slices and all)
        return datasets.load_dataset(builder, data_files={split_name(spec.split): files},
                                     split=spec.split)
    except Exception as exc:  # surface which entry failed; keep the cause chained
        problem = json_problem(files) if builder == "json" else None
        if problem:
            raise DataSourceError(f"{where}.path: {problem}") from exc
        reason = str(exc) or type(exc).__name__  # some builders raise without a message
        raise DataSourceError(f"{where}: cannot read {path} as {builder}: {reason}") from exc


def json_problem(files: list[str]) -> str | None:
    """The first file:line that is not JSON, said the way a person fixes it (the json
    builder reports a byte position in its internal buffer, or nothing for an empty file)."""
    for name in files:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(name, "rt", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        if not text.strip():
            return f"{name} is empty: it has no rows"
        if not name.endswith((".jsonl", ".jsonl.gz")):
            try:  # a .json file may hold one document (a list of rows) or JSON lines
                json.loads(text)
                continue
            except ValueError:
                pass
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                return (f"{name}:{number}: not valid JSON ({exc.msg} at column {exc.colno}): "
                        f"{_shorten(line)}")
            if not isinstance(row, dict):
                return (f"{name}:{number}: a row must be a JSON object ({{...}}), not "
                        f"{type(row).__name__}: {_shorten(line)}")
    return None


def _shorten(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[:limit] + "..."


def _local_files(spec: DatasetSpec, path: Path, where: str) -> list[str]:
    if path.is_file():
        return [str(path)]
    if spec.data_files:
        names = [spec.data_files] if isinstance(spec.data_files, str) else spec.data_files
        files = [path / name for name in names]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataSourceError(f"{where}.data_files: not found in {path}: {missing}")
    else:
        suffixes = _suffixes_for(spec.ds_type)
        files = sorted(f for f in path.rglob("*") if f.is_file() and _suffix(f) in suffixes)
        if not files:
            raise DataSourceError(f"{where}.path: no data files ({', '.join(sorted(suffixes))}) "
                                  f"in directory {path}")
    return [str(f) for f in files]


def _suffix(path: Path) -> str:
    suffixes = path.suffixes
    if suffixes[-1:] == [".gz"] and len(suffixes) >= 2:
        return suffixes[-2].lower()
    return path.suffix.lower()


def _suffixes_for(ds_type: str | None) -> set[str]:
    if ds_type is None:
        return set(BUILDER_OF_EXT)
    builder = BUILDER_OF_DS_TYPE[ds_type]
    return {ext for ext, b in BUILDER_OF_EXT.items() if b == builder}


def _builder(spec: DatasetSpec, files: list[str], where: str) -> str:
    if spec.ds_type:
        return BUILDER_OF_DS_TYPE[spec.ds_type]
    builders = {BUILDER_OF_EXT.get(_suffix(Path(f))) for f in files}
    if None in builders or len(builders) != 1:
        raise DataSourceError(f"{where}: cannot tell the file format of {files[:3]}; set "
                              f"`ds_type:` (json, parquet, csv, arrow, text)")
    return builders.pop()


def _load_hub(spec: DatasetSpec, where: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(spec.path, spec.name, split=spec.split,
                                     revision=spec.revision, data_files=spec.data_files)
    except Exception as exc:
        raise DataSourceError(f"{where}.path: cannot load {spec.path!r} from the Hugging Face "
                              f"hub (split {spec.split!r}): {exc}") from exc
