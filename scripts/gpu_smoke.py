"""GPU smoke check (not run in CI): bf16 Observe-R1 training steps of the tiny model on CUDA, and a ladder rating
batch. For a machine with one GPU and this repo installed (`pip install torch==2.13.0 -e .`):

    python scripts/gpu_smoke.py --out /tmp/gpu-smoke        # writes gpu_smoke.json
"""

import argparse
import json
import time
from pathlib import Path

import torch

from observe_r1.config import ObserveR1Config
from observe_r1.data import load_grpo_dataset, load_items, with_images
from observe_r1.generation import HFGenerator
from observe_r1.models import build_tiny_model, load_policy
from observe_r1.synth import generate_items, write_dataset
from observe_r1.trainer import ObserveR1Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/gpu-smoke")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    out = Path(args.out)
    model_dir = build_tiny_model(out / "model", size="small", seed=0)
    data = write_dataset(generate_items(256, seed=0), out / "data")
    model, processor = load_policy(model_dir, dtype=torch.bfloat16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dataset, _ = load_grpo_dataset(data)
    config = ObserveR1Config(output_dir=str(out / "run"), bf16=True, per_device_train_batch_size=64, num_generations=8,
                             max_completion_length=48, learning_rate=1e-3, max_steps=5, logging_steps=1,
                             save_strategy="no", report_to=[], bonus_min_length=16)  # fmt: skip
    trainer = ObserveR1Trainer(model=model, args=config, train_dataset=dataset, processing_class=processor)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    moved = sum(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    records = [with_images(item) for item in load_items(data)[0][:64]]
    generator = HFGenerator(model, processor, batch_size=256, max_new_tokens=48)
    start = time.perf_counter()
    responses = generator.generate(records, n=8, temperature=1.0)
    rate_s = time.perf_counter() - start
    result = {"device": torch.cuda.get_device_name(0), "train_steps": 5, "train_seconds": train_s,
              "params_moved": moved, "params_total": len(before), "rating_rollouts": 64 * 8,
              "rating_rollouts_per_s": 64 * 8 / rate_s,
              "rating_mean_tokens": sum(n for r in responses for _, n in r) / 512,
              "last_log": trainer.state.log_history[-2]}  # fmt: skip
    (out / "gpu_smoke.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
