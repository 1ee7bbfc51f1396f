"""What a curriculum trained on, step by step: the ladder level of the trained prompts, epochs, skips, idle groups.

    .venv/bin/python bench/pace_trace.py --demo-dir bench/results/demo --ablation-dir bench/results/ablation \
        --variants observe_r1_paced_ds observe_r1_ds --seeds 0 1 --out bench/results/pace_trace

Reads each run's ``rl/consumed.jsonl`` and ``rl/metrics.jsonl`` (written by bench/ablation.py under
ABLATION_DIR/VARIANT/seed-S; the ``observe_r1`` variant is the demo's own run under DEMO_DIR/seed-S) and the seed's
ladder (``ladder/train.jsonl``: each prompt's ``stretch_level``). Writes OUT/pace_trace.json (per run and quarter of
the steps: mean level of the trained prompts, distinct prompts trained, repeats, share of generated groups with no
signal; epochs, skipped prompts), OUT/pace_trace.md and OUT/pace_trace.png (trained level per step).
"""

import argparse
import json
import statistics
from pathlib import Path

from observe_r1.jsonl import read_jsonl
from observe_r1.plots import pyplot


def trace(run: Path, ladder: Path) -> dict:
    """One run's steps: the mean ladder level trained, the epoch (a trained prompt seen again starts one), skips."""
    level = {row["id"]: row.get("stretch_level", row.get("difficulty")) for row in read_jsonl(ladder)}
    consumed, metrics = read_jsonl(run / "consumed.jsonl"), read_jsonl(run / "metrics.jsonl")
    steps, seen, epoch = [], set(), 0
    for row in consumed:
        generated = row["ids"] + row.get("dropped", []) + row.get("surplus", [])
        if seen & set(generated):
            epoch, seen = epoch + 1, set()
        seen |= set(generated) | set(row.get("skipped", []))
        steps.append({"step": row["step"], "epoch": epoch, "level": statistics.mean(level[i] for i in row["ids"]),
                      "ids": row["ids"], "skipped": len(row.get("skipped", []))})  # fmt: skip
    no_signal = [m.get("zero_std_generated", float("nan")) for m in metrics]
    quarters = []
    for q in range(4):
        part = steps[q * len(steps) // 4 : (q + 1) * len(steps) // 4]
        ids = [i for s in part for i in s["ids"]]
        signal = no_signal[q * len(steps) // 4 : (q + 1) * len(steps) // 4]
        quarters.append({"mean_level": statistics.mean(s["level"] for s in part), "distinct_prompts": len(set(ids)),
                         "trained_groups": len(ids), "no_signal_generated": statistics.mean(signal)})  # fmt: skip
    return {"epochs": steps[-1]["epoch"] + 1, "skipped": sum(s["skipped"] for s in steps), "quarters": quarters,
            "levels": [s["level"] for s in steps]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-dir", required=True)
    parser.add_argument("--ablation-dir", required=True)
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="bench/results/pace_trace")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quarters = " | ".join(f"Q{q + 1}: level, distinct/groups, no signal" for q in range(4))
    results, lines = {}, [f"| run | epochs | skipped | {quarters} |", "|---" * 7 + "|"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for variant in args.variants:
        for seed in args.seeds:
            demo = Path(args.demo_dir) / f"seed-{seed}"
            run = demo / "rl" if variant == "observe_r1" else Path(args.ablation_dir) / variant / f"seed-{seed}" / "rl"
            if not (run / "consumed.jsonl").is_file():
                continue
            t = trace(run, demo / "ladder" / "train.jsonl")
            results[f"{variant}/seed-{seed}"] = t
            cells = [f"{q['mean_level']:.2f}, {q['distinct_prompts']}/{q['trained_groups']}, "
                     f"{q['no_signal_generated']:.2f}" for q in t["quarters"]]  # fmt: skip
            lines.append(f"| {variant} seed {seed} | {t['epochs']} | {t['skipped']} | " + " | ".join(cells) + " |")
            ax.plot(t["levels"], label=f"{variant} s{seed}", linewidth=1)
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean ladder level trained")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "pace_trace.png", dpi=100)
    plt.close(fig)
    (out / "pace_trace.json").write_text(json.dumps(results, indent=1))
    (out / "pace_trace.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
