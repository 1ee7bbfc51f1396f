"""HF generation engines side by side (issue #28): transformers' default (dynamic KV cache, eager) against a static
cache with a compiled decoding step, at 32 and 128 sequences decoding at once.

    .venv/bin/python bench/generation_engines.py                       # tiny model + 1-layer 3B shape, on the CPU
    .venv/bin/python bench/generation_engines.py --models tiny --new-tokens 64

The same fields as ``gpu_check.json``'s ``generation_engines`` (``observe_r1.generation.decode_rate``):
``ms_per_decode_step`` (the prefill excluded), ``tokens_per_s`` (every generated token over the whole call),
``compilations`` (graphs compiled by the measured calls, warm-up included). Also checks that both engines give the
same greedy tokens. Writes ``OUT/generation_engines.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = {"eager": (None, False), "static_compiled": ("static", True)}


def records(n: int) -> list[dict]:
    """``n`` synthetic prompts with images of a few sizes (so prompt lengths differ)."""
    from PIL import Image

    from observe_r1.synth import generate_items

    out = []
    for i, item in enumerate(generate_items(n, seed=7)):
        side = 56 + 28 * (i % 3)
        out.append({"problem": item["problem"], "images": [Image.new("RGB", (side, side), (40 * i % 255, 90, 160))]})
    return out


def load(name: str, work: Path):
    from observe_r1.models import build_policy, build_tiny_model, load_policy

    if name == "tiny":
        return load_policy(build_tiny_model(work / "tiny", size="tiny", seed=0))
    return build_policy("qwen2.5-vl-3b", layers=1, vision_layers=1, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "3b-1layer"], choices=["tiny", "3b-1layer"])
    parser.add_argument("--sequences", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    import torch

    from observe_r1.generation import Decoding, HFGenerator, decode_rate

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="engines-"))
    prompts = records(8)
    report = {"new_tokens": args.new_tokens, "threads": torch.get_num_threads(), "models": {}}
    for name in args.models:
        model, processor = load(name, work)
        model.eval()
        entry = report["models"][name] = {"parameters": sum(p.numel() for p in model.parameters())}
        greedy = {}
        for engine, (cache, compiled) in ENGINES.items():
            decoding = Decoding(cache, compiled)
            entry[engine] = {}
            for sequences in args.sequences:
                start = time.perf_counter()
                rate = decode_rate(model, processor, prompts, sequences=sequences, new_tokens=args.new_tokens,
                                   decoding=decoding)  # fmt: skip
                entry[engine][str(sequences)] = rate
                print(f"{name} {engine} {sequences} sequences: {rate} ({time.perf_counter() - start:.0f} s)",
                      flush=True)  # fmt: skip
            generator = HFGenerator(model, processor, batch_size=8, max_new_tokens=args.new_tokens, decoding=decoding)
            greedy[engine] = generator.generate(prompts)
        entry["greedy_equal"] = greedy["eager"] == greedy["static_compiled"]
        for sequences in map(str, args.sequences):
            eager, fast = entry["eager"][sequences], entry["static_compiled"][sequences]
            entry.setdefault("speedup_decode_step", {})[sequences] = round(
                eager["ms_per_decode_step"] / fast["ms_per_decode_step"], 2
            )
        print(name, "greedy equal:", entry["greedy_equal"], "decode-step speed-up:", entry["speedup_decode_step"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generation_engines.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
