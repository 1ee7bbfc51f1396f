"""Rating throughput of the NeuraLadder builder on the tiny model: batched vs one-at-a-time (issue: ladder).

    .venv/bin/python bench/ladder_throughput.py [--size small] [--items 64] [--k 8]

Rollouts per second of ``HFGenerator.generate`` with k samples per item, for several batch sizes
(sequences per generate call); batch size k means one item at a time (its k samples together),
batch size 1 means one sequence at a time.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from observe_r1.generation import HFGenerator
from observe_r1.models import build_tiny_model, load_policy
from observe_r1.synth import generate_items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", default="bench/results/ladder_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_policy(build_tiny_model(tmp, size=args.size, seed=0))
    records = [{"problem": it["problem"], "images": [it["image"]]} for it in generate_items(args.items, seed=0)]
    results = {"model_size": args.size, "items": args.items, "k": args.k, "threads": torch.get_num_threads()}
    for batch_size in (1, args.k, 64, 128):
        gen = HFGenerator(model, processor, batch_size=batch_size, max_new_tokens=args.max_new_tokens)
        subset = records[: 4 if batch_size == 1 else args.items]
        n = min(args.k, batch_size) if batch_size < args.k else args.k
        torch.manual_seed(0)
        start = time.perf_counter()
        if batch_size == 1:  # one sequence per generate call
            for r in subset:
                for _ in range(args.k):
                    gen.generate([r], n=1, temperature=1.0)
        else:
            gen.generate(subset, n=n, temperature=1.0)
        elapsed = time.perf_counter() - start
        results[f"batch_{batch_size}_rollouts_per_s"] = len(subset) * args.k / elapsed
        print(batch_size, results[f"batch_{batch_size}_rollouts_per_s"], flush=True)
    best = max(v for k, v in results.items() if k.startswith("batch_"))
    results["speedup_best_vs_one_at_a_time"] = best / results["batch_1_rollouts_per_s"]
    results["hours_for_20k_items_x8_at_best"] = 20_000 * 8 / best / 3600
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
