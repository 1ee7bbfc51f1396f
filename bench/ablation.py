"""The paper's ablation at CPU scale, from the same warm starts and ladders, at the same rollout budget.

    .venv/bin/python bench/ablation.py [--demo-dir bench/results/demo] [--seeds 0 1 2] [--steps 80]

Needs the per-seed demo directories written by bench/demo_seeds.py (warm start, ladder, held-out split).
Variants (docs/method.md §6): Observe-R1 (ordered ladder, bonus, weighting), plain GRPO (shuffled, no bonus, no
weighting), random order (full rewards, shuffled), no bonus, no weighting. Writes OUT/ablation.json and a
markdown table (mean ± half-range over seeds).
"""

import argparse
import json
import statistics
from pathlib import Path

from observe_r1.demo import DemoScale, bonus_floor, evaluate_both, run_rl

VARIANTS = {
    "observe_r1": {},
    "plain_grpo": {"curriculum": "shuffled", "use_bonus": False, "use_dyna_weight": False},
    "random_order": {"curriculum": "shuffled"},
    "no_bonus": {"use_bonus": False},
    "no_weighting": {"use_dyna_weight": False},
}
METRICS = ["greedy_accuracy", "sampled_accuracy", "format_rate", "mean_tokens_correct"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-dir", default="bench/results/demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", default="bench/results/ablation")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    scale = DemoScale(rl_steps=args.steps)
    for seed in args.seeds:
        demo = Path(args.demo_dir) / f"seed-{seed}"
        floor = bonus_floor(demo / "ladder")
        for name, recipe in VARIANTS.items():
            key = f"{name}/seed-{seed}"
            if key in results:  # resumable
                continue
            run_dir = out / name / f"seed-{seed}"
            summary = json.loads((demo / "summary.json").read_text())
            if name == "observe_r1" and summary["rl_steps"] == min(args.steps, summary["rl_steps"]):
                # the demo's own RL run is this variant at this budget: reuse its evaluation
                ev = {
                    k: json.loads((demo / "eval-after" / k / "results.json").read_text())
                    for k in ("greedy", "sampled")
                }
            else:
                run_rl(demo / "warmstart", demo / "ladder" / "train.jsonl", run_dir, scale, floor, seed, **recipe)
                ev = evaluate_both(run_dir / "final", demo / "data" / "heldout.jsonl", run_dir / "eval", scale)
            results[key] = {"greedy_accuracy": ev["greedy"]["accuracy"], "sampled_accuracy": ev["sampled"]["accuracy"],
                            "format_rate": ev["greedy"]["format_rate"],
                            "mean_tokens_correct": ev["greedy"]["mean_tokens_correct"]}  # fmt: skip
            results_path.write_text(json.dumps(results, indent=2))
    lines = ["| variant | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name in VARIANTS:
        runs = [results[f"{name}/seed-{s}"] for s in args.seeds if f"{name}/seed-{s}" in results]
        cells = []
        for m in METRICS:
            values = [r[m] for r in runs if r[m] is not None]
            half = (max(values) - min(values)) / 2 if values else 0
            cells.append(f"{statistics.mean(values):.3f} ± {half:.3f}" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
