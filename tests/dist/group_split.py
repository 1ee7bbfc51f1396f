"""Run with 2 processes (torchrun --nproc_per_node 2 tests/dist/group_split.py TINY_MODEL OUT_JSON).

Groups of G=4 are split across the processes (6 completions per process). Checks, on every step, that each
process's advantages are its slice of ``group_advantages`` over the gathered batch.
"""

import json
import os
import sys
from pathlib import Path

import torch
from accelerate.utils import gather

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from observe_r1.algo import group_advantages  # noqa: E402
from observe_r1.mathpool import REWARD_STATS  # noqa: E402
from observe_r1.models import load_policy  # noqa: E402
from observe_r1.rewards import FormatReward  # noqa: E402
from observe_r1.train import end_processes  # noqa: E402
from observe_r1.trainer import ObserveR1Trainer  # noqa: E402
from tests.helpers import ParityAccuracy, synth_dataset, tiny_config  # noqa: E402


class CountingParity(ParityAccuracy):
    """ParityAccuracy that also records ``rank + 1`` timeouts per call, so each process counts differently."""

    def __call__(self, completions, **kwargs):
        REWARD_STATS["timeout"] += int(os.environ["RANK"]) + 1
        return super().__call__(completions, **kwargs)


def main(model_dir: str, out_json: str) -> None:
    out = Path(out_json)
    model, processor = load_policy(model_dir)
    # one data folder per process: the process group does not exist yet, so the rank comes from torchrun's env
    _, dataset = synth_dataset(out.parent / f"data-{os.environ['RANK']}", n=24)
    args = tiny_config(out.parent / "run", per_device_train_batch_size=6, num_generations=4, max_steps=3, bonus_min_length=8)
    trainer = ObserveR1Trainer(
        model=model, args=args, reward_funcs=[CountingParity(), FormatReward()], train_dataset=dataset,
        processing_class=processor,
    )
    checks = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        output = original(inputs)
        rewards_per_func, lengths = trainer._gathered_rewards, trainer._gathered_lengths
        rewards = (rewards_per_func * trainer.reward_weights).sum(dim=1).view(-1, 4)
        correct = (rewards_per_func[:, 0] > 0.5).view(-1, 4)
        expected = group_advantages(rewards, correct, lengths.view(-1, 4), bonus_min_length=8).advantages.flatten()
        everyone = gather(output["advantages"].contiguous())
        checks.append({
            "rank": trainer.accelerator.process_index,
            "world": trainer.accelerator.num_processes,
            "local": len(inputs),
            "max_abs_diff": (everyone - expected).abs().max().item(),
            "nonzero": int((expected != 0).sum()),
            "ids": [x["id"] for x in inputs],
        })
        return output

    trainer._generate_and_score_completions = spy
    trainer.train()
    rank = trainer.accelerator.process_index
    logged = [row["observe_r1/reward_timeout_total"] for row in trainer.state.log_history if "observe_r1/reward_timeout_total" in row]
    (out.parent / f"rank{rank}.json").write_text(json.dumps({"checks": checks, "timeouts_logged": logged,
                                                             "timeouts_local": REWARD_STATS["timeout"]}))
    end_processes(trainer)  # a process group left to the interpreter's exit aborted a rank now and then


if __name__ == "__main__":
    main(*sys.argv[1:3])
