"""What the pre-flight says: a verdict line per node, a summary table on rank 0, one
`FT_PREFLIGHT_JSON {...}` line (the job's log carries the record even where output_dir is
not collected), and preflight.json under output_dir."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.preflight.findings import Finding
from trainer.preflight.placement import Place, nodes_of
from trainer.torch_free.preflight_settings import PREFLIGHT_RECORD

PREFIX = "ft pre-flight:"
JSON_PREFIX = "FT_PREFLIGHT_JSON "


def verdicts(findings: list[Finding], places: list[Place]) -> dict[int, tuple[str, str]]:
    """{node rank: (host, "OK" or "FAILED: what")}, every node of the job."""
    lines = {}
    for node, host in nodes_of(places).items():
        failed = [f for f in findings if f.node_rank == node and not f.ok]
        lines[node] = (host, "OK" if not failed else
                       "FAILED: " + "; ".join(f"{f.check}: {f.detail}" for f in failed))
    return lines


def verdict_line(node: int, host: str, verdict: str) -> str:
    return f"{PREFIX} node {node} ({host}): {verdict}"


def table(findings: list[Finding], phase: str, places: list[Place],
          seconds: float | None) -> str:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    nodes = len(nodes_of(places))
    head = f"ft pre-flight ({phase}): {nodes} node(s), {len(places)} rank(s), " \
        f"{len({f.check for f in findings})} check(s){took}"
    # One line per finding, the mark and the check in fixed columns: a log grep for
    # "FAIL" or for one check finds whole lines that say where.
    body = [f"{PREFIX} {'ok' if f.ok else 'FAIL':4} {f.check:10} {f.where()}: {f.detail}"
            for f in findings]
    return "\n".join([head, *body])


def record(findings: list[Finding], phase: str, places: list[Place],
           seconds: float | None) -> dict:
    judged = verdicts(findings, places)
    return {"phase": phase, "ok": all(f.ok for f in findings),
            "seconds": None if seconds is None else round(seconds, 3),
            "nodes": [{"node_rank": node, "host": host, "ok": verdict == "OK"}
                      for node, (host, verdict) in judged.items()],
            "findings": [f.record() for f in findings]}


def json_line(entry: dict) -> str:
    return JSON_PREFIX + json.dumps(entry, separators=(",", ":"))


def write_record(output_dir: Path, entry: dict) -> None:
    """preflight.json: one key per phase (`nodes`, `checkpoint`), each this run's record;
    replaced atomically, so a reader never sees half of it."""
    path = output_dir / PREFLIGHT_RECORD
    try:
        whole = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        whole = {}
    whole[entry["phase"]] = entry
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(whole, indent=1))
    tmp.replace(path)
