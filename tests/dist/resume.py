"""Run with 2 processes (torchrun --nproc_per_node 2 tests/dist/resume.py TINY_MODEL OUT_DIR).

Per mode (full fine-tune, frozen vision tower, LoRA): an uninterrupted 4-step run, a run stopped after step 2 (its
checkpoint-2 saved), and a run resumed from that checkpoint. Each process writes whether the resumed weights equal,
bit for bit, the uninterrupted run's at step 2 (when training restarts) and at the end.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from observe_r1.models import load_policy  # noqa: E402
from observe_r1.rewards import FormatReward  # noqa: E402
from observe_r1.train import build_trainer, end_processes  # noqa: E402
from tests.helpers import ParityAccuracy, StopAt, differing_weights, synth_dataset, tiny_config  # noqa: E402

MODES = {"full": {}, "frozen_tower": {"freeze_vision_tower": True}, "lora": {"use_peft": True, "lora_r": 4}}


def main(model_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    _, dataset = synth_dataset(out / f"data-{rank}", n=24)
    report = {}
    for mode, overrides in MODES.items():
        runs = {}
        for name, callback, resume in [("straight", StopAt(snapshot_at=2), None), ("stopped", StopAt(2), None),
                                       ("resumed", StopAt(), "checkpoint-2")]:  # fmt: skip
            model, processor = load_policy(model_dir)
            args = tiny_config(out / mode / ("straight" if name == "straight" else "resumed"),
                               per_device_train_batch_size=6, num_generations=4, max_steps=4, save_strategy="steps",
                               save_steps=2, **overrides)  # fmt: skip
            trainer = build_trainer(model, processor, dataset, args, reward_funcs=[ParityAccuracy(), FormatReward()],
                                    callbacks=[callback], concise_progress=False)  # fmt: skip
            trainer.train(resume_from_checkpoint=str(Path(args.output_dir) / resume) if resume else None)
            final = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
            runs[name] = (callback, final, trainer.accelerator.num_processes)  # not the trainer: see end_processes
        straight, _, resumed = runs["straight"], runs["stopped"], runs["resumed"]
        report[mode] = {
            "world": resumed[2],
            "moved_by_step_2": len(differing_weights(straight[0].at_start, straight[0].weights)),
            "differ_at_restart": differing_weights(resumed[0].at_start, straight[0].weights),
            "differ_at_end": differing_weights(resumed[1], straight[1]),
        }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    end_processes(trainer)  # a process group left to the interpreter's exit aborted a rank now and then


if __name__ == "__main__":
    main(*sys.argv[1:3])
