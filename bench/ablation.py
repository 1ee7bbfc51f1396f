"""The paper's ablation at CPU scale as learning curves, from the same warm starts and ladders, at equal budgets.

    .venv/bin/python bench/ablation.py [--demo-dir bench/results/demo] [--seeds 0 1 2 3 4] [--variants ...]
    .venv/bin/python bench/ablation.py --report-only         # tables and plot from the runs already made
    .venv/bin/python bench/ablation.py --reuse OLD/ablation.json --reuse-variants plain_grpo ...  # earlier runs

Needs the per-seed demo directories written by bench/demo_seeds.py (warm start, ladder, held-out split). Each
variant trains from a seed's warm start for as many steps as that seed's demo RL run (one pass over its ladder),
and held-out greedy accuracy is measured at 0, 25, 50, 75 and 100 % of the steps. Observe-R1 *is* the demo's own
run (its learning curve is reused). Variants (docs/method.md §6): plain GRPO (shuffled, no bonus, no weighting),
random order (full rewards, shuffled), no bonus, no weighting, Observe-R1 and plain GRPO each with dynamic
sampling, and Observe-R1 with the paced curriculum (with and without dynamic sampling; ``_fast``: a window of 8
groups, one step, instead of 16). Each run writes
OUT/VARIANT/seed-S/result.json (so several invocations can share the work); the report gives accuracy at each
curve point and the area under the curve (accuracy averaged over the run, trapezoids), mean ± standard error over
seeds, and a plot. ``--reuse`` copies the named variants' curves from an earlier ablation.json instead of running
them again: only valid when the demo runs (warm starts, ladders) and those variants' code are unchanged; check that
the demo summaries are identical and rerun one reused variant on one seed first (docs/benchmarks.md says how it was
checked).
"""

import argparse
import json
import statistics
from pathlib import Path

from observe_r1.demo import DemoScale, rl_curve
from observe_r1.plots import pyplot

PLAIN = {"curriculum": "shuffled", "use_bonus": False, "use_dyna_weight": False}
VARIANTS = {
    "observe_r1": {},
    "plain_grpo": PLAIN,
    "random_order": {"curriculum": "shuffled"},
    "no_bonus": {"use_bonus": False},
    "no_weighting": {"use_dyna_weight": False},
    # both with dynamic sampling (docs/dynamic_sampling.md): groups with no signal are replaced before training
    "observe_r1_ds": {"dynamic_sampling": True},
    "plain_grpo_ds": {**PLAIN, "dynamic_sampling": True},
    # the paced curriculum (docs/curriculum.md): the rest of a ladder level is skipped once the policy masters it,
    # and mastered levels stay out of later epochs
    "observe_r1_paced": {"curriculum": "paced"},
    "observe_r1_paced_ds": {"curriculum": "paced", "dynamic_sampling": True},
    "observe_r1_paced_ds_fast": {"curriculum": "paced", "dynamic_sampling": True, "pace_window": 8},
}
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def run_variant(demo: Path, name: str, out: Path, seed: int) -> dict:
    """One variant's learning curve from one seed's warm start (reused when already written)."""
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    summary = json.loads((demo / "summary.json").read_text())
    if name == "observe_r1":
        curve = summary["learning_curve"]
    else:
        points = rl_curve(demo, out, seed, DemoScale(rl_steps=summary["rl_steps"]), **VARIANTS[name])
        curve = [{"step": 0, "accuracy": summary["accuracy_before"]}, *points]
    result = {"curve": curve, "auc": area(curve), "majority_baseline": summary["majority_baseline"]}
    out.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def area(curve: list[dict]) -> float:
    """Accuracy averaged over the run: the trapezoid area under the curve with steps scaled to [0, 1]."""
    last = curve[-1]["step"]
    pairs = zip(curve, curve[1:], strict=False)
    return sum((b["step"] - a["step"]) / last * (a["accuracy"] + b["accuracy"]) / 2 for a, b in pairs)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean."""
    if len(values) < 2:
        return values[0], 0.0
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def report(results: dict, seeds: list[int], out: Path, references: tuple[str, ...] = ("observe_r1",)) -> str:
    """Markdown tables and OUT/ablation.png from ``results[variant][seed]``; one table of paired differences
    (by seed) for each of ``references`` against every other variant."""
    plt = pyplot()

    header = "| variant | seeds | " + " | ".join(f"{f:.0%} of steps" for f in FRACTIONS) + " | AUC |"
    lines = [header, "|---" * (len(FRACTIONS) + 3) + "|"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in VARIANTS:
        runs = [results[name][s] for s in seeds if s in results.get(name, {})]
        if not runs:
            continue
        cells, means, errors = [], [], []
        for i in range(len(FRACTIONS)):
            m, se = mean_se([r["curve"][i]["accuracy"] for r in runs])
            cells.append(f"{m:.3f} ± {se:.3f}")
            means.append(m)
            errors.append(se)
        m, se = mean_se([r["auc"] for r in runs])
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | **{m:.3f} ± {se:.3f}** |")
        ax.errorbar([100 * f for f in FRACTIONS], means, yerr=errors, marker="o", capsize=3, label=name)
    baselines = [r["majority_baseline"] for runs in results.values() for r in runs.values()]
    ax.axhline(statistics.mean(baselines), color="grey", linestyle="--", label="majority answer (mean)")
    ax.set_xlabel("% of RL steps (one pass over the ladder)")
    ax.set_ylabel("held-out greedy accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"ablation, mean ± s.e. over {len(seeds)} seeds")
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=100)
    plt.close(fig)
    per_seed = ["| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---" * (len(seeds) + 1) + "|"]
    for name in VARIANTS:
        cells = [f"{results[name][s]['curve'][-1]['accuracy']:.3f} (AUC {results[name][s]['auc']:.3f})"
                 if s in results.get(name, {}) else "-" for s in seeds]  # fmt: skip
        per_seed.append(f"| {name} | " + " | ".join(cells) + " |")
    paired = [paired_table(results, seeds, reference) for reference in references]
    return (
        "\n".join(lines)
        + "\n\nFinal greedy accuracy per seed (AUC):\n\n"
        + "\n".join(per_seed)
        + "\n\nPaired by seed (same warm start), mean ± s.e. of the difference:\n\n"
        + "\n\n".join(paired)
        + "\n"
    )


def paired_table(results: dict, seeds: list[int], reference: str) -> str:
    """``reference`` minus each other variant, seed by seed: AUC, accuracy at 25 % and at the end, with how many
    seeds the reference is below (ties count as neither)."""
    rows = [f"| {reference} minus | AUC | at 25 % | at 100 % |", "|---|---|---|---|"]
    for name in VARIANTS:
        common = [s for s in seeds if s in results.get(name, {}) and s in results.get(reference, {})]
        if name == reference or len(common) < 2:
            continue
        cells = []
        for pick in (lambda r: r["auc"], lambda r: r["curve"][1]["accuracy"], lambda r: r["curve"][-1]["accuracy"]):
            diffs = [pick(results[reference][s]) - pick(results[name][s]) for s in common]
            m, se = mean_se(diffs)
            cells.append(f"{m:+.3f} ± {se:.3f} ({sum(d < 0 for d in diffs)}/{len(diffs)} seeds below)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-dir", default="bench/results/demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="bench/results/ablation")
    parser.add_argument("--report-only", action="store_true", help="Only aggregate the runs already written.")
    parser.add_argument("--reuse", help="An earlier ablation.json; its --reuse-variants curves are kept.")
    parser.add_argument("--reuse-variants", nargs="+", default=[], choices=list(VARIANTS))
    parser.add_argument(
        "--paired-against",
        nargs="+",
        default=["observe_r1"],
        choices=list(VARIANTS),
        help="Variants whose paired differences with every other variant are tabled.",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        for name in args.reuse_variants:
            for seed, result in earlier[name].items():
                path = out / name / f"seed-{seed}" / "result.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    path.write_text(json.dumps(result | {"reused_from": args.reuse}, indent=2))
    results: dict = {}
    for seed in args.seeds:
        for name in args.variants if not args.report_only else VARIANTS:
            path = out / name / f"seed-{seed}"
            if args.report_only and not (path / "result.json").exists():
                continue
            results.setdefault(name, {})[seed] = run_variant(Path(args.demo_dir) / f"seed-{seed}", name, path, seed)
    text = report(results, args.seeds, out, tuple(args.paired_against))
    (out / "ablation.json").write_text(json.dumps({n: {str(s): r for s, r in v.items()} for n, v in results.items()}))
    (out / "ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
