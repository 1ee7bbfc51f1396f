"""The demo's learning gain over seeds: held-out greedy accuracy after the warm start and after RL.

    .venv/bin/python bench/demo_seeds.py [--seeds 0 1 2] [--out bench/results/demo]

Runs `observe-r1 demo` once per seed (kept in OUT/seed-S for bench/ablation.py) and writes OUT/demo_seeds.json
and a markdown table for docs/benchmarks.md.
"""

import argparse
import json
import statistics
from pathlib import Path

from observe_r1.demo import run_demo

KEYS = ["accuracy_before", "accuracy_after", "sampled_accuracy_before", "sampled_accuracy_after",
        "format_rate_after", "mean_tokens_correct_before", "mean_tokens_correct_after", "majority_baseline",
        "total_seconds"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/demo")
    args = parser.parse_args()
    out = Path(args.out)
    runs = {}
    for seed in args.seeds:
        summary = run_demo(out / f"seed-{seed}", seed=seed)
        runs[seed] = {k: summary[k] for k in KEYS}
        (out / "demo_seeds.json").write_text(json.dumps(runs, indent=2))
    lines = ["| seed | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for seed, r in runs.items():
        lines.append(
            f"| {seed} | " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in KEYS) + " |"
        )
    gains = [r["accuracy_after"] - r["accuracy_before"] for r in runs.values()]
    lines.append(f"\nGreedy gain: mean {statistics.mean(gains):+.3f}, min {min(gains):+.3f}, max {max(gains):+.3f}; "
                 f"gain > 0 on {sum(g > 0 for g in gains)}/{len(gains)} seeds.")  # fmt: skip
    (out / "demo_seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
