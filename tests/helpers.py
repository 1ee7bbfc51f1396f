"""Shared test helpers: tiny configs, scripted reward functions, synthetic datasets."""

from __future__ import annotations

from observe_r1.config import ObserveR1Config
from observe_r1.data import load_grpo_dataset
from observe_r1.rewards import completion_text
from observe_r1.synth import generate_items, write_dataset


def tiny_config(output_dir, **overrides) -> ObserveR1Config:
    values = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
        learning_rate=1e-2,
        beta=0.0,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        bonus_min_length=4,
        reward_workers=1,
    )
    values.update(overrides)
    return ObserveR1Config(**values)


def synth_dataset(tmp_path, n=16, seed=0):
    path = write_dataset(generate_items(n, seed), tmp_path / "data")
    dataset, _ = load_grpo_dataset(path)
    return path, dataset


class ParityAccuracy:
    """Scripted 'accuracy': 1.0 for completions of odd character length, so groups have reward variance."""

    __name__ = "accuracy"

    def __call__(self, completions, **kwargs):
        return [float(len(completion_text(c)) % 2) for c in completions]


class ConstantAccuracy:
    """Every completion scores the same: zero-variance groups, zero advantages, no parameter may move."""

    __name__ = "accuracy"

    def __call__(self, completions, **kwargs):
        return [1.0] * len(completions)
