"""Pure ordering stages of NeuraLadder: sort, prune, review export/apply, adjacent-level mixing (§2.4-§2.6)."""

from __future__ import annotations

import random
from collections import defaultdict
from fractions import Fraction


def level(difficulty: float) -> Fraction:
    """The ladder level of a difficulty: the fraction ``c/k`` it stands for (``0.375`` -> ``3/8``).

    >>> level(0.375), level(1 / 3)
    (Fraction(3, 8), Fraction(1, 3))
    """
    return Fraction(difficulty).limit_denominator(64)


def sort_items(items: list[dict]) -> list[dict]:
    """Easy → hard: difficulty ascending, then complexity ascending, then id (a stable tie-break)."""
    return sorted(items, key=lambda it: (it["difficulty"], it["complexity"], it["id"]))


def prune(items: list[dict], *, percentile: float = 25.0) -> tuple[list[dict], list[dict]]:
    """Drop d = 0 items whose complexity is below the ``percentile``-th percentile of d = 0 complexities (§2.5).

    Returns ``(kept, dropped)``. ``percentile = 0`` drops nothing.
    """
    solved = sorted(it["complexity"] for it in items if it["difficulty"] == 0)
    if not solved or percentile <= 0:
        return list(items), []
    threshold = solved[min(len(solved) - 1, int(len(solved) * percentile / 100))]
    kept = [it for it in items if not (it["difficulty"] == 0 and it["complexity"] < threshold)]
    dropped = [it for it in items if it["difficulty"] == 0 and it["complexity"] < threshold]
    return kept, dropped


def review_candidates(items: list[dict]) -> list[dict]:
    """Items no sample solved (d = 1): their gold answer may be wrong (§2.5)."""
    return [it for it in items if it["difficulty"] == 1]


def apply_review(items: list[dict], fixes: list[dict]) -> tuple[list[dict], dict]:
    """Apply reviewed rows ``{id, answer}`` (new gold) or ``{id, drop: true}``; unknown ids are an error."""
    by_id = {it["id"]: it for it in items}
    unknown = [f["id"] for f in fixes if f["id"] not in by_id]
    if unknown:
        raise ValueError(f"review file names ids that are not in the ladder: {unknown[:10]}")
    dropped, corrected = set(), 0
    for fix in fixes:
        if fix.get("drop"):
            dropped.add(fix["id"])
        elif "answer" in fix and str(fix["answer"]) != by_id[fix["id"]]["answer"]:
            by_id[fix["id"]] = {**by_id[fix["id"]], "answer": str(fix["answer"]), "reviewed": True}
            corrected += 1
    kept = [by_id[it["id"]] for it in items if it["id"] not in dropped]
    return kept, {"corrected": corrected, "dropped": len(dropped)}


def default_own_weight(level: Fraction) -> float:
    """Share of a level's stretch drawn from the level itself, read off the paper's figure (§2.6)."""
    if level == 0:
        return 0.30
    if level <= Fraction(3, 8):
        return 0.50
    if level <= Fraction(3, 4):
        return 0.57
    return 0.70


def mixing_weights(levels: list[Fraction], own_weight=default_own_weight, near_share: float = 2 / 3) -> dict:
    """For each level, the weights of the levels its stretch draws from: itself and up to two on each side.

    The rest after ``own_weight`` goes ``near_share`` to the ±1 neighbours and the remainder to ±2, split evenly
    among those that exist; at the ends the missing neighbours' share is renormalised away.
    """
    table = {}
    for i, level in enumerate(levels):
        own = own_weight(level)
        weights = {level: own}
        for offset, share in ((1, near_share), (2, 1 - near_share)):
            neighbours = [levels[j] for j in (i - offset, i + offset) if 0 <= j < len(levels)]
            for nb in neighbours:
                weights[nb] = (1 - own) * share / 2
        total = sum(weights.values())
        table[level] = {lv: w / total for lv, w in weights.items()}
    return table


def mix(items: list[dict], *, size: int | None = None, seed: int = 0, own_weight=default_own_weight) -> list[dict]:
    """Lay out the training sequence level by level with adjacent-level mixing; deterministic for a ``seed``.

    Level ℓ's stretch has as many slots as level ℓ has items (scaled to ``size``); each slot draws a level from
    ``mixing_weights`` and takes that level's next item in (complexity) order. Items are used at most once; an
    exhausted level hands its draw to the nearest level that still has items.
    """
    items = sort_items(items)
    size = len(items) if size is None else size
    if size > len(items):
        raise ValueError(f"--size {size} is larger than the {len(items)} rated items; items are used at most once")
    pools = defaultdict(list)
    for it in items:
        pools[level(it["difficulty"])].append(it)
    levels = sorted(pools)
    table = mixing_weights(levels, own_weight)
    cursor = dict.fromkeys(levels, 0)
    rng = random.Random(seed)
    quotas = _stretch_sizes([len(pools[lv]) for lv in levels], size)
    out = []
    for stretch, quota in zip(levels, quotas, strict=True):
        choices, weights = zip(*table[stretch].items(), strict=True)
        for _ in range(quota):
            drawn = rng.choices(choices, weights)[0]
            source = min((lv for lv in levels if cursor[lv] < len(pools[lv])), key=lambda lv: abs(lv - drawn))
            out.append({**pools[source][cursor[source]], "stretch_level": float(stretch)})
            cursor[source] += 1
    return out


def _stretch_sizes(counts: list[int], size: int) -> list[int]:
    """Split ``size`` slots over levels in proportion to their counts (largest remainders)."""
    total = sum(counts)
    exact = [c * size / total for c in counts]
    sizes = [int(x) for x in exact]
    for i in sorted(range(len(counts)), key=lambda i: exact[i] - sizes[i], reverse=True)[: size - sum(sizes)]:
        sizes[i] += 1
    return sizes
