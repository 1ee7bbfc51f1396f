"""Step time of ObserveR1Trainer vs plain GRPOTrainer on the same tiny model, data, rewards and seed.

    .venv/bin/python bench/trainer_overhead.py [--steps 30] [--repeats 3]

Both trainers get the same reward functions and weights; the difference is the Observe-R1 additions
(gathering lengths, group_advantages with bonus and dynamic weight, extra metrics, consumed-prompt log), and in a
third run dynamic sampling as well (its steps generate as many rounds as they need: their count is reported).
Runs alternate between the two trainers to spread machine noise; the median per-step time is reported.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from observe_r1.config import ObserveR1Config
from observe_r1.data import load_grpo_dataset
from observe_r1.models import build_tiny_model, load_policy
from observe_r1.rewards import AccuracyReward, FormatReward
from observe_r1.synth import generate_items, write_dataset
from observe_r1.train import build_trainer


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def run(kind: str, model_dir: Path, dataset, out: str, steps: int) -> list[float]:
    common = dict(output_dir=out, use_cpu=True, bf16=False, gradient_checkpointing=False,
                  per_device_train_batch_size=32, num_generations=8, max_completion_length=32, learning_rate=1e-4,
                  beta=0.0, max_steps=steps, logging_steps=1, save_strategy="no", report_to=[], seed=0,
                  shuffle_dataset=False, disable_tqdm=True)  # fmt: skip
    model, processor = load_policy(model_dir)
    rewards = [AccuracyReward(workers=1), FormatReward()]
    timer = StepTimer()
    if kind.startswith("observe_r1"):
        common.pop("shuffle_dataset")
        args = ObserveR1Config(**common, curriculum="ordered", bonus_min_length=16, reward_workers=1,
                               dynamic_sampling=kind == "observe_r1_dynamic_sampling")  # fmt: skip
        trainer = build_trainer(model, processor, dataset, args, reward_funcs=rewards, callbacks=[timer],
                                concise_progress=False)  # fmt: skip
    else:
        args = GRPOConfig(**common, reward_weights=[1.0, 0.5])
        trainer = GRPOTrainer(model=model, args=args, reward_funcs=rewards, train_dataset=dataset,
                              processing_class=processor, callbacks=[timer])  # fmt: skip
    trainer.train()
    rounds = [row["dynamic_sampling/generation_rounds"] for row in trainer.state.log_history
              if "dynamic_sampling/generation_rounds" in row]  # fmt: skip
    ROUNDS.setdefault(kind, []).extend(rounds[3:])
    return timer.times[3:]  # drop warm-up steps


ROUNDS: dict[str, list[float]] = {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/trainer_overhead.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model_dir = build_tiny_model(tmp / "model", size="tiny", seed=0)
    dataset, _ = load_grpo_dataset(write_dataset(generate_items(args.steps * 4 + 8, seed=0), tmp / "data"))
    kinds = ["grpo", "observe_r1", "observe_r1_dynamic_sampling"]
    times = {k: [] for k in kinds}
    for r in range(args.repeats):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            times[kind] += run(kind, model_dir, dataset, str(tmp / f"{kind}{r}"), args.steps)
    medians = {k: statistics.median(v) for k, v in times.items()}
    results = {"median_step_s": medians, "steps_measured": {k: len(v) for k, v in times.items()},
               "overhead_percent": {k: 100 * (medians[k] / medians["grpo"] - 1) for k in kinds[1:]},
               "mean_generation_rounds": {k: statistics.mean(v) for k, v in ROUNDS.items() if v}}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
