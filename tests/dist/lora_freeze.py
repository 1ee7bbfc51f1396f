"""Run with 2 processes (torchrun --nproc_per_node 2 tests/dist/lora_freeze.py TINY_MODEL OUT_DIR).

Two short trainings with groups of G=4 split across the processes (6 completions per process): LoRA, then a full
fine-tune with the vision tower frozen. Each process writes, per run, which parameters moved, which stayed
bit-identical and a checksum of every trained parameter, for the test to compare across the processes.
"""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from observe_r1.models import load_policy  # noqa: E402
from observe_r1.rewards import FormatReward  # noqa: E402
from observe_r1.train import build_trainer, end_processes  # noqa: E402
from tests.helpers import ParityAccuracy, synth_dataset, tiny_config  # noqa: E402

RUNS = {"lora": {"use_peft": True, "lora_r": 4}, "frozen_tower": {"freeze_vision_tower": True}}


def main(model_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    _, dataset = synth_dataset(out / f"data-{rank}", n=24)
    report = {}
    for name, overrides in RUNS.items():
        model, processor = load_policy(model_dir)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = tiny_config(out / name, per_device_train_batch_size=6, num_generations=4, max_steps=2, **overrides)
        trainer = build_trainer(model, processor, dataset, args, reward_funcs=[ParityAccuracy(), FormatReward()],
                                concise_progress=False)  # fmt: skip
        initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        after = {n: p.detach() for n, p in trainer.model.named_parameters()}
        base = {n.replace("base_model.model.", "").replace(".base_layer", ""): n for n in after}
        report[name] = {
            "world": trainer.accelerator.num_processes,
            "loaded": sorted(before),
            "base_unchanged": sorted(k for k, n in base.items() if k in before and torch.equal(before[k], after[n])),
            "moved": sorted(n for n in after if not torch.equal(initial[n], after[n])),
            "trainable": sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad),
            "checksums": {n: float(after[n].double().sum()) for n in after if not torch.equal(initial[n], after[n])},
            "logged": sorted(k for k in trainer.state.log_history[0] if k.startswith("observe_r1/")),
        }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    end_processes(trainer)  # a process group left to the interpreter's exit aborted a rank now and then


if __name__ == "__main__":
    main(*sys.argv[1:3])
