"""What a training run logs: the metric schema, the Observe-R1 and sampling metrics of a step, and the callbacks
that print them and write ``metrics.jsonl``.

One spelling per metric, by one rule: the trainer logs ``observe_r1/<name>`` and ``dynamic_sampling/<name>``
(TensorBoard groups them by prefix); ``metrics.jsonl`` and the progress line use ``<name>``, the part after our
prefix. TRL's own metrics (``reward``, ``kl``, ``completions/mean_length`` …) keep TRL's names everywhere.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate.utils import gather
from tqdm.auto import tqdm
from transformers import ProgressCallback, TrainerCallback

from observe_r1.algo import GroupAdvantages
from observe_r1.jsonl import append_jsonl
from observe_r1.mathpool import REWARD_STATS

OURS, SAMPLING = "observe_r1/", "dynamic_sampling/"
REWARD_STAT_KEYS = ("timeout", "unparseable_gold")  # mathpool.REWARD_STATS, logged as totals over every process


def short_name(key: str) -> str:
    """The ``metrics.jsonl`` name of a logged metric: our prefixes dropped, TRL's names kept.

    >>> short_name("observe_r1/accuracy"), short_name("dynamic_sampling/generation_rounds"), short_name("kl")
    ('accuracy', 'generation_rounds', 'kl')
    """
    for prefix in (OURS, SAMPLING):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


class GroupBatch(NamedTuple):
    """Gathered groups of one generation round (or a selection of groups): what the advantages were made of."""

    result: GroupAdvantages  # (n, G) advantages, bonus; (n,) weight, pass rate
    correct: torch.Tensor  # (n, G) bool
    rewards: torch.Tensor  # (n * G, num_reward_funcs), unweighted
    lengths: torch.Tensor  # (n, G)
    sources: list  # (prompt id, dataset row, difficulty) of each of the n * G completions

    def informative(self) -> torch.Tensor:
        """``(n,)`` bool: the group has a non-zero advantage (so it moves the policy)."""
        return (self.result.advantages != 0).any(dim=1)

    def group_ids(self) -> list:
        """The prompt id of each group."""
        G = self.correct.shape[1]
        return [source[0] for source in self.sources[::G]]

    def take(self, groups: list[int]) -> GroupBatch:
        """These groups only."""
        G = self.correct.shape[1]
        index = torch.tensor(groups, dtype=torch.long)
        flat = (index[:, None] * G + torch.arange(G)).flatten()
        result = GroupAdvantages(*(t[index.to(t.device)] for t in self.result))
        sources = [self.sources[i] for i in flat.tolist()]
        return GroupBatch(result, self.correct[index], self.rewards[flat.to(self.rewards.device)],
                          self.lengths[index], sources)  # fmt: skip

    @staticmethod
    def cat(batches: list[GroupBatch]) -> GroupBatch:
        """Groups of several batches, in order."""
        result = GroupAdvantages(*(torch.cat(parts) for parts in zip(*(b.result for b in batches), strict=True)))
        sources = [source for b in batches for source in b.sources]
        return GroupBatch(result, torch.cat([b.correct for b in batches]), torch.cat([b.rewards for b in batches]),
                          torch.cat([b.lengths for b in batches]), sources)  # fmt: skip


def group_metrics(groups: GroupBatch, reward_names: list[str], dataset_size: int | None) -> dict[str, float]:
    """What :func:`observe_r1.algo.group_advantages` used on the trained groups: advantages, accuracy, format,
    bonus and weight, the pass-rate histogram, lengths of right and wrong answers, the ladder position."""
    result, correct, lengths = groups.result, groups.correct, groups.lengths
    G = correct.shape[1]
    out = {
        "advantage_abs_mean": result.advantages.abs().mean().item(),
        "advantage_std": result.advantages.std().item(),
        "accuracy": correct.float().mean().item(),
        "bonus_rate": (result.bonus > 0).any(dim=1).float().mean().item(),
        "dyna_weight_mean": result.weight.mean().item(),
    }
    if "format" in reward_names:
        out["format_rate"] = torch.nanmean(groups.rewards[:, reward_names.index("format")]).item()
    histogram = Counter(round(p * G) for p in result.pass_rate.tolist())
    out |= {f"pass_rate_hist/{k}of{G}": histogram[k] / len(result.pass_rate) for k in range(G + 1)}
    for name, mask in (("correct", correct), ("incorrect", ~correct)):
        if mask.any():
            out[f"length_{name}"] = lengths[mask].float().mean().item()
    difficulties = [d for _, _, d in groups.sources if d is not None and d >= 0]
    if difficulties:
        out["curriculum_difficulty"] = sum(difficulties) / len(difficulties)
    positions = [r for _, r, _ in groups.sources if r is not None and r >= 0]
    if positions and dataset_size:
        out["curriculum_position"] = (max(positions) + 1) / dataset_size
    return {OURS + k: v for k, v in out.items()}


def reward_stat_metrics(device) -> dict[str, float]:
    """Timeouts and unparseable golds so far (``mathpool.REWARD_STATS``), summed over processes: every process
    must call this."""
    local = torch.tensor([float(REWARD_STATS[key]) for key in REWARD_STAT_KEYS], device=device)
    totals = gather(local[None]).sum(dim=0).tolist()
    return {f"{OURS}reward_{key}_total": total for key, total in zip(REWARD_STAT_KEYS, totals, strict=True)}


def sampling_metrics(generated: GroupBatch, trained: GroupBatch, rounds: int) -> dict[str, float]:
    """Dynamic-sampling metrics of a training step (also without dynamic sampling, for comparison)."""
    return {
        SAMPLING + "zero_std_generated": 1.0 - generated.informative().float().mean().item(),
        SAMPLING + "zero_std_trained": 1.0 - trained.informative().float().mean().item(),
        SAMPLING + "generation_rounds": float(rounds),
        SAMPLING + "prompts_generated": float(generated.correct.shape[0]),
    }


class ConciseProgress(ProgressCallback):
    """The progress bar plus one readable line per log: reward, accuracy, advantages' weight, ladder level."""

    FIELDS = [("reward", "reward"), ("acc", OURS + "accuracy"), ("fmt", OURS + "format_rate"),
              ("bonus", OURS + "bonus_rate"), ("weight", OURS + "dyna_weight_mean"),
              ("|adv|", OURS + "advantage_abs_mean"), ("zero-std", SAMPLING + "zero_std_generated"),
              ("rounds", SAMPLING + "generation_rounds"), ("len", "completions/mean_length"),
              ("level d", OURS + "curriculum_difficulty"), ("kl", "kl")]  # fmt: skip

    def on_train_begin(self, args, state, control, **kwargs):
        """The bar only on a terminal: in a log file its carriage returns glue it to the step lines."""
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, disable=not sys.stderr.isatty())
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Print one line per training log through the progress bar."""
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "reward" not in logs:  # end-of-training summary
            return super().on_log(args, state, control, logs=logs, **kwargs)
        parts = [f"{name} {logs[key]:.3g}" for name, key in self.FIELDS if key in logs]
        self.training_bar.write(f"step {state.global_step:4d} | " + " | ".join(parts))


def use_concise_progress(trainer) -> None:
    """Replace the Trainer's log printer (a dict of ~40 numbers per step) with :class:`ConciseProgress`."""
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ConciseProgress())


class MetricsJsonl(TrainerCallback):
    """Append every training log of the main process to ``metrics.jsonl``, under :func:`short_name`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """One line per training log (the end-of-training summary has no reward and is left out)."""
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        append_jsonl(self.path, [{"step": state.global_step, **{short_name(k): v for k, v in logs.items()}}])
