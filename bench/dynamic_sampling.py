"""Dynamic sampling on the demo task: the same warm starts and ladders, RL with and without refills.

    .venv/bin/python bench/dynamic_sampling.py [--demo-dir bench/results/demo] [--seeds 0 1 2]

Without: each seed's own demo RL run (one pass over the ladder, held-out greedy accuracy at 0/25/50/75/100 %).
With: `dynamic_sampling=True, max_generation_rounds=4`, one pass over the same ladder (the prompt cursor stops
when it is used up), held-out greedy accuracy every 10 steps. Compared at an equal number of optimizer steps and
at an equal number of rollouts (prompts generated for); zero_std_trained and seconds per step from
metrics.jsonl. Writes OUT/dynamic_sampling.json and OUT/dynamic_sampling.md.
"""

import argparse
import json
import statistics
from pathlib import Path

from observe_r1.demo import DemoScale, LearningCurve, bonus_floor, run_rl
from observe_r1.eval import evaluate
from observe_r1.generation import HFGenerator
from observe_r1.jsonl import read_jsonl
from observe_r1.models import load_policy


def run_with(demo: Path, out: Path, seed: int) -> dict:
    """The dynamic-sampling run of one seed (skipped when its result exists)."""
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    scale = DemoScale()
    heldout = demo / "data" / "heldout.jsonl"
    curve = LearningCurve(heldout, out / "eval-during", scale.max_new_tokens, every=10)
    floor = bonus_floor(demo / "ladder")
    trainer = run_rl(demo / "warmstart", demo / "ladder" / "train.jsonl", out / "rl", scale, floor, seed,
                     callbacks=[curve], dynamic_sampling=True, max_generation_rounds=4, max_steps=-1,
                     num_train_epochs=1)  # fmt: skip
    model, processor = load_policy(out / "rl" / "final")
    final = evaluate(HFGenerator(model, processor, batch_size=64, max_new_tokens=scale.max_new_tokens), heldout,
                     out / "eval-final")  # fmt: skip
    points = [*curve.points, {"step": trainer.state.global_step, "accuracy": final["accuracy"]}]
    result = {"curve": points, **step_stats(out / "rl" / "metrics.jsonl")}
    result_path.write_text(json.dumps(result, indent=2))
    return result


def step_stats(metrics_path: Path) -> dict:
    """Per-step rollouts (cumulative prompts), zero_std_trained and seconds per step of a run."""
    rows = read_jsonl(metrics_path)

    def mean(key):
        return statistics.mean(r[key] for r in rows)

    consumed, total = [], 0
    for row in rows:
        total += row["prompts_consumed"]
        consumed.append(total)
    return {
        "steps": len(rows),
        "cumulative_prompts": consumed,
        "zero_std_trained": mean("zero_std_trained"),
        "zero_std_generated": mean("zero_std_generated"),
        "generation_rounds": mean("generation_rounds"),
        "seconds_per_step": statistics.median(r["step_time"] for r in rows if "step_time" in r),
    }


def at_step(curve: list[dict], step: int) -> dict:
    """The curve point at ``step`` or the last one before it."""
    return max((p for p in curve if p["step"] <= step), key=lambda p: p["step"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-dir", default="bench/results/demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/dynamic_sampling")
    args = parser.parse_args()
    out = Path(args.out)
    rows = {}
    for seed in args.seeds:
        demo = Path(args.demo_dir) / f"seed-{seed}"
        summary = json.loads((demo / "summary.json").read_text())
        without = {"curve": summary["learning_curve"], **step_stats(demo / "rl" / "metrics.jsonl")}
        with_ds = run_with(demo, out / f"seed-{seed}", seed)
        # equal rollouts: the last point of the dynamic run that had generated no more prompts than the whole
        # run without refills
        budget = without["cumulative_prompts"][-1]
        within = [p for p in with_ds["curve"] if with_ds["cumulative_prompts"][p["step"] - 1] <= budget]
        rows[seed] = {
            "warm_start": summary["accuracy_before"],
            "without_final": without["curve"][-1],
            "with_equal_steps": at_step(with_ds["curve"], without["curve"][-1]["step"]),
            "with_equal_rollouts": within[-1] if within else None,
            "with_final": with_ds["curve"][-1],
            "without": without,
            "with": with_ds,
        }
        (out / "dynamic_sampling.json").write_text(json.dumps(rows, indent=2))
    lines = ["| seed | warm start | without: steps, greedy | with, equal steps | with, equal rollouts | with: steps, "
             "greedy | zero_std_trained without / with | rounds per step | s/step without / with |",
             "|---" * 9 + "|"]  # fmt: skip
    for seed, r in rows.items():
        w, d = r["without"], r["with"]
        eq = r["with_equal_rollouts"]
        eq_cell = f"{eq['accuracy']:.3f} (step {eq['step']})" if eq else "-"
        lines.append(
            f"| {seed} | {r['warm_start']:.3f} | {r['without_final']['step']}, {r['without_final']['accuracy']:.3f} "
            f"| {r['with_equal_steps']['accuracy']:.3f} (step {r['with_equal_steps']['step']}) | {eq_cell} "
            f"| {r['with_final']['step']}, {r['with_final']['accuracy']:.3f} "
            f"| {w['zero_std_trained']:.3f} / {d['zero_std_trained']:.3f} | {d['generation_rounds']:.2f} "
            f"| {w['seconds_per_step']:.2f} / {d['seconds_per_step']:.2f} |"
        )
    (out / "dynamic_sampling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
