"""Padded vs padding-free (``--padding_free``) loss + backward on micro-batches built from real MATH-V rows.

    .venv/bin/python bench/padding_free.py [--data ../shared/benchmarks/mathvision/data/test.jsonl]
        [--micro-batches 3] [--shape-micro-batches 1] [--out bench/results/padding_free.json]

A generation batch is built the way TRL builds one at the 3B recipe: 16 MATH-V prompts (drawn with a seed from the
published rows, each with its image, the Observe-R1 system prompt and chat template) × 8 completions of random
plain tokens whose lengths are log-uniform between ``--min-completion`` and ``--max-completion``. TRL left-pads every
prompt to the generation batch's longest prompt and right-pads every completion to its longest completion, shuffles
the rows and splits them into micro-batches of 8 without trimming; that is the padded layout measured ("TRL
layout"). "trimmed" drops the columns a micro-batch has no token in (a cheap fix TRL does not do), and "packed" is
observe_r1.packing. Per micro-batch and variant: the loss-side forward (TRL's fused LM head, entropies) and the
backward of a token-mean loss, timed with the variants interleaved (the machine is shared) and medians reported.

Settings: the tiny test model at the recipe's pixel budget (2,560,000: MATH-V's image tokens run from 64 to 3,087);
the Qwen2.5-VL-3B shape cut to 2 language and 2 vision layers at a smaller budget (``--shape-pixels``, shorter
completions: a CPU can't run 8 × 4,000-token rows of 3B-width layers often enough to time them), with three LM
heads: TRL's fused head as it runs on a CPU (every position scored, so the head's work shrinks with the padding
too), the same head scoring the completion positions only (what it does on a GPU with Triton: the head costs the
same padded or packed), and the vocabulary cut to 512 (the head negligible). Writes JSON and a PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import random
import statistics
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "benchmarks" / "mathvision" / "data" / "test.jsonl"
RECIPE_PIXELS = 2_560_000


def prompt_rows(processor, data: Path, n: int, seed: int, max_pixels: int) -> list[dict]:
    """``n`` MATH-V rows drawn with ``seed``, each processed alone: prompt ids, mm types, pixel values, grid."""
    from observe_r1.data import load_grpo_dataset

    dataset, _ = load_grpo_dataset(data)
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": max_pixels}
    processor.image_processor.max_pixels = max_pixels
    picks = random.Random(seed).choices(range(len(dataset)), k=n)
    rows = []
    for i in picks:
        row = dataset[i]
        text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True)
        out = processor(text=[text], images=row["images"], return_tensors="pt")
        rows.append({"ids": out["input_ids"][0], "types": out["mm_token_type_ids"][0],
                     "pixels": out["pixel_values"], "grid": out["image_grid_thw"]})  # fmt: skip
    return rows


def generation_batch(prompts: list[dict], processor, G: int, lengths: tuple[int, int], seed: int) -> list[dict]:
    """TRL's padded layout of ``len(prompts)`` × ``G`` rows, shuffled: one dict per row."""
    rng = random.Random(seed)
    pad = processor.tokenizer.pad_token_id
    plain = range(max(processor.tokenizer.all_special_ids) + 1, len(processor.tokenizer))
    rows = []
    for prompt in prompts:
        for _ in range(G):
            n = round(math.exp(rng.uniform(math.log(lengths[0]), math.log(lengths[1]))))
            rows.append({**prompt, "completion": torch.tensor([rng.choice(plain) for _ in range(n)])})
    width_p = max(len(r["ids"]) for r in rows)
    width_c = max(len(r["completion"]) for r in rows)
    for r in rows:
        r["prompt_ids"] = torch.cat([torch.full((width_p - len(r["ids"]),), pad), r["ids"]])
        r["prompt_types"] = torch.cat([torch.zeros(width_p - len(r["ids"]), dtype=r["types"].dtype), r["types"]])
        r["prompt_mask"] = (torch.arange(width_p) >= width_p - len(r["ids"])).long()
        r["completion_ids"] = torch.cat([r["completion"], torch.full((width_c - len(r["completion"]),), pad)])
        r["completion_mask"] = (torch.arange(width_c) < len(r["completion"])).long()
    rng.shuffle(rows)
    return rows


def micro_batch(rows: list[dict]) -> dict:
    """The keyword arguments of ``_get_per_token_logps_and_entropies`` for ``rows``."""

    def stack(key):
        return torch.stack([r[key] for r in rows])

    completion = stack("completion_ids")
    return {
        "input_ids": torch.cat([stack("prompt_ids"), completion], 1),
        "attention_mask": torch.cat([stack("prompt_mask"), stack("completion_mask")], 1),
        "logits_to_keep": completion.shape[1],
        "pixel_values": torch.cat([r["pixels"] for r in rows]),
        "image_grid_thw": torch.cat([r["grid"] for r in rows]),
        "num_images": [1] * len(rows),
        "mm_token_type_ids": torch.cat([stack("prompt_types"), torch.zeros_like(completion)], 1),
    }


def trimmed(batch: dict) -> dict:
    """``batch`` without the columns no row has a token in (left of the prompts, right of the completions)."""
    used = batch["attention_mask"].bool().any(0)
    keep = int(used[-batch["logits_to_keep"] :].sum())
    return {**batch, "input_ids": batch["input_ids"][:, used], "attention_mask": batch["attention_mask"][:, used],
            "mm_token_type_ids": batch["mm_token_type_ids"][:, used], "logits_to_keep": keep}  # fmt: skip


def padding_fraction(batch: dict) -> float:
    return 1 - batch["attention_mask"].sum().item() / batch["attention_mask"].numel()


def loss_backward(model, batch: dict, packed: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one loss-side forward (log-probs and entropies through TRL's fused head) and its
    backward. CPU seconds (all threads of this process) are what the comparison uses: the machine is shared, and
    other jobs stretch wall time, not the work done."""
    from trl import GRPOTrainer

    from observe_r1.packing import packed_logps_and_entropies

    b = dict(batch)
    args = (model, b.pop("input_ids"), b.pop("attention_mask"), b.pop("logits_to_keep"))
    model.zero_grad(set_to_none=True)
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    if packed:
        logps, entropies, _ = packed_logps_and_entropies(*args, compute_entropy=True, **b)
    else:
        trainer = SimpleNamespace(accelerator=SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True))
        logps, entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(trainer, *args, compute_entropy=True,
                                                                              **b)  # fmt: skip
    mask = batch["attention_mask"][:, -batch["logits_to_keep"] :]
    (-(logps * mask).sum() / mask.sum()).backward()
    return time.perf_counter() - start, time.process_time() - cpu


def vision_seconds(model, batch: dict) -> float:
    """CPU seconds of the vision tower alone (forward + backward), a part that costs the same padded or packed."""
    model.zero_grad(set_to_none=True)
    cpu = time.process_time()
    features = model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"]).pooler_output
    torch.cat(features).sum().backward()
    return time.process_time() - cpu


def build(size: str, vocab: int | None):
    """The model (TRL's fused head added) and processor of a setting: the tiny model, or a published shape cut to
    2 + 2 layers; ``vocab`` cuts the LM head to that many rows (our 512-token tokenizer's ids all fit)."""
    from trl.trainer.utils import add_fused_lm_head

    from observe_r1.models import CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS, SHAPES, build_tokenizer, resolve_size
    from observe_r1.models import shaped_config as published

    family, tokenizer = resolve_size(size), build_tokenizer(512)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    if size in SHAPES:
        config = published(size, layers=2, vision_layers=2, token_ids=ids)
        image_processor = family.image_processor(*family.published_pixels)
    else:
        from observe_r1.families import SIZES

        config = family.tiny_config(SIZES[size], len(tokenizer), ids)
        image_processor = family.image_processor(*family.tiny_pixels)
    if vocab is not None:
        config.text_config.vocab_size = vocab
    torch.manual_seed(0)
    model = family.model_class(config)
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
    return model.train(), family.processor_class(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def measure(model, processor, args, *, pixels: int, lengths: tuple[int, int], rows: int, micro_batches: int,
            compact: bool, seed: int) -> dict:  # fmt: skip
    """Padding fractions over a whole generation batch and median seconds per variant over ``micro_batches``
    micro-batches of ``rows`` rows."""
    prompts = prompt_rows(processor, args.data, args.prompts, seed, pixels)
    generated = generation_batch(prompts, processor, args.num_generations, lengths, seed)
    batches = [micro_batch(generated[i : i + rows]) for i in range(0, len(generated), rows)]
    image_tokens = [int(p["grid"].prod()) // 4 for p in prompts]
    out = {"pixels": pixels, "completion_lengths": list(lengths), "micro_batch": rows,
           "image_tokens_min_median_max": [min(image_tokens), int(statistics.median(image_tokens)),
                                           max(image_tokens)],
           "padding_fraction_trl": statistics.mean(map(padding_fraction, batches)),
           "padding_fraction_trimmed": statistics.mean(padding_fraction(trimmed(b)) for b in batches),
           "tokens_per_micro_batch": statistics.mean(int(b["attention_mask"].sum()) for b in batches),
           "width_trl": batches[0]["input_ids"].shape[1],
           "lm_head": "completion positions" if compact else "all positions"}  # fmt: skip
    variants = {"trl_layout": lambda b: loss_backward(model, b, False),
                "trimmed": lambda b: loss_backward(model, trimmed(b), False),
                "packed": lambda b: loss_backward(model, b, True)}  # fmt: skip
    cpu, wall = {name: [] for name in variants}, {name: [] for name in variants}
    # On a CPU TRL's head scores every position; with Triton (GPU) only the completion's: `compact` mimics the latter
    with mock.patch("trl.trainer.utils._use_triton", lambda device: True) if compact else contextlib.nullcontext():
        loss_backward(model, batches[-1], True)  # warm-up (allocator, first-call costs)
        for i, batch in enumerate(batches[:micro_batches]):
            names = list(variants)
            for name in names[i % 3 :] + names[: i % 3]:  # rotate the order: the machine's load drifts
                seconds = variants[name](batch)
                wall[name].append(seconds[0])
                cpu[name].append(seconds[1])
                print(f"padding_free: {name} {seconds[0]:.1f} s wall, {seconds[1]:.1f} s CPU", flush=True)
    out["vision_cpu_s"] = vision_seconds(model, batches[0])
    out["cpu_s"] = {name: statistics.median(s) for name, s in cpu.items()}
    out["wall_s"] = {name: statistics.median(s) for name, s in wall.items()}
    out["cpu_s_all"], out["wall_s_all"] = cpu, wall
    out["speedup_vs_trl_layout"] = out["cpu_s"]["trl_layout"] / out["cpu_s"]["packed"]
    out["speedup_vs_trimmed"] = out["cpu_s"]["trimmed"] / out["cpu_s"]["packed"]
    out["speedup_vs_trl_layout_wall"] = out["wall_s"]["trl_layout"] / out["wall_s"]["packed"]
    return out


def plot(result: dict, path: Path) -> None:
    from observe_r1.plots import pyplot

    plt = pyplot()
    names = list(result["settings"])
    fig, ax = plt.subplots(figsize=(9, 4.6))
    width = 0.27
    for k, variant in enumerate(("trl_layout", "trimmed", "packed")):
        ax.bar([i + (k - 1) * width for i in range(len(names))],
               [result["settings"][n]["cpu_s"][variant] for n in names], width, label=variant)  # fmt: skip
    for i, n in enumerate(names):
        s = result["settings"][n]
        ax.annotate(f"{s['speedup_vs_trl_layout']:.2f}x / {s['speedup_vs_trimmed']:.2f}x\n"
                    f"pad {s['padding_fraction_trl']:.2f} / {s['padding_fraction_trimmed']:.2f}",
                    (i, max(s["cpu_s"].values())), ha="center", va="bottom", fontsize=7)  # fmt: skip
    ax.set_xticks(range(len(names)), [textwrap.fill(n, 26) for n in names], fontsize=7)
    ax.set_ylabel("loss + backward, CPU s per micro-batch (median)")
    ax.set_title("Padded (TRL layout, trimmed) vs packed, MATH-V rows, CPU; packed speed-up vs each")
    ax.legend(fontsize=7)
    ax.margins(y=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="MATH-V's test.jsonl with its images/ beside.")
    parser.add_argument("--prompts", type=int, default=16, help="Prompts per generation batch (recipe: 16).")
    parser.add_argument("--num-generations", type=int, default=8, help="Completions per prompt (recipe: 8).")
    parser.add_argument("--micro-batch", type=int, default=8, help="Rows per micro-batch, tiny (3B recipe: 8).")
    parser.add_argument("--min-completion", type=int, default=32)
    parser.add_argument("--max-completion", type=int, default=1024)
    parser.add_argument("--micro-batches", type=int, default=3, help="Micro-batches timed at the tiny model.")
    parser.add_argument("--shape-micro-batches", type=int, default=2, help="Micro-batches timed at the 3B shape.")
    parser.add_argument("--shape-micro-batch", type=int, default=4, help="Rows per micro-batch at the 3B shape.")
    parser.add_argument("--shape-pixels", type=int, default=401_408, help="Pixel budget at the 3B shape.")
    parser.add_argument("--shape-max-completion", type=int, default=512)
    parser.add_argument("--no-shape", action="store_true", help="Only the tiny model.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "padding_free.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"padding_free: {args.data} not found (MATH-V rows with images; see --data)")
    started = time.perf_counter()
    full = (args.min_completion, args.max_completion)
    short = (args.min_completion, args.shape_max_completion)
    tiny = ("tiny", None, RECIPE_PIXELS, full, args.micro_batch, args.micro_batches, False)
    settings = {"tiny, recipe pixels": tiny}
    if not args.no_shape:
        shape = ("qwen2.5-vl-3b", args.shape_pixels, short, args.shape_micro_batch, args.shape_micro_batches)
        size, pixels, lengths, rows, n = shape
        settings |= {
            "3B shape (2+2 layers), vocabulary cut to 512": (size, 512, pixels, lengths, rows, n, False),
            "3B shape, full vocabulary, head on completion positions (GPU)": (
                size,
                None,
                pixels,
                lengths,
                rows,
                n,
                True,
            ),
            "3B shape, full vocabulary, head on all positions (TRL on CPU)": (
                size,
                None,
                pixels,
                lengths,
                rows,
                n,
                False,
            ),
        }
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "prompts": args.prompts,
              "num_generations": args.num_generations, "seed": args.seed, "settings": {}}  # fmt: skip
    models: dict = {}
    for name, (size, vocab, pixels, lengths, rows, n, compact) in settings.items():
        print(f"padding_free: {name}", flush=True)
        if (size, vocab) not in models:
            models.clear()
            gc.collect()
            models[(size, vocab)] = build(size, vocab)
        model, processor = models[(size, vocab)]
        result["settings"][name] = {"model": size, "vocabulary": model.config.get_text_config().vocab_size,
                                    **measure(model, processor, args, pixels=pixels, lengths=lengths, rows=rows,
                                              micro_batches=n, compact=compact, seed=args.seed)}  # fmt: skip
    result["wall_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    for name, s in result["settings"].items():
        print(f"{name}: padding {s['padding_fraction_trl']:.2f} (trimmed {s['padding_fraction_trimmed']:.2f}), "
              f"CPU s {s['cpu_s']} (vision {s['vision_cpu_s']:.1f}) -> {s['speedup_vs_trl_layout']:.2f}x vs TRL, "
              f"{s['speedup_vs_trimmed']:.2f}x vs trimmed")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
