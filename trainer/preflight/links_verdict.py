"""Rank 0's verdict on the measured links: which node, or which node pair, is slow.

A pair is slow under `link_fraction` x a reference:
  - relative (3 or more nodes): the median, over the nodes, of each node's fastest pair. Not
    the median pair: with 3 nodes and one bad node, 2 of the 3 pairs hold it, the median pair
    is a slow one and nothing would look slow. A node's fastest pair is fast unless the node
    itself is bad (or most of the nodes are), so this median is a healthy link's figure, and
    it is taken on the same machines at the same minute: the host's load cancels out;
  - absolute (a real fabric, not emulated nodes on one host): the cluster profile's
    `expected_internode_busbw_gbs`.
Then blame: a node all of whose pairs are slow (2 or more), or, failing that, the one node in
every slow pair, is named ("every pair with it is slow"); what is left is named as pairs; a
fabric where every pair is slow is one finding for the job. Within a node (its own ranks'
all-reduce), a node under `link_fraction` x the median of the nodes is named.
"""

from __future__ import annotations

import statistics

from trainer.preflight.findings import Finding
from trainer.preflight.links_measure import LinkMeasurements, Measurement

CHECK = "link"
Pair = tuple[int, int]


def judge(found: LinkMeasurements, fraction: float, expected_gbs: float | None,
          absolute: bool, expected_by: str = "the cluster profile") -> list[Finding]:
    """`absolute`: also hold each pair to `expected_gbs` (a real fabric)."""
    pairs = _pairs(found)
    limits = _limits(pairs, fraction, expected_gbs if absolute else None, expected_by)
    slow = {p for p, gbs in pairs.items() if p in limits and gbs < limits[p][0]}
    findings = _node_findings(found, pairs, slow, limits, fraction)
    findings += _world_finding(found)
    return findings


def suspects(found: LinkMeasurements, fraction: float) -> list[tuple[str, list[int]]]:
    """What is slow against the others (pairs, nodes inside), to be measured once more
    before it is named: a burst of load on a busy host can slow one measurement, never two
    in a row by the same margin as a bad link. Under the profile's figure alone is not
    measured again (no host load explains a fabric's shortfall, and every pair of a fabric
    on TCP would double the check's time)."""
    pairs = _pairs(found)
    limits = _limits(pairs, fraction, None, "")
    again = [("node", [n]) for n in sorted(_slow_within({m.nodes[0]: m for m in found.of("node")},
                                                        fraction))]
    return again + [("pair", list(p)) for p, gbs in sorted(pairs.items())
                    if p in limits and gbs < limits[p][0]]


def _pairs(found: LinkMeasurements) -> dict[Pair, float]:
    return {(m.nodes[0], m.nodes[1]): m.busbw_gbs for m in found.of("pair")}


def _limits(pairs: dict[Pair, float], fraction: float, expected_gbs: float | None,
            expected_by: str) -> dict[Pair, tuple[float, str]]:
    """pair -> (the busbw under which it is slow, what that is a fraction of): the higher of
    the relative and the absolute limit."""
    reference = relative_reference(pairs)
    limits = {}
    if reference is not None:
        limits.update(dict.fromkeys(pairs, (fraction * reference,
                                            f"the others' {reference:.3g} GB/s")))
    if expected_gbs:
        for pair in pairs:
            if fraction * expected_gbs > limits.get(pair, (0.0, ""))[0]:
                limits[pair] = (fraction * expected_gbs,
                                f"the {expected_gbs:g} GB/s {expected_by} expects")
    return limits


def relative_reference(pairs: dict[Pair, float]) -> float | None:
    """The median over the nodes of each node's fastest pair (3 or more pairs), else None."""
    if len(pairs) < 3:
        return None
    best: dict[int, float] = {}
    for (a, b), gbs in pairs.items():
        for node in (a, b):
            best[node] = max(best.get(node, 0.0), gbs)
    return statistics.median(best.values())


def blamed_nodes(pairs: dict[Pair, float], slow: set[Pair]) -> list[int]:
    """Nodes whose every pair (2 or more) is slow; else the one node in every slow pair."""
    nodes = sorted({n for pair in pairs for n in pair})
    blamed = [n for n in nodes
              if len(mine := [p for p in pairs if n in p]) >= 2 and set(mine) <= slow]
    if not blamed and len(slow) >= 2:
        common = set.intersection(*(set(p) for p in slow))
        blamed = sorted(common) if len(common) == 1 else []
    return blamed


def _node_findings(found: LinkMeasurements, pairs: dict[Pair, float], slow: set[Pair],
                   limits: dict, fraction: float) -> list[Finding]:
    within = {m.nodes[0]: m for m in found.of("node")}
    slow_within = _slow_within(within, fraction)
    everything_slow = len(pairs) > 1 and slow == set(pairs)
    blamed = [] if everything_slow else blamed_nodes(pairs, slow)
    findings = []
    for node in sorted(found.hosts):
        host = found.hosts[node]
        data = {"within_gbs": within[node].busbw_gbs if node in within else None,
                "pairs_gbs": {str(_other(p, node)): round(g, 4) for p, g in pairs.items()
                              if node in p},
                "pairs_bytes": {str(_other((m.nodes[0], m.nodes[1]), node)): m.bytes
                                for m in found.of("pair") if node in m.nodes},
                "measured_again": [_measured_again(m, node) for m in found.results
                                   if m.rounds > 1 and node in m.nodes and m.kind != "world"]}
        problems = []
        if node in blamed:
            mine = sorted((_other(p, node), pairs[p]) for p in pairs if node in p and p in slow)
            shown = ", ".join(f"node {o} ({found.hosts[o]}) {g:.3g} GB/s" for o, g in mine)
            which = "every pair with it is slow" if len(mine) == len(data["pairs_gbs"]) \
                else "it is in every slow pair"
            problems.append(f"{which}: {shown}; under {fraction:g} x "
                            f"{limits[_pair(node, mine[0][0])][1]}")
        if node in slow_within:
            problems.append(slow_within[node])
        ok_text = _healthy_text(node, within, data["pairs_gbs"])
        findings.append(Finding(CHECK, node, host, not problems,
                                "; ".join(problems) or ok_text, data))
    explained = set(blamed)
    if everything_slow:
        findings.append(_fabric_finding(pairs, limits, fraction))
    else:
        for pair in sorted(slow):
            if not explained & set(pair):
                findings.append(_pair_finding(found, pair, pairs[pair], limits[pair], fraction))
    return findings


def _measured_again(m: Measurement, node: int) -> str:
    return "within" if m.kind == "node" else str(_other((m.nodes[0], m.nodes[1]), node))


def _slow_within(within: dict[int, Measurement], fraction: float) -> dict[int, str]:
    """Nodes whose own all-reduce is under `fraction` x the median node's (3 or more)."""
    if len(within) < 3:
        return {}
    median = statistics.median(m.busbw_gbs for m in within.values())
    return {n: (f"its own {m.ranks} ranks all-reduce at {m.busbw_gbs:.3g} GB/s, under "
                f"{fraction:g} x the median node's {median:.3g} GB/s (NVLink/PCIe)")
            for n, m in within.items() if m.busbw_gbs < fraction * median}


def _healthy_text(node: int, within: dict[int, Measurement], pairs: dict[str, float]) -> str:
    parts = []
    if node in within:
        parts.append(f"within the node {within[node].busbw_gbs:.3g} GB/s "
                     f"({within[node].ranks} ranks)")
    if pairs:
        values = sorted(pairs.values())
        spread = f"{values[0]:.3g}" if len(values) == 1 else f"{values[0]:.3g}-{values[-1]:.3g}"
        parts.append(f"with {len(values)} other node(s) {spread} GB/s")
    return "all-reduce busbw " + ", ".join(parts) if parts else "one node, one rank: no link"


def _pair_finding(found: LinkMeasurements, pair: Pair, gbs: float, limit: tuple,
                  fraction: float) -> Finding:
    a, b = pair
    return Finding(CHECK, a, found.hosts[a], False,
                   f"the link to node {b} ({found.hosts[b]}) is slow: {gbs:.3g} GB/s, under "
                   f"{fraction:g} x {limit[1]}", {"pair": [a, b], "busbw_gbs": gbs})


def _fabric_finding(pairs: dict[Pair, float], limits: dict, fraction: float) -> Finding:
    median = statistics.median(pairs.values())
    why = next(iter(limits.values()))[1]
    return Finding(CHECK, None, None, False,
                   f"every node pair is slow (median {median:.3g} GB/s, under {fraction:g} x "
                   f"{why}): the fabric, not one node (see the transport line)",
                   {"pairs_gbs": {f"{a}-{b}": g for (a, b), g in pairs.items()}})


def _world_finding(found: LinkMeasurements) -> list[Finding]:
    return [Finding(CHECK, None, None, True,
                    f"all-reduce over all {m.ranks} ranks of {len(m.nodes)} nodes: "
                    f"{m.busbw_gbs:.3g} GB/s busbw (every link measured in {found.seconds:.1f} s)",
                    {"busbw_gbs": m.busbw_gbs, "seconds": round(found.seconds, 2)})
            for m in found.of("world")]


def _other(pair: Pair, node: int) -> int:
    return pair[1] if pair[0] == node else pair[0]


def _pair(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)
