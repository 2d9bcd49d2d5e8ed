"""Two nodes preparing the same data into one cache directory at once.

On a cluster, local rank 0 of every node prepares the data, and containers give each of
them the same pid (often the same hostname too): a temporary directory named by pid was
shared by both writers, and both crashed. Here each writer runs in its own pid namespace,
so both really are pid 1 on the same host, as in containers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.cli_runner import REPO
from tests.train_helpers import write_tiny_spec

RACER = textwrap.dedent("""
    import json, os, socket, sys, time
    from pathlib import Path
    import datasets
    from trainer.data.cache import load_entry, publish, write_temporary

    entry, gate, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    rows = datasets.Dataset.from_dict({"input_ids": [[i, i + 1, i + 2] for i in range(500)]})
    tmp = write_temporary(entry, rows, None, {"rows": 500})
    (gate / name).write_text(tmp.name)
    while len(list(gate.iterdir())) < 2:  # both temporaries written: now both publish
        time.sleep(0.01)
    won = publish(tmp, entry)
    train, _, stats = load_entry(entry)
    print(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "tmp": tmp.name,
                      "won": won, "rows": len(train), "stats": stats}))
""")


def _own_pid_namespace_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--pid", "--fork", "true"],
                           capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not _own_pid_namespace_works(),
                                      reason="needs user+pid namespaces (unshare)")


def _as_pid_1(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs


@needs_namespaces
def test_two_pid_1_writers_racing_for_one_entry_both_succeed(tmp_path):
    entry, gate = tmp_path / "cache" / "abc123", tmp_path / "gate"
    entry.parent.mkdir()
    gate.mkdir()
    procs = [_as_pid_1(sys.executable, "-c", RACER, str(entry), str(gate), name)
             for name in ("node0", "node1")]
    results = [json.loads(out) for out in _finish(procs)]
    assert [r["pid"] for r in results] == [1, 1]  # what a pid-named temporary collided on
    assert results[0]["host"] == results[1]["host"]
    assert results[0]["tmp"] != results[1]["tmp"]
    assert sorted(r["won"] for r in results) == [False, True]  # one rename won, one accepted
    assert all(r["rows"] == 500 and r["stats"] == {"rows": 500} for r in results)
    assert [p.name for p in entry.parent.iterdir()] == ["abc123"], "a temporary was left"


@needs_namespaces
def test_two_nodes_preprocessing_into_one_cache_dir_leave_one_valid_entry(tmp_path,
                                                                         tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    procs = [_as_pid_1(sys.executable, "-m", "orchestrator.cli", "preprocess", str(spec))
             for _ in range(2)]
    stats = [json.loads(out) for out in _finish(procs)]
    assert stats[0]["cache_path"] == stats[1]["cache_path"]
    assert stats[0]["rows"] == stats[1]["rows"] > 0
    (entry,) = (tmp_path / "prepared").iterdir()
    assert not entry.name.startswith("."), "a temporary was left"
    again = subprocess.run([sys.executable, "-m", "orchestrator.cli", "preprocess", str(spec)],
                           capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert json.loads(again.stdout)["cache"] == "hit"
