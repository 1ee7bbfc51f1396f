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

from observe_r1 import rewards
from observe_r1.rewards import _math_equal_unbounded, score_completions

PAIRS = [  # (gold, right answers, wrong answers)
    ("\\frac{1}{2}", ["0.5", "\\frac{2}{4}", "1/2"], ["0.25", "\\frac{1}{3}"]),
    ("\\sqrt{2}", ["\\sqrt{2}", "2^{1/2}"], ["1.5", "\\sqrt{3}"]),
    ("x^2+2x+1", ["(x+1)^2", "1+2x+x^2"], ["x^2+1", "2x+1"]),
    ("3\\pi", ["3\\pi", "\\pi \\cdot 3"], ["\\pi", "9.42"]),
    ("12", ["12", "12.0", "\\boxed{12}"], ["13", "11"]),
    ("B", ["B", "(B) 5 cm"], ["C", "A or B"]),
    ("yes", ["Yes", "yes."], ["no"]),
    ("[1, 3]", ["[1,3]"], ["(1,3)"]),
]


def completions(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, golds = [], []
    for i in range(n):
        gold, right, wrong = PAIRS[i % len(PAIRS)]
        answer = rng.choice(right if rng.random() < 0.5 else wrong)
        noise = rng.randint(0, 10_000)  # distinct texts: no cache hits across items
        texts.append(f"<observe>figure {noise}</observe> <think>step {noise}</think> <answer>{answer}</answer>")
        golds.append(gold)
    return texts, golds


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--out", default="bench/results/rewards.json")
    args = parser.parse_args()
    texts, golds = completions(args.n, seed=0)

    _math_equal_unbounded.cache_clear()
    sequential, t_seq = timed(lambda: [rewards.accuracy_reward(t, g) for t, g in zip(texts, golds, strict=True)])
    results = {"n": args.n, "sequential_per_item_call_s": t_seq}
    for workers in (1, 2):
        rewards._MATH_POOL._reset()  # fresh workers, cold caches
        scores, t = timed(lambda w=workers: score_completions(texts, golds, workers=w))
        assert scores == sequential, "batch and per-item scoring disagree"
        results[f"batch_{workers}_workers_s"] = t
    results["completions_per_s"] = {k.removesuffix("_s"): args.n / v for k, v in results.items() if k.endswith("_s")}
    results["speedup_2_workers_vs_1"] = results["batch_1_workers_s"] / results["batch_2_workers_s"]
    results["speedup_2_workers_vs_sequential"] = results["sequential_per_item_call_s"] / results["batch_2_workers_s"]
    results["accuracy_share"] = sum(sequential) / len(sequential)

    evil_texts = texts[:200] + ["<observe>x</observe><think>y</think><answer>10^{10^{10^{10}}}</answer>"] * 2
    evil_golds = golds[:200] + ["10^{10}"] * 2
    before = rewards.REWARD_STATS["timeout"]
    _, t_evil = timed(lambda: score_completions(evil_texts, evil_golds, workers=2, timeout=3.0))
    results["batch_with_2_pathological_items_s"] = t_evil
    results["timeouts_counted"] = rewards.REWARD_STATS["timeout"] - before

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
