"""The demo's learning gain over seeds: held-out greedy accuracy after the warm start and after RL.

    .venv/bin/python bench/demo_seeds.py [--seeds 0 1 2] [--out bench/results/demo]

Runs `observe-r1 demo` once per seed (kept in OUT/seed-S for bench/ablation.py) and writes OUT/demo_seeds.json
and a markdown table for docs/benchmarks.md.
"""

import argparse
import json
import re
import statistics
from pathlib import Path

from observe_r1.demo import run_demo
from observe_r1.jsonl import read_jsonl

KEYS = ["accuracy_before", "accuracy_after", "sampled_accuracy_before", "sampled_accuracy_after",
        "format_rate_after", "mean_tokens_correct_before", "mean_tokens_correct_after", "majority_baseline",
        "total_seconds"]  # fmt: skip


def error_analysis(demo_dir: Path) -> dict:
    """Share of held-out greedy answers equal to gold + 1 (the teacher's bias), and how often the <observe>
    description names the right number of shapes, before and after RL."""
    truth = {row["id"]: row for row in read_jsonl(demo_dir / "data" / "heldout.jsonl")}
    out = {}
    for stage in ("before", "after"):
        rows = read_jsonl(demo_dir / f"eval-{stage}" / "greedy" / "predictions.jsonl")
        plus_one = right_count = 0
        for row in rows:
            gold = truth[row["id"]]
            plus_one += (row["extracted"] or "").strip() == str(int(gold["answer"]) + 1)
            described = re.search(r"<observe>(.*?)</observe>", row["response"], re.S)
            right_count += bool(described) and len(described.group(1).split(", ")) == len(gold["scene"])
        out[f"answer_is_gold_plus_1_{stage}"] = plus_one / len(rows)
        out[f"observe_right_shape_count_{stage}"] = right_count / len(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/demo")
    parser.add_argument("--analyse-only", action="store_true", help="Reuse existing seed directories.")
    args = parser.parse_args()
    out = Path(args.out)
    runs = {}
    for seed in args.seeds:
        if args.analyse_only:
            summary = json.loads((out / f"seed-{seed}" / "summary.json").read_text())
        else:
            summary = run_demo(out / f"seed-{seed}", seed=seed)
        runs[seed] = {k: summary[k] for k in KEYS} | error_analysis(out / f"seed-{seed}")
        (out / "demo_seeds.json").write_text(json.dumps(runs, indent=2))
    keys = list(next(iter(runs.values())))
    lines = ["| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for seed, r in runs.items():
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    gains = [r["accuracy_after"] - r["accuracy_before"] for r in runs.values()]
    lines.append(f"\nGreedy gain: mean {statistics.mean(gains):+.3f}, min {min(gains):+.3f}, max {max(gains):+.3f}; "
                 f"gain > 0 on {sum(g > 0 for g in gains)}/{len(gains)} seeds.")  # fmt: skip
    (out / "demo_seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
