"""Nodes a rank found at fault, left where the job's launch script reads them: a scheduler
script that requeues the job excludes those nodes (templates/, the script that exports
FT_NODE_EXITS).

FT_NODE_EXITS is the attempt's directory on the storage every node of the job shares
(the batch script exports it; the nodes record their exit codes there too). A finding is one
file per node, `bad-node-<node rank>`, holding why: several ranks on several nodes may name
the same node at once, and a file per node needs no lock. The node rank is the
scheduler's node id, which the script maps to the node's name. Without FT_NODE_EXITS (other
backends, a plain `ft train`) nothing is written: the finding is in the log alone.

Only a node that is known bad is named here: a rank that lost the store cannot tell whether
node 0 or its own link failed, and names nobody.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

NODE_EXITS_ENV = "FT_NODE_EXITS"
BAD_NODE_FILE = "bad-node-{node_rank}"


def record_bad_nodes(node_ranks: Iterable[int], why: str,
                     environ: Mapping[str, str] = os.environ) -> None:
    directory = environ.get(NODE_EXITS_ENV)
    if not directory:
        return
    for node_rank in node_ranks:
        path = Path(directory) / BAD_NODE_FILE.format(node_rank=int(node_rank))
        # Best effort: the job is ending either way, and the log says why.
        with contextlib.suppress(OSError):
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(why.rstrip() + "\n")
            tmp.replace(path)
