from collections import Counter
from fractions import Fraction

import pytest

from observe_r1.ladder.order import apply_review, mix, mixing_weights, prune, review_candidates, sort_items


def _items(counts: dict[float, int]) -> list[dict]:
    out = []
    for d, n in counts.items():
        out += [{"id": f"{d}-{i}", "difficulty": d, "complexity": float(n - i)} for i in range(n)]
    return out


def test_sort_by_difficulty_then_complexity():
    items = [{"id": "a", "difficulty": 0.5, "complexity": 3.0}, {"id": "b", "difficulty": 0.0, "complexity": 9.0},
             {"id": "c", "difficulty": 0.5, "complexity": 1.0}]  # fmt: skip
    assert [it["id"] for it in sort_items(items)] == ["b", "c", "a"]


def test_prune_drops_easy_and_short_only():
    items = _items({0.0: 8, 0.5: 4})  # d=0 complexities 1..8
    kept, dropped = prune(items, percentile=25)
    assert sorted(it["complexity"] for it in dropped) == [1.0, 2.0]  # below the 25th percentile (3.0)
    assert all(it["difficulty"] == 0 for it in dropped)
    assert len(kept) == 10
    assert prune(items, percentile=0) == (items, [])


def test_review_export_and_apply():
    items = _items({1.0: 3, 0.5: 2})
    for it in items:
        it["answer"] = "1"
    assert {it["id"] for it in review_candidates(items)} == {"1.0-0", "1.0-1", "1.0-2"}
    kept, summary = apply_review(items, [{"id": "1.0-0", "answer": "7"}, {"id": "1.0-1", "drop": True}])
    assert summary == {"corrected": 1, "dropped": 1}
    assert next(it for it in kept if it["id"] == "1.0-0")["answer"] == "7"
    with pytest.raises(ValueError, match="not in the ladder"):
        apply_review(items, [{"id": "nope", "answer": "1"}])


def test_mixing_weights_sum_to_one_and_reach_two_levels():
    levels = [Fraction(i, 8) for i in range(9)]
    table = mixing_weights(levels)
    for level, weights in table.items():
        assert abs(sum(weights.values()) - 1) < 1e-9
        assert all(abs(lv - level) <= Fraction(2, 8) for lv in weights)
    assert table[levels[4]][levels[4]] == pytest.approx(0.57)
    assert len(table[levels[0]]) == 3 and len(table[levels[4]]) == 5  # clipped at the end


def test_mix_respects_weights_within_sampling_error():
    counts = {i / 8: 600 for i in range(9)}
    sequence = mix(_items(counts), size=2700, seed=0)
    assert len({it["id"] for it in sequence}) == 2700  # no item twice
    by_stretch = Counter((it["stretch_level"], it["difficulty"]) for it in sequence)
    levels = [Fraction(i, 8) for i in range(9)]
    table = mixing_weights(levels)
    for level in levels:
        n = sum(v for (s, _), v in by_stretch.items() if s == float(level))
        own = by_stretch[(float(level), float(level))] / n
        expected = table[level][level]
        assert abs(own - expected) < 4 * (expected * (1 - expected) / n) ** 0.5 + 1e-9, (level, own, expected)


def test_mix_is_deterministic_and_ordered_easy_to_hard():
    items = _items({0.0: 50, 0.5: 50, 1.0: 50})
    a, b = mix(items, seed=3), mix(items, seed=3)
    assert [it["id"] for it in a] == [it["id"] for it in b]
    assert [it["id"] for it in mix(items, seed=4)] != [it["id"] for it in a]
    stretches = [it["stretch_level"] for it in a]
    assert stretches == sorted(stretches)
    with pytest.raises(ValueError, match="larger than"):
        mix(items, size=151)
