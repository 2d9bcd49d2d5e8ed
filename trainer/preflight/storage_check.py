"""Pre-flight storage check: every node sees what the others write under `output_dir`.

A multi-node `output_dir` must be storage every node shares: otherwise each node keeps its
own checkpoint shards, rank 0 never sees a whole checkpoint to mark complete
(trainer/checkpoint/save.py), and a restart starts again at step 0, which is found out hours
in, at the first save or the first restart. `ft validate` judges only what the spec says
(orchestrator/backends/storage.py); this asks the nodes themselves, before the model loads.

Each node's local rank 0 writes one small file (its node rank, host and this attempt's nonce)
in a scratch folder (trainer/preflight/scratch.py) and looks for every other node's, for up
to `launch.preflight.storage_window`: shared storage may show a new file late (NFS attribute
caching, a bucket mount's upload; a backend's longer wait for checkpoint shards counts).
Rank 0 must see every node's file and every node rank 0's;
a node that cannot see, or is not seen, is named with the fix. The files go again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from trainer.checkpoint.save import VISIBILITY_WAIT
from trainer.preflight.findings import Finding
from trainer.preflight.scratch import attempt_folder, gather, remove, sweep

CHECK = "storage"
POLL_S = 0.25
# The trainer does not know which backend started it; each backend's `ft validate` names
# its own way (orchestrator/backends/*/storage.py, docs/storage.md).
FIX = ("Put output_dir on storage every node mounts (docs/storage.md says what each backend "
       "offers); `ft validate --backend X` says what X needs.")


def check(context) -> list[Finding]:
    """Every rank calls it (runner.Context); the findings, one per node, on rank 0."""
    world = context.world
    window, window_text = visibility_window(context.settings)
    folder = attempt_folder(context.output_dir, "storage", world)
    writer = world.local_rank == 0  # one file per node: the node's storage is what counts
    host, error = socket.gethostname(), None
    if writer:
        sweep(folder)
        error = _write(folder, world.node_rank, host)
    nodes = {row[0]: row[1:] for row in gather((world.node_rank, host, error) if writer
                                               else None, world) if row is not None}
    readable = sorted(node for node, (_, failed) in nodes.items() if failed is None)
    look = _look(folder, readable, window) if writer and error is None else ([], 0.0)
    views = [row for row in gather((world.node_rank, *look) if writer else None, world)
             if row is not None]
    if writer:
        (folder / _name(world.node_rank)).unlink(missing_ok=True)
    gather(None, world)  # every node has looked before any removes the folder
    if writer:
        remove(folder)
    gather(None, world)  # and it is gone everywhere before a later phase writes beside it
    if not world.is_main:
        return []
    return judge({node: host for node, (host, _) in nodes.items()},
                 {node: failed for node, (_, failed) in nodes.items()},
                 {node: (set(seen), waited) for node, seen, waited in views},
                 str(context.output_dir), window_text)


def visibility_window(settings) -> tuple[float, str]:
    """(seconds, as said) a new file may take to show on another node: the spec's
    storage_window, or the backend's longer wait for checkpoint shards (`ft node` sets one
    for storage that uploads behind the writes, such as a cached bucket mount)."""
    backend = float(os.environ.get(VISIBILITY_WAIT) or 0)
    if backend > settings.storage_window_s():
        return backend, f"{backend:.0f}s ({VISIBILITY_WAIT})"
    return settings.storage_window_s(), settings.storage_window


def judge(hosts: dict[int, str], write_errors: dict[int, str | None],
          views: dict[int, tuple[set[int], float]], output_dir: str,
          window: str) -> list[Finding]:
    """One finding per node from what each wrote and saw (node -> (nodes seen, seconds))."""
    seen = {node: views.get(node, (set(), 0.0))[0] for node in hosts}
    findings = []
    for node in sorted(hosts):
        data = {"sees": sorted(seen[node]), "waited_s": round(views.get(node, ((), 0.0))[1], 2),
                "output_dir": output_dir}
        where = f"node {node} ({hosts[node]})"
        if write_errors.get(node):
            findings.append(Finding(CHECK, node, hosts[node], False,
                                    f"cannot write under {output_dir}: {write_errors[node]}. "
                                    "output_dir must be writable storage on every node", data))
            continue
        problem = _problem(node, hosts, write_errors, seen, output_dir, window)
        ok_detail = (f"sees the files of {len(seen[node])} of {len(hosts)} node(s) under "
                     f"{output_dir}" if node == 0 else
                     f"{where} and node 0 see each other's files under {output_dir}")
        findings.append(Finding(CHECK, node, hosts[node], problem is None,
                                problem or ok_detail, data))
    return findings


def _problem(node: int, hosts: dict[int, str], write_errors: dict[int, str | None],
             seen: dict[int, set[int]], output_dir: str, window: str) -> str | None:
    if node == 0:
        return _odd_one_out(hosts, write_errors, seen, output_dir)
    if write_errors.get(0):
        return None  # node 0 is named for that; nothing to compare with
    sees_zero, seen_by_zero = 0 in seen[node], node in seen[0]
    if sees_zero and seen_by_zero:
        return None
    zero = f"node 0 ({hosts[0]})"
    if not sees_zero and not seen_by_zero:
        return (f"cannot see files {zero} writes under {output_dir}, and node 0 cannot see "
                f"node {node}'s: output_dir is not shared. {FIX}")
    late = (f"{zero} cannot see the file node {node} wrote under {output_dir}, though node "
            f"{node} sees node 0's" if sees_zero else
            f"cannot see the file {zero} wrote under {output_dir}, though node 0 sees node "
            f"{node}'s")
    return (f"{late}, within {window}: files appear late or not at all. Raise "
            "`launch.preflight.storage_window` for storage that shows new files late, or "
            f"share output_dir. {FIX}")


def _odd_one_out(hosts: dict[int, str], write_errors: dict[int, str | None],
                 seen: dict[int, set[int]], output_dir: str) -> str | None:
    """Node 0 is the one to name when it sees none of the others while they (two or more)
    see each other: its output_dir is not the storage the rest share."""
    others = [node for node in hosts if node != 0 and not write_errors.get(node)]
    if len(others) < 2 or seen[0] & set(others):
        return None
    if not all(set(others) <= seen[node] for node in others):
        return None
    names = ", ".join(str(node) for node in others)
    return (f"sees none of the files nodes {names} write under {output_dir}, which see each "
            f"other's: node 0's output_dir is not the storage the other nodes share. {FIX}")


def _name(node: int) -> str:
    return f"node-{node}.json"


def _write(folder: Path, node: int, host: str) -> str | None:
    """Write this node's file (complete before it appears: temporary name, then rename);
    the error, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{_name(node)}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"node_rank": node, "host": host, "attempt": folder.name}))
        tmp.replace(folder / _name(node))
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def _look(folder: Path, nodes: list[int], window_s: float) -> tuple[list[int], float]:
    """(the nodes whose file of this attempt this node sees, seconds it waited), polling up
    to the window for the ones not seen yet."""
    start = time.monotonic()
    seen: set[int] = set()
    while True:
        seen |= {node for node in nodes if node not in seen and _is_ours(folder, node)}
        waited = time.monotonic() - start
        if len(seen) == len(nodes) or waited >= window_s:
            return sorted(seen), waited
        time.sleep(POLL_S)


def _is_ours(folder: Path, node: int) -> bool:
    """The file is there, complete, and this attempt's (not a leftover with another nonce)."""
    try:
        record = json.loads((folder / _name(node)).read_text())
    except (OSError, ValueError):
        return False
    return record.get("node_rank") == node and record.get("attempt") == folder.name
