"""Reward scoring throughput: in-process sequential vs the parallel batch entry point (issue: algorithm).

    .venv/bin/python bench/rewards_throughput.py [--n 2048] [--out bench/results/rewards.json]

2,048 realistic completions (observe/think/answer responses whose answers are fractions, decimals, LaTeX
expressions, integers, option letters and short text, about half of them wrong). Each path starts with cold
caches. Also times a batch that contains pathological answers, to show a per-item timeout does not stall it.
"""

import argparse
import json
import random
import time
from pathlib import Path

from observe_r1 import mathpool, rewards
from observe_r1.mathpool import _math_equal_unbounded
from observe_r1.rewards import score_completions


def random_pair(rng: random.Random) -> tuple[str, str, bool]:
    """A gold answer and a prediction of one of several kinds, right about half of the time."""
    a, b, c = rng.randint(1, 40), rng.randint(2, 40), rng.randint(1, 9)
    right = rng.random() < 0.5
    kind = rng.randrange(6)
    if kind == 0:  # fraction vs decimal
        return f"\\frac{{{a}}}{{{b}}}", f"{a / b:.6f}" if right else f"{(a + 1) / b:.6f}", right
    if kind == 1:  # polynomial in another order
        return f"x^2+{a}x+{c}", f"{c}+{a}x+x^2" if right else f"{c}+{a + 1}x+x^2", right
    if kind == 2:  # surd
        return f"{c}\\sqrt{{{b}}}", f"\\sqrt{{{c * c * b}}}" if right else f"\\sqrt{{{c * c * b + 1}}}", right
    if kind == 3:  # multiple of pi
        return f"{a}\\pi", f"\\pi \\cdot {a}" if right else f"{a + 1}\\pi", right
    if kind == 4:  # option letter
        gold = rng.choice("ABCD")
        return gold, f"({gold}) {a} cm" if right else f"({'ABCD'[('ABCD'.index(gold) + 1) % 4]})", right
    return str(a), f"{a}.0" if right else str(a + 1), right  # integer vs decimal


def completions(n: int, seed: int) -> tuple[list[str], list[str], list[bool]]:
    rng = random.Random(seed)
    texts, golds, right = [], [], []
    for _ in range(n):
        gold, answer, is_right = random_pair(rng)
        texts.append(f"<observe>a figure</observe> <think>work it out</think> <answer>{answer}</answer>")
        golds.append(gold)
        right.append(is_right)
    return texts, golds, right


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--out", default="bench/results/rewards.json")
    args = parser.parse_args()
    texts, golds, right = completions(args.n, seed=0)

    _math_equal_unbounded.cache_clear()
    sequential, t_seq = timed(lambda: [rewards.accuracy_reward(t, g) for t, g in zip(texts, golds, strict=True)])
    results = {"n": args.n, "sequential_per_item_call_s": t_seq}
    for workers in (1, 2):
        mathpool._MATH_POOL._reset()  # fresh workers, cold caches
        scores, t = timed(lambda w=workers: score_completions(texts, golds, workers=w))
        assert scores == sequential, "batch and per-item scoring disagree"
        results[f"batch_{workers}_workers_s"] = t
    results["completions_per_s"] = {k.removesuffix("_s"): args.n / v for k, v in results.items() if k.endswith("_s")}
    results["speedup_2_workers_vs_1"] = results["batch_1_workers_s"] / results["batch_2_workers_s"]
    results["speedup_2_workers_vs_sequential"] = results["sequential_per_item_call_s"] / results["batch_2_workers_s"]
    results["accuracy_share"] = sum(sequential) / len(sequential)
    # how often the verdict equals the way the pair was built (right/wrong): a check on the grader itself
    results["agreement_with_construction"] = sum(s == r for s, r in zip(sequential, right, strict=True)) / args.n

    evil_texts = texts[:200] + ["<observe>x</observe><think>y</think><answer>10^{10^{10^{10}}}</answer>"] * 2
    evil_golds = golds[:200] + ["10^{10}"] * 2
    before = mathpool.REWARD_STATS["timeout"]
    _, t_evil = timed(lambda: score_completions(evil_texts, evil_golds, workers=2, timeout=3.0))
    results["batch_with_2_pathological_items_s"] = t_evil
    results["timeouts_counted"] = mathpool.REWARD_STATS["timeout"] - before

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
