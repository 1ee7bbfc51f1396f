"""Run with 2 processes (torchrun --nproc_per_node 2 tests/dist/image_positions.py TINY_MODEL OUT_DIR).

Trains the tiny model on published MATH-V rows of different image sizes at the 3B recipe's pixel budget, with a
group split across the processes, and records on each rank whether every forward's image marks sit on the
image tokens.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from observe_r1.models import load_policy  # noqa: E402
from observe_r1.rewards import FormatReward  # noqa: E402
from observe_r1.train import end_processes  # noqa: E402
from observe_r1.trainer import ObserveR1Trainer  # noqa: E402
from tests.helpers import (  # noqa: E402
    RECIPE_MAX_PIXELS,
    ImagePositionCheck,
    ParityAccuracy,
    mathvision_dataset,
    tiny_config,
)


def main(model_dir: str, out_dir: str) -> None:
    model, processor = load_policy(model_dir)
    processor.tokenizer.padding_side = "right"
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": RECIPE_MAX_PIXELS}
    check = ImagePositionCheck(model, processor)
    args = tiny_config(Path(out_dir) / "run", per_device_train_batch_size=6, num_generations=4, max_steps=2)
    trainer = ObserveR1Trainer(model=model, args=args, reward_funcs=[ParityAccuracy(), FormatReward()],
                               train_dataset=mathvision_dataset(n=12), processing_class=processor)  # fmt: skip
    ids = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        ids.extend(x["id"] for x in inputs)
        return original(inputs)

    trainer._generate_and_score_completions = spy
    trainer.train()
    rank = trainer.accelerator.process_index
    record = {"world": trainer.accelerator.num_processes, "grad_forwards": check.grad_forwards,
              "misaligned": check.misaligned, "image_tokens": sorted(check.image_tokens), "ids": ids[:6]}  # fmt: skip
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(record))
    end_processes(trainer)  # a process group left to the interpreter's exit aborted a rank now and then


if __name__ == "__main__":
    main(*sys.argv[1:3])
