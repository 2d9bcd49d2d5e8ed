"""A local data file that cannot be read is named with its line and what is wrong there,
not a byte position inside the json builder's buffer (or nothing at all for an empty file)."""

from __future__ import annotations

import json

import pytest

from trainer.data.loading import DataSourceError, load_spec
from trainer.torch_free.training import DatasetSpec

GOOD = json.dumps({"instruction": "say hi", "output": "hi"})


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("rows.jsonl", f"{GOOD}\n{GOOD}\n\n" + '{"instruction": "x", "output": \n' + GOOD,
     "rows.jsonl:4: not valid JSON (Expecting value at column 32): "
     '{"instruction": "x", "output": '),
    ("empty.jsonl", "", "empty.jsonl is empty: it has no rows"),
    ("blank.jsonl", "\n\n", "blank.jsonl is empty: it has no rows"),
    ("list.json", f"{GOOD}\n[1, 2]\n", "list.json:2: a row must be a JSON object ({...}), "
     "not list: [1, 2]"),
])
def test_a_broken_json_file_is_named_with_its_line(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataSourceError) as caught:
        load_spec(DatasetSpec(path=str(path), type="alpaca"), "datasets[0]")
    assert str(caught.value) == f"datasets[0].path: {tmp_path}/{expected}"
