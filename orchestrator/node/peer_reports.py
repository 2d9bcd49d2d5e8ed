"""What the ranks' heartbeats (trainer/distributed/peer_watch.py) told ft node: a rank
waiting on a peer that stopped answering leaves a note in the stop-report directory, so that
a stop signal during that wait is not mistaken for a slow save.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainer.torch_free.liveness import PEER_LOST_REPORT, WAITING_REPORT


def waiting_on_peer(report_dir: str | Path) -> str | None:
    """A sentence about the silent peer the ranks are waiting on, or None."""
    for path in sorted(Path(report_dir).glob(WAITING_REPORT.format(rank="*"))):
        try:
            report = json.loads(path.read_text())
            finding, limit = report["finding"], report["peer_timeout_s"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced or removed right now: the next look sees it
        return (f"the ranks are waiting on an unreachable peer, not saving: {finding}; no "
                "checkpoint can be written without it, and the job ends when it has been "
                f"silent for launch.timeouts.peer ({limit:.0f} s)")
    return None


def peer_lost(report_dir: str | Path) -> str | None:
    """What the first rank that ended the job on a lost or hung peer found, or None: `ft
    node` then exits PEER_LOST_EXIT_CODE, not torchrun's 1 for any failed worker."""
    for path in sorted(Path(report_dir).glob(PEER_LOST_REPORT.format(rank="*"))):
        try:
            report = json.loads(path.read_text())
            return f"rank {report['rank']} ended the job: {report['finding']}"
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None
