"""``observe-r1 demo``: the whole Observe-R1 story on a laptop CPU, no GPU, no download (about 8 minutes).

    observe-r1 demo --out demo/            # full run
    observe-r1 demo --quick --out demo/    # smaller, under 2 minutes (CI smoke test)

Stages, each timed and printed:
  1. build a small Qwen2.5-VL locally;
  2. synthesise the visual counting task (train pool and a held-out split from disjoint seeds);
  3. warm start by SFT on templated observe/think/answer responses from a *deliberately biased* teacher
     (correct descriptions, but the final count is one too high on ``error_rate`` of the examples);
  4. rate the train pool with the NeuraLadder builder (k samples each) and lay out the ladder;
  5. evaluate the warm start on the held-out split (greedy and sampled);
  6. Observe-R1 RL in ladder order, bonus floor scaled to this task's response lengths, KL anchor;
  7. evaluate again; write summary.json, report.md and plots.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from observe_r1.config import ObserveR1Config
from observe_r1.data import load_grpo_dataset
from observe_r1.eval import compare, evaluate
from observe_r1.generation import HFGenerator
from observe_r1.jsonl import read_jsonl
from observe_r1.ladder.build import build, plot_stats, write_mix
from observe_r1.models import build_tiny_model, load_policy
from observe_r1.plots import plot_metrics, pyplot
from observe_r1.synth import generate_items, write_dataset
from observe_r1.train import build_trainer, save_final
from observe_r1.trainer import ObserveR1Trainer
from observe_r1.warmstart import encode_sft, sft, teacher_response


@dataclass
class DemoScale:
    """Sizes and settings of one demo run (the full run; :meth:`quick` for the CI smoke test)."""

    model_size: str = "small"
    sft_items: int = 2000
    sft_steps: int = 1000
    error_rate: float = 0.6  # share of teacher answers that are one too high
    pool_items: int = 1400
    k: int = 8
    rl_steps: int = 150
    prompts_per_step: int = 8
    num_generations: int = 8
    learning_rate: float = 1e-4
    beta: float = 0.04
    # Levels above 3/4 (at most 1 of 8 samples right) are left out of the demo's training sequence: on this task
    # they are dominated by answer 0, and training through them taught the policy to describe one shape and
    # answer 0 (held-out greedy 0.26 -> 0.235 over the full ladder vs 0.26 -> 0.36 up to 3/4; docs/benchmarks.md).
    max_difficulty: float = 0.75
    heldout_items: int = 200
    eval_samples: int = 4
    max_new_tokens: int = 64

    @classmethod
    def quick(cls) -> DemoScale:
        """The smaller scale of ``observe-r1 demo --quick`` (under 2 minutes)."""
        return cls(sft_items=600, sft_steps=120, pool_items=200, k=4, rl_steps=20, heldout_items=64, eval_samples=2)


@contextmanager
def stage(name: str, timings: dict):
    """Print, run and time one named demo stage into ``timings``."""
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 1)
    print(f"   done in {timings[name]} s", flush=True)


def bonus_floor(ladder_dir: Path, percentile: float = 90.0) -> int:
    """A floor that binds on this task: the 90th percentile length of the correct rating responses.

    The paper uses 100 tokens for 8k-token reasoning (docs/method.md §4); here responses are 30-50 tokens. With
    the median as the floor, the bonus paid the shortest correct response often enough that the policy learned to
    drop objects from its <observe> description and answer 0 (held-out greedy accuracy 0.26 -> 0.27, correct-answer
    length 41 -> 29 tokens); at the 90th percentile the descriptions kept their length (see docs/benchmarks.md).
    """
    lengths = sorted(n for row in read_jsonl(ladder_dir / "rating.jsonl")
                     for n, c in zip(row["lengths"], row["correct"], strict=True) if c)  # fmt: skip
    return int(lengths[int(len(lengths) * percentile / 100)]) if lengths else 0


class LearningCurve(TrainerCallback):
    """Held-out greedy accuracy at fractions of the RL steps, measured inside training (greedy decoding draws no
    random numbers, so the run trains exactly as it would without it)."""

    def __init__(self, heldout: Path, out: Path, max_new_tokens: int, fractions=(0.25, 0.5, 0.75), every=None):
        """Measure at ``fractions`` of the run's steps, or every ``every`` steps when given."""
        self.heldout, self.out, self.max_new_tokens = heldout, out, max_new_tokens
        self.fractions, self.every = fractions, every
        self.points: list[dict] = []
        self.steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        """Decide the steps to measure at, from the run's length."""
        if self.every:
            self.steps = set(range(self.every, state.max_steps, self.every))
        else:
            self.steps = {max(1, round(f * state.max_steps)) for f in self.fractions} - {state.max_steps}

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        """Evaluate the current policy greedily when a measuring step is reached."""
        if state.global_step not in self.steps:
            return
        generator = HFGenerator(model, processing_class, batch_size=64, max_new_tokens=self.max_new_tokens)
        result = evaluate(generator, self.heldout, self.out / f"step-{state.global_step}")
        model.train()
        self.points.append({"step": state.global_step, "accuracy": result["accuracy"]})


def run_rl(
    model_dir: Path,
    train_file: Path,
    out: Path,
    scale: DemoScale,
    floor: int,
    seed: int,
    callbacks: list | None = None,
    **recipe,
) -> ObserveR1Trainer:
    """Observe-R1 RL from ``model_dir`` on ``train_file``; ``recipe`` overrides config fields (ablations)."""
    model, processor = load_policy(model_dir)
    dataset, _ = load_grpo_dataset(train_file)
    steps = min(scale.rl_steps, len(dataset) // scale.prompts_per_step)
    config = ObserveR1Config(**{
        "output_dir": str(out), "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "per_device_train_batch_size": scale.prompts_per_step * scale.num_generations,
        "num_generations": scale.num_generations, "max_completion_length": scale.max_new_tokens,
        "learning_rate": scale.learning_rate, "lr_scheduler_type": "constant", "beta": scale.beta,
        "max_steps": steps, "logging_steps": 1, "save_strategy": "no", "report_to": ["tensorboard"], "seed": seed,
        "bonus_min_length": floor, "reward_workers": 1, "disable_tqdm": False, "curriculum": "ordered", **recipe,
    })  # fmt: skip
    trainer = build_trainer(model, processor, dataset, config, callbacks=callbacks)
    trainer.train()
    save_final(trainer, processor)
    return trainer


def rl_curve(demo_dir: Path, out: Path, seed: int, scale: DemoScale, every: int | None = None, **recipe) -> list:
    """RL (:func:`run_rl` into ``out/rl``) from the warm start of a demo directory on its ladder, with held-out
    greedy accuracy measured during training (at 25/50/75 %, or every ``every`` steps) and after it; returns the
    points ``[{step, accuracy}, ...]``, the last one after training (``bench/`` comparisons use it)."""
    heldout = demo_dir / "data" / "heldout.jsonl"
    during = LearningCurve(heldout, out / "eval-during", scale.max_new_tokens, every=every)
    trainer = run_rl(demo_dir / "warmstart", demo_dir / "ladder" / "train.jsonl", out / "rl", scale,
                     bonus_floor(demo_dir / "ladder"), seed, callbacks=[during], **recipe)  # fmt: skip
    model, processor = load_policy(out / "rl" / "final")
    generator = HFGenerator(model, processor, batch_size=64, max_new_tokens=scale.max_new_tokens)
    final = evaluate(generator, heldout, out / "eval-final")
    return [*during.points, {"step": trainer.state.global_step, "accuracy": final["accuracy"]}]


def evaluate_both(model_dir: Path, heldout: Path, out: Path, scale: DemoScale) -> dict:
    """Greedy and sampled held-out evaluation of ``model_dir`` into ``out/greedy`` and ``out/sampled``."""
    model, processor = load_policy(model_dir)
    generator = HFGenerator(model, processor, batch_size=64, max_new_tokens=scale.max_new_tokens)
    greedy = evaluate(generator, heldout, out / "greedy")
    sampled = evaluate(generator, heldout, out / "sampled", samples=scale.eval_samples, temperature=1.0)
    return {"greedy": greedy, "sampled": sampled}


def run_demo(out: str | Path, *, quick: bool = False, seed: int = 0) -> dict:
    """The whole demo into ``out`` (replaced); returns the summary also written to ``summary.json``."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scale = DemoScale.quick() if quick else DemoScale()
    random.seed(seed)
    torch.manual_seed(seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    with stage("1. build a small Qwen2.5-VL locally", timings):
        build_tiny_model(out / "model-init", size=scale.model_size, seed=seed)
    with stage("2. synthesise the task (train pool, held-out split)", timings):
        sft_items = generate_items(scale.sft_items, seed=10_000 + seed)
        pool = write_dataset(generate_items(scale.pool_items, seed=20_000 + seed), out / "data", "pool.jsonl")
        heldout = write_dataset(generate_items(scale.heldout_items, seed=90_000 + seed), out / "data", "heldout.jsonl")
    with stage(f"3. warm start: SFT on a biased teacher ({scale.error_rate:.0%} of counts +1)", timings):
        model, processor = load_policy(out / "model-init")
        rng = random.Random(seed)
        examples = encode_sft(processor, sft_items, [teacher_response(it, rng, scale.error_rate) for it in sft_items])
        losses = sft(model, processor, examples, steps=scale.sft_steps, lr=2e-3, seed=seed, progress=print_sft_step)
        model.save_pretrained(out / "warmstart")
        processor.save_pretrained(out / "warmstart")
    with stage(f"4. NeuraLadder: rate the pool (k={scale.k}) and lay out the ladder", timings):
        generator = HFGenerator(model, processor, batch_size=64, max_new_tokens=scale.max_new_tokens)
        stats = build([str(pool)], generator, out / "ladder", k=scale.k, seed=seed)
        train_file = write_mix(out / "ladder", out / "ladder" / "train.jsonl", seed=seed,
                               max_difficulty=scale.max_difficulty)  # fmt: skip
        plot_stats(out / "ladder")
        floor = bonus_floor(out / "ladder")
        print(f"   levels: {[row['count'] for row in stats['levels']]}; bonus floor {floor} tokens")
    with stage("5. evaluate the warm start on the held-out split", timings):
        before = evaluate_both(out / "warmstart", heldout, out / "eval-before", scale)
    with stage("6. Observe-R1 RL in ladder order (held-out greedy accuracy measured at 25/50/75 %)", timings):
        curve = LearningCurve(heldout, out / "eval-during", scale.max_new_tokens)
        trainer = run_rl(out / "warmstart", train_file, out / "rl", scale, floor, seed, callbacks=[curve])
    with stage("7. evaluate after RL", timings):
        after = evaluate_both(out / "rl" / "final", heldout, out / "eval-after", scale)
        compare([out / "eval-before" / "greedy", out / "eval-after" / "greedy"], out / "plots",
                labels=["before RL", "after RL"])  # fmt: skip
        plot_metrics(out / "rl" / "metrics.jsonl", out / "plots")
        learning_curve = [{"step": 0, "accuracy": before["greedy"]["accuracy"]}, *curve.points,
                          {"step": trainer.state.global_step, "accuracy": after["greedy"]["accuracy"]}]  # fmt: skip
        plot_learning_curve(learning_curve, majority_baseline(heldout), out / "plots" / "learning_curve.png")
        shutil.copy(out / "ladder" / "stats.png", out / "plots" / "ladder.png")

    summary = {
        "accuracy_before": before["greedy"]["accuracy"],
        "accuracy_after": after["greedy"]["accuracy"],
        "sampled_accuracy_before": before["sampled"]["accuracy"],
        "sampled_accuracy_after": after["sampled"]["accuracy"],
        "format_rate_before": before["greedy"]["format_rate"],
        "format_rate_after": after["greedy"]["format_rate"],
        "mean_tokens_correct_before": before["greedy"]["mean_tokens_correct"],
        "mean_tokens_correct_after": after["greedy"]["mean_tokens_correct"],
        "per_family_before": before["greedy"]["per_category"],
        "per_family_after": after["greedy"]["per_category"],
        "majority_baseline": majority_baseline(heldout),
        "learning_curve": learning_curve,
        "sft_final_loss": losses[-1],
        "rl_steps": trainer.state.global_step,
        "bonus_min_length": floor,
        "ladder_levels": stats["levels"],
        "stage_seconds": timings,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "scale": asdict(scale),
        "seed": seed,
        "quick": quick,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(report_markdown(summary))
    print(f"\naccuracy (held-out, greedy): {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f}")
    print(f"report: {out / 'report.md'}")
    return summary


def plot_learning_curve(points: list[dict], baseline: float, path: Path) -> Path:
    """Held-out greedy accuracy against RL steps, with the majority-answer baseline as a line."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p["step"] for p in points], [p["accuracy"] for p in points], marker="o", label="Observe-R1 (greedy)")
    ax.axhline(baseline, color="grey", linestyle="--", label=f"majority answer ({baseline:.3f})")
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_sft_step(step: int, loss: float) -> None:
    """Progress line of the warm start, every 50 steps."""
    if step % 50 == 0:
        print(f"   sft step {step:4d}  loss {loss:.3f}", flush=True)


def majority_baseline(heldout: Path) -> float:
    """Accuracy of always answering the most common held-out answer."""
    answers = [row["answer"] for row in read_jsonl(heldout)]
    return max(answers.count(a) for a in set(answers)) / len(answers)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report_markdown(s: dict) -> str:
    """``report.md`` of a demo summary."""
    fams = sorted(s["per_family_before"])
    rows = "\n".join(
        f"| {f} | {s['per_family_before'][f]:.2f} | {s['per_family_after'].get(f, 0):.2f} |" for f in fams
    )
    timing = "\n".join(f"| {k} | {v} |" for k, v in s["stage_seconds"].items())
    curve = "\n".join(f"| {p['step']} | {p['accuracy']:.3f} |" for p in s["learning_curve"])
    return f"""# observe-r1 demo report

A {s["scale"]["model_size"]} Qwen2.5-VL built locally learns to count coloured shapes with Observe-R1.

**How the warm start was made.** There are no pretrained weights here, so the model is first fine-tuned on
{s["scale"]["sft_items"]} templated observe/think/answer responses. The teacher is deliberately biased: its
descriptions are exact, but on {s["scale"]["error_rate"]:.0%} of the examples its final count is one too high.
RL then has to remove an error that the verifiable reward can see (its rewards use the true answers).

| held-out ({s["scale"]["heldout_items"]} items) | before RL | after RL |
|---|---|---|
| greedy accuracy | {s["accuracy_before"]:.3f} | **{s["accuracy_after"]:.3f}** |
| sampled accuracy (T=1, {s["scale"]["eval_samples"]} samples) | {s["sampled_accuracy_before"]:.3f} \
| {s["sampled_accuracy_after"]:.3f} |
| format rate | {s["format_rate_before"]:.3f} | {s["format_rate_after"]:.3f} |
| mean tokens of correct answers | {_fmt(s["mean_tokens_correct_before"])} | {_fmt(s["mean_tokens_correct_after"])} |

Majority-answer baseline: {s["majority_baseline"]:.3f}. RL: {s["rl_steps"]} steps of
{s["scale"]["prompts_per_step"]} prompts × {s["scale"]["num_generations"]} samples in ladder order,
bonus floor {s["bonus_min_length"]} tokens (90th percentile of correct rating responses), KL β =
{s["scale"]["beta"]}, learning rate {s["scale"]["learning_rate"]}.

Learning curve (held-out greedy accuracy, `plots/learning_curve.png`):

| RL step | accuracy |
|---|---|
{curve}

| family | greedy before | greedy after |
|---|---|---|
{rows}

Plots: `plots/learning_curve.png`, `plots/rewards.png`, `plots/length.png`, `plots/weight.png`,
`plots/curriculum.png`, `plots/sampling.png`, `plots/ladder.png`, `plots/compare.png`. The training sequence stops
at difficulty {s["scale"]["max_difficulty"]}: the levels above it (items the warm start solved at most once in
{s["scale"]["k"]} samples) are left for review, not trained on.

| stage | seconds |
|---|---|
{timing}

Total: {s["total_seconds"]} s. Seed {s["seed"]}{" (quick mode)" if s["quick"] else ""}.
"""
