"""The "did you mean" hint for an unknown key: only a near-typo of a real key.

difflib's ratio suggested `tokens` for `eot_tokens` and `learning_rate` for
`pretraining_dataset`: long shared substrings score high even when the keys mean unrelated
things. An edit distance that scales with the key's length only matches real typos
(a dropped, doubled, swapped or wrong letter or two).
"""

from __future__ import annotations

from collections.abc import Iterable


def closest_key(key: str, known: Iterable[str]) -> str | None:
    budget = max(1, min(3, len(key) // 5))
    best: tuple[int, str] | None = None
    for candidate in sorted(set(known)):
        distance = edit_distance(key.lower(), candidate.lower())
        if distance <= budget and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance where swapping two neighbouring letters costs one edit."""
    if abs(len(a) - len(b)) > 3:
        return abs(len(a) - len(b))
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]
