"""Dynamic sampling on the demo task: the same warm starts and ladders, RL with and without refills.

    .venv/bin/python bench/dynamic_sampling.py [--demo-dir bench/results/demo] [--seeds 0 1 2]

Both runs start from a seed's demo warm start and make one pass over its ladder (the demo's RL settings), with
held-out greedy accuracy measured every 10 steps and at the end. Without: the demo's RL as it is. With:
`dynamic_sampling=True, max_generation_rounds=4` (the prompt cursor stops when the ladder is used up, so the run
has fewer optimizer steps). Compared at an equal number of optimizer steps (the last multiple of 10 both reached)
and at an equal number of rollouts (one pass over the same prompts each); zero_std_trained and seconds per step
from metrics.jsonl. Writes OUT/dynamic_sampling.json and OUT/dynamic_sampling.md.

    .venv/bin/python bench/dynamic_sampling.py --timing-steps 30 [--seeds 0]

Seconds per step alone on the machine (run nothing else): both settings for 30 steps from the first seed's warm
start, no held-out evaluation; writes OUT/timing.json.
"""

import argparse
import json
import statistics
from pathlib import Path

from observe_r1.demo import DemoScale, bonus_floor, rl_curve, run_rl
from observe_r1.jsonl import read_jsonl


def run(demo: Path, out: Path, seed: int, **recipe) -> dict:
    """One RL run from a seed's warm start with its learning curve (skipped when its result exists)."""
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    points = rl_curve(demo, out, seed, DemoScale(), every=10, **recipe)
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
        total += row["prompts_generated"]
        consumed.append(total)
    return {
        "steps": len(rows),
        "cumulative_prompts": consumed,
        "zero_std_trained": mean("zero_std_trained"),
        "zero_std_generated": mean("zero_std_generated"),
        "generation_rounds": mean("generation_rounds"),
        "seconds_per_step": statistics.median(r["step_time"] for r in rows if "step_time" in r),
    }


def accuracy_at(curve: list[dict], step: int) -> float:
    """The curve's accuracy at ``step`` (a measured point)."""
    return next(p["accuracy"] for p in curve if p["step"] == step)


def timing(demo: Path, out: Path, seed: int, steps: int) -> None:
    """Median seconds per optimizer step and per generated prompt, with and without dynamic sampling."""
    floor = bonus_floor(demo / "ladder")
    result = {}
    for name, recipe in (("without", {}), ("with", {"dynamic_sampling": True, "max_generation_rounds": 4})):
        run_dir = out / "timing" / name
        run_rl(demo / "warmstart", demo / "ladder" / "train.jsonl", run_dir, DemoScale(rl_steps=steps), floor, seed,
               **recipe)  # fmt: skip
        stats = step_stats(run_dir / "metrics.jsonl")
        rows = read_jsonl(run_dir / "metrics.jsonl")
        per_prompt = statistics.median(r["step_time"] / r["prompts_generated"] for r in rows)
        result[name] = {"steps": stats["steps"], "seconds_per_step": stats["seconds_per_step"],
                        "seconds_per_prompt": per_prompt, "generation_rounds": stats["generation_rounds"],
                        "prompts_per_step": stats["cumulative_prompts"][-1] / stats["steps"]}  # fmt: skip
    (out / "timing.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-dir", default="bench/results/demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/dynamic_sampling")
    parser.add_argument("--timing-steps", type=int, default=0, help="Only time this many steps of each setting.")
    args = parser.parse_args()
    out = Path(args.out)
    if args.timing_steps:
        return timing(Path(args.demo_dir) / f"seed-{args.seeds[0]}", out, args.seeds[0], args.timing_steps)
    rows = {}
    for seed in args.seeds:
        demo = Path(args.demo_dir) / f"seed-{seed}"
        summary = json.loads((demo / "summary.json").read_text())
        without = run(demo, out / f"seed-{seed}" / "without", seed)
        with_ds = run(demo, out / f"seed-{seed}", seed, dynamic_sampling=True, max_generation_rounds=4,
                      max_steps=-1, num_train_epochs=1)  # fmt: skip
        common = 10 * (min(without["steps"], with_ds["steps"]) // 10)
        rows[seed] = {
            "warm_start": summary["accuracy_before"],
            "equal_steps": {"step": common, "without": accuracy_at(without["curve"], common),
                            "with": accuracy_at(with_ds["curve"], common)},
            "equal_rollouts": {"without": without["curve"][-1], "with": with_ds["curve"][-1]},
            "without": without,
            "with": with_ds,
        }  # fmt: skip
        (out / "dynamic_sampling.json").write_text(json.dumps(rows, indent=2))
    lines = ["| seed | warm start | equal steps: step, without / with | one pass (equal rollouts): without (steps) "
             "/ with (steps) | zero_std_trained without / with | rounds per step | s/step without / with |",
             "|---" * 7 + "|"]  # fmt: skip
    for seed, r in rows.items():
        w, d, eq, er = r["without"], r["with"], r["equal_steps"], r["equal_rollouts"]
        lines.append(
            f"| {seed} | {r['warm_start']:.3f} | {eq['step']}, {eq['without']:.3f} / {eq['with']:.3f} "
            f"| {er['without']['accuracy']:.3f} ({er['without']['step']}) / {er['with']['accuracy']:.3f} "
            f"({er['with']['step']}) | {w['zero_std_trained']:.3f} / {d['zero_std_trained']:.3f} "
            f"| {d['generation_rounds']:.2f} | {w['seconds_per_step']:.2f} / {d['seconds_per_step']:.2f} |"
        )
    (out / "dynamic_sampling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
