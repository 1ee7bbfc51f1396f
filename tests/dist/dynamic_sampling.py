"""Run with 2 processes (torchrun --nproc_per_node 2 tests/dist/dynamic_sampling.py TINY_MODEL OUT_DIR [paced]).

Dynamic sampling with groups of G=4 split across the processes (6 completions per process, 3 prompts a round);
prompts whose row is a multiple of 3 get constant rewards. With ``paced``: a paced curriculum over ladder levels
of 6, 6 and 12 rows, where rows 0-2 are solved (all rewards 1) and no row is constant, for 8 steps (into a second
epoch, which leaves the mastered level out). Each process writes, per
step, the advantages and per-row pixel values the loss received, and its cursor's final state, for the test to
check against the expected trained groups.
"""

import json
import os
import sys
from pathlib import Path

import torch
from trl.trainer.utils import split_pixel_values_by_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from observe_r1.models import load_policy  # noqa: E402
from observe_r1.train import build_trainer, end_processes  # noqa: E402
from tests.helpers import ScriptedGroups, synth_dataset, tiny_config  # noqa: E402


def main(model_dir: str, out_dir: str, mode: str = "dynamic") -> None:
    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    model, processor = load_policy(model_dir)
    paced = mode == "paced"
    levels = [0.0] * 6 + [0.5] * 6 + [1.0] * 12 if paced else None
    _, dataset = synth_dataset(out / f"data-{rank}", n=24, levels=levels)
    pace = {"curriculum": "paced", "pace_window": 3, "pace_threshold": 0.75} if paced else {}
    args = tiny_config(out / "run", per_device_train_batch_size=6, num_generations=4, max_steps=8 if paced else 2,
                       dynamic_sampling=True, max_generation_rounds=3, **pace)  # fmt: skip
    reward = ScriptedGroups(solved_rows=range(3)) if paced else ScriptedGroups(range(0, 24, 3))
    trainer = build_trainer(model, processor, dataset, args, reward_funcs=[reward], concise_progress=False)
    steps = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        output = original(inputs)
        pixels = split_pixel_values_by_grid(output)["pixel_values"]
        steps.append({"advantages": output["advantages"].tolist(),
                      "pixel_sums": [float(p.double().sum()) for p in pixels]})  # fmt: skip
        return output

    trainer._generate_and_score_completions = spy
    trainer.train()
    images = {
        row["id"]: float(processor.image_processor(images=row["images"], return_tensors="pt")["pixel_values"].double().sum())
        for row in dataset
    }
    cursor = trainer._cursor.state_dict()
    (out / f"rank{rank}.json").write_text(json.dumps({"steps": steps, "image_sums": images, "cursor": cursor}))
    end_processes(trainer)  # a process group left to the interpreter's exit aborted a rank now and then


if __name__ == "__main__":
    main(*sys.argv[1:4])
