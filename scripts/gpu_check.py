"""The first-GPU check: Observe-R1 at the published Qwen2.5-VL / Qwen3-VL shapes, measured the way peers report.

    python scripts/gpu_check.py --shape 3b --out $OUT/gpu-check                    # one GPU, bf16 (docs/gpu.md)
    python scripts/gpu_check.py --shape 3b --device cpu --layers 1 --vision-layers 1 \
        --max-pixels 200704 --new-tokens 16 --out /tmp/gpu-check                   # the same code on a CPU
    python scripts/gpu_check.py --shape qwen3-vl-4b --out $OUT/gpu-check-qwen3     # Qwen3-VL (also -2b, -8b)

Everything comes from local files: the model is built here with random weights and the published architecture
(``observe_r1.models.shaped_config``; ``--layers`` truncates it), the data is MATH-V's published rows with their
images (``--data``; ``scripts/gpu_wheels.sh`` copies them into the ignored ``.gpu_data/``). Random weights never
stop, so every completion runs to ``--new-tokens``: the lengths are the worst case.

It runs, in order:

1. **log-probs, bf16 vs fp32**: one batch (prompt + ``--new-tokens`` random completion tokens) through the fp32
   model and through its bf16 copy; max and mean absolute difference of the per-token log-probs.
2. **training**: ``--steps`` Observe-R1 steps (``ObserveR1Trainer``, HF generation) with the recipe's per-device
   settings (16 prompts × 8 per generation; 8 completions per micro-step for 3B, 4 for 7B; β 0.01, gradient
   checkpointing). When the micro-batch does not fit in memory it is halved (more micro-steps: the same 128
   completions per generation) until it fits, and the JSON says so; ``--micro-batch`` tries a larger one. Seconds
   per phase: generation, old/reference log-probs, loss + backward, optimizer; generated and trained tokens per second;
   MFU = 6 × parameters × trained tokens / (loss + backward seconds × the GPU's dense bf16 peak).
3. **ladder rating**: k = 8 sampled responses per item (the CPU default: 2); **eval**: greedy, one response per item.

Also: ``generation_engines`` (before training): decoding speed of transformers' default (dynamic cache, eager) and of
a static cache with a compiled decoding step, at 32 and 128 sequences (``--engine-sequences``; CPU 2):
``ms_per_decode_step``, ``tokens_per_s``, compilations. Training rollouts use the compiled engine on CUDA
(``--compile-generation``). ``micro_batch_sweep`` (after training): the update's MFU and peak memory at 8, 16 and 32
completions per micro-step (``--sweep``), stopping at the first out-of-memory. ``tokens_per_s_per_gpu`` is EasyR1's
throughput: prompt + completion tokens of the step's sequences per second of the whole step, per GPU.
``padding_free`` (after the sweep; ``--padding-free``, by default on CUDA only): one update (loss-side forward +
backward) on a recipe micro-batch of MATH-V prompts, padded vs packed (``--padding_free``, docs/padding_free.md), on
sdpa and, when flash-attn is installed, flash_attention_2: seconds, peak memory and the log-prob difference to
the padded run.

Writes ``gpu_check.json`` (every field; ``mfu`` is null on a CPU, where memory is the process's peak RSS) and
``gpu_check.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import resource
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import torch
from transformers import TrainerCallback

# Per-device settings of the recipes (a test keeps them equal): completions per
# micro-step; every GPU generates 16 prompts × 8 per generation (128 × 8 over 8 GPUs). A "step" below is one
# generation and all its micro-steps. Qwen3-VL's pixel budget keeps the Qwen2.5 recipes' image-token budget
# (2,560,000 px / 28² ≈ 3,265 tokens) in its 32-px units: 3,265 × 32² = 3,343,360 px. 2B and 8B have no recipe:
# the 4B's and the 7B's micro-batches.
RECIPES = {
    "3b": {"size": "qwen2.5-vl-3b", "micro_batch": 8, "recipe": "observe_r1_qwen2_5_vl_3b.yaml"},
    "7b": {"size": "qwen2.5-vl-7b", "micro_batch": 4, "recipe": "observe_r1_qwen2_5_vl_7b.yaml"},
    "qwen3-vl-2b": {"size": "qwen3-vl-2b", "micro_batch": 8, "recipe": None},
    "qwen3-vl-4b": {"size": "qwen3-vl-4b", "micro_batch": 8, "recipe": "observe_r1_qwen3_vl_4b.yaml"},
    "qwen3-vl-8b": {"size": "qwen3-vl-8b", "micro_batch": 4, "recipe": None},
}
MAX_PIXELS = {"qwen2.5-vl": 2_560_000, "qwen3-vl": 3_343_360}
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "H800": 989.4, "A100": 312.0, "A800": 312.0, "L40S": 362.1}


def peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, from its name (None on a CPU or an unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


class Phases:
    """Seconds per named phase, synchronising the device at each boundary so GPU work is counted where it runs."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.counts = device, Counter(), Counter()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def phase(self, name: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            seconds = time.perf_counter() - start
            self.seconds[name] += seconds
            if seconds > 1:  # a running account in the log, for a run stopped before the JSON is written
                print(f"gpu_check: {name} {seconds:.1f} s", flush=True)

    def wrap(self, obj, method: str, name: str, when=lambda: True) -> None:
        """Time every call of ``obj.method`` under ``name`` (only while ``when()`` holds)."""
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            if not when():
                return inner(*args, **kwargs)
            with self.phase(name):
                return inner(*args, **kwargs)

        setattr(obj, method, timed)


class OptimizerTimer(TrainerCallback):
    """Times the optimizer step (between the Trainer's pre- and post-optimizer-step events)."""

    def __init__(self, phases: Phases):
        self.phases, self.start = phases, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.phases.sync()
        self.start = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.phases.sync()
        self.phases.seconds["optimizer"] += time.perf_counter() - self.start


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"source": "cuda", "allocated_gb": torch.cuda.max_memory_allocated(device) / 2**30,
                "reserved_gb": torch.cuda.max_memory_reserved(device) / 2**30}  # fmt: skip
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"source": "rss", "allocated_gb": rss, "reserved_gb": rss}


def logprob_precision(model, processor, record, new_tokens: int, device) -> dict:
    """Per-token log-probs of one (prompt + random completion) batch, fp32 model vs its bf16 copy."""
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": record["problem"]}]}],
        add_generation_prompt=True,
    )
    batch = processor(text=[inputs], images=record["images"], return_tensors="pt")
    first_plain = max(processor.tokenizer.all_special_ids) + 1  # no special or image token in the completion
    rng = torch.Generator().manual_seed(0)
    completion = torch.randint(first_plain, len(processor.tokenizer), (1, new_tokens), generator=rng)
    batch["input_ids"] = torch.cat([batch["input_ids"], completion], dim=1)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    if "mm_token_type_ids" in batch:  # completion tokens are text
        batch["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(completion)], dim=1)
    batch = batch.to(device)

    def logps(dtype):
        inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in batch.items()}
        with torch.no_grad():
            logits = model(**inputs, logits_to_keep=new_tokens + 1).logits[:, :-1].float()
        targets = batch["input_ids"][:, -new_tokens:]
        return torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)

    fp32 = logps(torch.float32)
    model.to(torch.bfloat16)
    bf16 = logps(torch.bfloat16)
    diff = (bf16 - fp32).abs()
    return {"tokens": new_tokens, "max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item(),
            "mean_logprob_fp32": fp32.mean().item()}  # fmt: skip


def train_steps(args, model_dir: Path, processor, dataset, device, micro_batch: int) -> dict:
    """``args.steps`` Observe-R1 training steps at ``micro_batch`` completions per micro-step; phases and tokens."""
    from observe_r1.config import ObserveR1Config
    from observe_r1.trainer import ObserveR1Trainer

    spg = max(1, args.prompts_per_generation * args.num_generations // micro_batch)  # micro-steps per generation
    config = ObserveR1Config(
        output_dir=str(Path(args.out) / "run"), use_cpu=device.type == "cpu", bf16=device.type == "cuda",
        per_device_train_batch_size=micro_batch, num_generations=args.num_generations, steps_per_generation=spg,
        gradient_accumulation_steps=1, gradient_checkpointing=True, max_completion_length=args.new_tokens,
        temperature=1.0, beta=0.01, epsilon=0.2, loss_type="dapo", learning_rate=1e-6, max_steps=args.steps * spg,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, bonus_min_length=args.new_tokens // 2,
        model_init_kwargs={"dtype": "bfloat16" if device.type == "cuda" else "float32"},
        compile_generation=args.compile_generation,
    )  # fmt: skip
    trainer = ObserveR1Trainer(model=str(model_dir), args=config, train_dataset=dataset, processing_class=processor)
    phases = Phases(device)
    in_loss = [False]
    tokens = Counter()
    score = trainer._generate_and_score_completions

    def counted(*a, **k):
        out = score(*a, **k)
        tokens["generated"] += int(out["completion_mask"].sum())
        tokens["trained"] += int(out["prompt_mask"].sum() + out["completion_mask"].sum())
        tokens["image_patches"] += int(out["pixel_values"].shape[0]) if "pixel_values" in out else 0
        return out

    trainer._generate_and_score_completions = counted
    phases.wrap(trainer, "_generate", "generation")
    phases.wrap(trainer, "_get_per_token_logps_and_entropies", "old_ref_logprobs", when=lambda: not in_loss[0])
    phases.wrap(trainer, "_prepare_inputs", "prepare_inputs")
    loss = trainer.compute_loss

    def marked_loss(*a, **k):
        in_loss[0] = True
        try:
            return loss(*a, **k)
        finally:
            in_loss[0] = False

    trainer.compute_loss = marked_loss
    phases.wrap(trainer, "training_step", "training_step")
    trainer.add_callback(OptimizerTimer(phases))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with phases.phase("total"):
        trainer.train()
    s = phases.seconds
    loss_backward = s["training_step"] - s["prepare_inputs"]
    per_step = {"generation": s["generation"], "old_ref_logprobs": s["old_ref_logprobs"],
                "scoring_and_other": s["prepare_inputs"] - s["generation"] - s["old_ref_logprobs"],
                "loss_backward": loss_backward, "optimizer": s["optimizer"]}  # fmt: skip
    steps = args.steps
    n_params = sum(p.numel() for p in trainer.model.parameters())
    flops = 6 * n_params * tokens["trained"]
    peak = peak_tflops(device)
    result = {
        "micro_batch": micro_batch, "steps_per_generation": spg, "generation_steps": steps,
        "optimizer_steps": steps * spg, "completions_per_generation": spg * micro_batch,
        "s_per_step": s["total"] / steps, "phases_s_per_step": {k: v / steps for k, v in per_step.items()},
        "generated_tokens": tokens["generated"], "trained_tokens": tokens["trained"],
        "image_patches": tokens["image_patches"],
        "generated_tokens_per_s_per_gpu": tokens["generated"] / max(s["generation"], 1e-9),
        "trained_tokens_per_s_per_gpu": tokens["trained"] / max(loss_backward, 1e-9),
        # EasyR1's throughput: prompt + completion tokens of the step's sequences per second of the whole step
        "tokens_per_s_per_gpu": tokens["trained"] / s["total"],
        "compile_generation": args.compile_generation,
        "train_flops_per_step": flops / steps,
        "mfu": flops / (loss_backward * peak * 1e12) if peak else None,
        "peak_memory": peak_memory(device),
        "params_trained": n_params,
    }  # fmt: skip
    del trainer
    return result


def generation_rate(model, processor, records, *, n: int, temperature: float, new_tokens: int, batch: int) -> dict:
    """Items and tokens per second of the ladder's / eval's generation path on ``records``."""
    from observe_r1.generation import HFGenerator

    generator = HFGenerator(model, processor, batch_size=batch, max_new_tokens=new_tokens)
    start = time.perf_counter()
    responses = generator.generate(records, n=n, temperature=temperature)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    generated = sum(length for item in responses for _, length in item)
    return {"items": len(records), "samples_per_item": n, "seconds": seconds, "items_per_s": len(records) / seconds,
            "generated_tokens_per_s": generated / seconds, "mean_tokens": generated / (len(records) * n)}  # fmt: skip


def generation_engines(model, processor, records, *, sequences: list[int], new_tokens: int) -> dict:
    """Decoding speed of transformers' default (dynamic cache, eager) and of a static cache with a compiled decoding
    step (``observe_r1.generation.decode_rate``), at each number of sequences decoding at once."""
    from observe_r1.generation import Decoding, decode_rate

    engines = {"eager": Decoding(), "static_compiled": Decoding("static", True)}
    out: dict = {}
    for name, decoding in engines.items():
        out[name] = {}
        for n in sequences:
            measure = functools.partial(decode_rate, model, processor, records, sequences=n, new_tokens=new_tokens,
                                        decoding=decoding)  # fmt: skip
            rate = fits(measure, model.device)
            out[name][str(n)] = rate if rate is not None else "out of memory"
            print(f"gpu_check: {name} at {n} sequences: {out[name][str(n)]}", flush=True)
    for n in map(str, sequences):
        eager, fast = out["eager"][n], out["static_compiled"][n]
        if isinstance(eager, dict) and isinstance(fast, dict):
            out.setdefault("decode_step_speedup", {})[n] = eager["ms_per_decode_step"] / fast["ms_per_decode_step"]
    return out


def micro_batch_sweep(args, model_dir, processor, dataset, device, sizes: list[int]) -> list[dict]:
    """The update's MFU and peak memory at each micro-batch (two micro-steps per generation, so generation stays
    short), stopping at the first that runs out of memory."""
    rows = []
    for size in sizes:
        swept = argparse.Namespace(**{**vars(args), "prompts_per_generation": max(1, 2 * size // args.num_generations),
                                      "steps": 1, "out": str(Path(args.out) / f"sweep-{size}")})  # fmt: skip
        result = fits(functools.partial(train_steps, swept, model_dir, processor, dataset, device, size), device)
        if result is None:
            rows.append({"micro_batch": size, "out_of_memory": True})
            break
        rows.append({"micro_batch": size, "mfu": result["mfu"], "peak_memory": result["peak_memory"],
                     "loss_backward_s_per_micro_step": result["phases_s_per_step"]["loss_backward"]
                     / result["steps_per_generation"], "trained_tokens_per_s_per_gpu":
                     result["trained_tokens_per_s_per_gpu"]})  # fmt: skip
        print(f"gpu_check: micro-batch {size}: {rows[-1]}", flush=True)
    return rows


def padding_free_update(model_dir: Path, processor, records: list[dict], device, *, rows: int, new_tokens: int,
                        repeats: int) -> dict:  # fmt: skip
    """The update (loss-side forward with entropies + backward, gradient checkpointing) on one micro-batch of
    ``rows`` MATH-V prompts with random completions of ``new_tokens`` / 8 to ``new_tokens`` tokens: padded (TRL's
    layout) vs padding-free (``observe_r1.packing``), with sdpa and, when installed, flash_attention_2. Per variant:
    median seconds, peak memory, and the largest log-prob difference to the padded sdpa run."""
    from transformers.utils import is_flash_attn_2_available
    from trl import GRPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    from observe_r1.models import image_token_types, load_policy
    from observe_r1.packing import packed_logps_and_entropies

    message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r["problem"]}]}
               for r in records[:rows]]  # fmt: skip
    texts = [processor.apply_chat_template([m], add_generation_prompt=True) for m in message]
    processor.tokenizer.padding_side = "left"
    prompt = processor(text=texts, images=[r["images"] for r in records[:rows]], padding=True, return_tensors="pt")
    lengths = torch.linspace(max(1, new_tokens // 8), new_tokens, rows).round().long()
    first_plain = max(processor.tokenizer.all_special_ids) + 1
    completion = torch.randint(first_plain, len(processor.tokenizer), (rows, new_tokens),
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    completion_mask = (torch.arange(new_tokens)[None] < lengths[:, None]).long()
    completion = completion.masked_fill(completion_mask == 0, processor.tokenizer.pad_token_id)
    input_ids = torch.cat([prompt["input_ids"], completion], 1)
    pad_ids = [processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")]
    batch = {"input_ids": input_ids, "attention_mask": torch.cat([prompt["attention_mask"], completion_mask], 1),
             "logits_to_keep": new_tokens, "pixel_values": prompt["pixel_values"],
             "image_grid_thw": prompt["image_grid_thw"], "num_images": [1] * rows,
             "mm_token_type_ids": image_token_types(input_ids, *pad_ids)}  # fmt: skip
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    mask = batch["attention_mask"][:, -new_tokens:]
    accelerator = argparse.Namespace(autocast=contextlib.nullcontext, is_main_process=True)  # what TRL's method reads
    padded_forward = functools.partial(GRPOTrainer._get_per_token_logps_and_entropies,
                                       argparse.Namespace(accelerator=accelerator))  # fmt: skip
    out = {"rows": rows, "tokens": int(batch["attention_mask"].sum()), "padded_width": input_ids.shape[1],
           "padding_fraction": 1 - batch["attention_mask"].float().mean().item()}  # fmt: skip
    reference = None
    # On a CPU TRL's fused head scores every position (151,936-wide at 3B); score the completion only, as with Triton
    on_cpu = device.type == "cpu"
    head = mock.patch("trl.trainer.utils._use_triton", lambda d: True) if on_cpu else contextlib.nullcontext()
    for impl in ["sdpa"] + (["flash_attention_2"] if device.type == "cuda" and is_flash_attn_2_available() else []):
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model, _ = load_policy(model_dir, dtype=dtype, device=device, attn_implementation=impl)
        add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
        model.gradient_checkpointing_enable()
        model.train()
        for name, forward in (("padded", padded_forward), ("packed", packed_logps_and_entropies)):

            def update(forward=forward, model=model):
                b = dict(batch)
                logps, _, _ = forward(model, b.pop("input_ids"), b.pop("attention_mask"), b.pop("logits_to_keep"),
                                      compute_entropy=True, **b)  # fmt: skip
                (-(logps * mask).sum() / mask.sum()).backward()
                model.zero_grad(set_to_none=True)
                return logps.detach().float()

            if device.type == "cuda":
                fits(update, device)  # warm-up (the head is scored as TRL scores it there)
                torch.cuda.reset_peak_memory_stats(device)
            phases, seconds, logps = Phases(device), [], None
            for _ in range(repeats):
                with phases.phase("update"), head:
                    logps = fits(update, device)
                seconds.append(phases.seconds.pop("update"))
            if logps is None:
                out[f"{impl}_{name}"] = {"out_of_memory": True}
                continue
            reference = logps if reference is None else reference
            diff = (logps - reference)[mask.bool()].abs().max().item()
            out[f"{impl}_{name}"] = {"s": sorted(seconds)[len(seconds) // 2], "peak_memory": peak_memory(device),
                                     "max_logprob_diff": diff}  # fmt: skip
            print(f"gpu_check: update {impl} {name}: {out[f'{impl}_{name}']}", flush=True)
        if "s" in out[f"{impl}_padded"] and "s" in out[f"{impl}_packed"]:
            out[f"{impl}_speedup"] = out[f"{impl}_padded"]["s"] / out[f"{impl}_packed"]["s"]
        del model
        gc.collect()
    return out


def fits(fn, device):
    """``fn()``, or None when the device runs out of memory (memory freed for the next try)."""
    try:
        return fn()
    except torch.OutOfMemoryError:
        pass  # freed below, once the exception and the frames it holds are gone
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return None


def save_partial(out: Path, result: dict, started: float) -> None:
    """What is measured so far, in case a later phase fails or the device's time runs out."""
    (out / "gpu_check.partial.json").write_text(json.dumps(result, indent=2))
    print(f"gpu_check: {sorted(result)} after {time.perf_counter() - started:.0f} s", flush=True)


def _engines_cell(result: dict, n: str) -> str:
    engines = result["generation_engines"]
    cells = [e[n] for e in (engines["eager"], engines["static_compiled"])]
    return " / ".join(f"{c['ms_per_decode_step']:.1f}" if isinstance(c, dict) else "out of memory" for c in cells)


def _sweep_cell(row: dict) -> str:
    if row.get("out_of_memory"):
        return "out of memory"
    mfu = "n/a (CPU)" if row["mfu"] is None else f"{100 * row['mfu']:.1f} %"
    return f"{mfu}, {row['peak_memory']['allocated_gb']:.1f} GiB"


def _packing_cell(packing: dict, impl: str) -> str:
    cells = [packing[f"{impl}_{name}"] for name in ("padded", "packed")]
    if any(c.get("out_of_memory") for c in cells):
        return " / ".join("out of memory" if c.get("out_of_memory") else f"{c['s']:.2f} s" for c in cells)
    return (f"{cells[0]['s']:.2f} / {cells[1]['s']:.2f} ({packing[f'{impl}_speedup']:.2f}x), "
            f"{cells[0]['peak_memory']['allocated_gb']:.1f} / {cells[1]['peak_memory']['allocated_gb']:.1f}; "
            f"padding {packing['padding_fraction']:.2f}")  # fmt: skip


def markdown(result: dict) -> str:
    t = result["training"]
    rows = [
        ("model", f"{result['size']} ({result['parameters']:,} parameters; full depth {result['parameters_full']:,})"),
        ("device", result["device"]),
        ("micro-batch (recipe / used)", f"{result['recipe_micro_batch']} / {t['micro_batch']}"
         + (f" (OOM at {result['oom_micro_batches']})" if result["oom_micro_batches"] else "")),
        ("s/step", f"{t['s_per_step']:.2f}"),
        *((f"  {k} (s/step)", f"{v:.2f}") for k, v in t["phases_s_per_step"].items()),
        ("generated tokens/s/GPU", f"{t['generated_tokens_per_s_per_gpu']:,.0f}"),
        ("trained tokens/s/GPU", f"{t['trained_tokens_per_s_per_gpu']:,.0f}"),
        ("MFU (loss + backward)", "n/a (CPU)" if t["mfu"] is None else f"{100 * t['mfu']:.1f} %"),
        (f"peak memory ({t['peak_memory']['source']}), allocated / reserved",
         f"{t['peak_memory']['allocated_gb']:.1f} / {t['peak_memory']['reserved_gb']:.1f} GiB"),
        ("log-probs bf16 vs fp32, max / mean abs diff",
         f"{result['logprobs']['max_abs_diff']:.4f} / {result['logprobs']['mean_abs_diff']:.4f}"),
        (f"ladder rating (k={result['rating']['samples_per_item']})",
         f"{result['rating']['items_per_s']:.2f} items/s, {result['rating']['generated_tokens_per_s']:,.0f} tokens/s"),
        ("eval (greedy)", f"{result['eval']['items_per_s']:.2f} items/s, "
         f"{result['eval']['generated_tokens_per_s']:,.0f} tokens/s"),
        ("tokens/s/GPU (EasyR1: prompt + completion tokens per step second)", f"{t['tokens_per_s_per_gpu']:,.0f}"),
        *((f"decoding at {n} sequences, eager / static compiled (ms per step)", _engines_cell(result, n))
          for n in result["generation_engines"]["eager"]),
        *((f"update at micro-batch {row['micro_batch']}: MFU, peak allocated", _sweep_cell(row))
          for row in result.get("micro_batch_sweep", [])),
        *((f"update padded / packed, {impl} (s, peak allocated GiB)", _packing_cell(result["padding_free"], impl))
          for impl in ("sdpa", "flash_attention_2") if f"{impl}_padded" in result.get("padding_free", {})),
        ("wall time", f"{result['wall_s']:.0f} s"),
    ]  # fmt: skip
    lines = ["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    settings = f"max_pixels {result['max_pixels']:,}, {result['new_tokens']} new tokens (random weights: worst case)"
    return f"# GPU check: {result['size']}\n\n{settings}\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(RECIPES), default="3b")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=None, help="Truncate the language model (default: full).")
    parser.add_argument("--vision-layers", type=int, default=None, help="Truncate the vision tower (default: full).")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="Image budget (default: the recipe's, 2,560,000; Qwen3-VL 3,343,360).",
    )
    parser.add_argument("--new-tokens", type=int, default=256, help="Generated tokens per completion (all of them).")
    parser.add_argument("--steps", type=int, default=None, help="Generation steps measured (default: 1).")
    parser.add_argument(
        "--micro-batch", type=int, default=None, help="Completions per micro-step (default: the recipe's; CPU 2)."
    )
    parser.add_argument("--model-dir", default=None, help="Where the built model is saved (default: OUT/model).")
    parser.add_argument("--data", default=".gpu_data/mathvision/data/test.jsonl", help="MATH-V rows with images.")
    parser.add_argument(
        "--prompts-per-generation", type=int, default=None, help="Prompts per GPU per generation (default: 16; CPU 1)."
    )
    parser.add_argument("--rating-items", type=int, default=None, help="Items rated, k=8 (default: 8; CPU 1).")
    parser.add_argument("--eval-items", type=int, default=None, help="Items evaluated (default: 16; CPU 2).")
    parser.add_argument("--num-generations", type=int, default=None, help="Completions per prompt (8; CPU 2).")
    parser.add_argument(
        "--compile-generation",
        choices=["true", "false", "auto"],
        default="auto",
        help="Training rollouts on a static cache with a compiled decoding step (auto: on CUDA).",
    )
    parser.add_argument(
        "--engine-sequences",
        type=int,
        nargs="+",
        default=None,
        help="Sequences decoding at once for the engines comparison (default: 32 128; CPU 2).",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        default=None,
        help="Micro-batches whose update MFU and memory are measured (default: 8 16 32; CPU none).",
    )
    parser.add_argument(
        "--padding-free",
        choices=["true", "false", "auto"],
        default="auto",
        help="Time one update padded vs packed (auto: on CUDA; on a CPU the 3B head makes it slow, and "
        "tests/test_scale_path.py runs it on the tiny model instead).",
    )
    args = parser.parse_args(argv)
    on_cpu = args.device == "cpu"  # the same code, sized to prove itself in a test on 2 cores
    args.num_generations = args.num_generations or (2 if on_cpu else 8)
    args.steps = args.steps or 1  # one H200 step at the 3B recipe: ~170 s (docs/gpu.md)
    args.micro_batch = args.micro_batch or (2 if on_cpu else None)
    args.rating_items = args.rating_items or (1 if on_cpu else 8)
    args.prompts_per_generation = args.prompts_per_generation or (1 if on_cpu else 16)
    args.eval_items = args.eval_items or (2 if on_cpu else 16)
    args.compile_generation = args.compile_generation == "true" or (args.compile_generation == "auto" and not on_cpu)
    args.engine_sequences = args.engine_sequences or ([2] if on_cpu else [32, 128])
    args.sweep = ([] if on_cpu else [8, 16, 32]) if args.sweep is None else args.sweep
    from observe_r1.data import load_grpo_dataset, load_items, with_images
    from observe_r1.models import SHAPES, build_policy, count_parameters, num_parameters, resolve_size, shaped_config

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; pass --device cpu to run the same check on the CPU")
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = RECIPES[args.shape]["size"]
    family = resolve_size(size)
    args.max_pixels = args.max_pixels or MAX_PIXELS[family.name]
    model, processor = build_policy(size, layers=args.layers, vision_layers=args.vision_layers, device=device)
    min_pixels = 4 * family.pixel_unit**2  # 2 × 2 image tokens, as the recipes' min_pixels
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": args.max_pixels}
    records = [with_images(item) for item in load_items(args.data)[0][: max(args.rating_items, args.eval_items)]]
    result = {"size": size, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "layers": args.layers or SHAPES[size].text_layers,
              "vision_layers": args.vision_layers or SHAPES[size].vision_layers,
              "parameters": num_parameters(model), "parameters_full": count_parameters(shaped_config(size)),
              "max_pixels": args.max_pixels, "new_tokens": args.new_tokens, "dtype": "bfloat16",
              "torch": torch.__version__}  # fmt: skip
    result["logprobs"] = logprob_precision(model, processor, records[0], args.new_tokens, device)
    save_partial(out, result, started)
    model.to(torch.bfloat16 if device.type == "cuda" else torch.float32)  # the dtype training generates in
    result["generation_engines"] = generation_engines(
        model.eval(), processor, records, sequences=args.engine_sequences, new_tokens=args.new_tokens
    )
    model.to(torch.bfloat16)  # saved as before
    save_partial(out, result, started)
    model_dir = Path(args.model_dir or out / "model")  # TRL builds its reference model from the policy's folder
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    del model
    gc.collect()
    dataset, _ = load_grpo_dataset(args.data)
    recipe_mb = RECIPES[args.shape]["micro_batch"]
    micro_batch, training, failed = args.micro_batch or recipe_mb, None, []
    while training is None and micro_batch >= 1:
        print(f"gpu_check: training at {micro_batch} completions per micro-step", flush=True)
        training = fits(lambda mb=micro_batch: train_steps(args, model_dir, processor, dataset, device, mb), device)
        if training is None:
            failed.append(micro_batch)
            micro_batch //= 2
    if training is None:
        raise SystemExit(f"gpu_check: no micro-batch fits ({failed})")
    result.update(training=training, recipe_micro_batch=recipe_mb, oom_micro_batches=failed,
                  recipe_micro_batch_fits=training["micro_batch"] >= recipe_mb)  # fmt: skip
    save_partial(out, result, started)
    result["micro_batch_sweep"] = micro_batch_sweep(args, model_dir, processor, dataset, device, args.sweep)
    save_partial(out, result, started)
    if args.padding_free == "true" or (args.padding_free == "auto" and not on_cpu):
        result["padding_free"] = padding_free_update(model_dir, processor, records, device,
                                                     rows=min(len(records), recipe_mb), new_tokens=args.new_tokens,
                                                     repeats=1 if on_cpu else 3)  # fmt: skip
        save_partial(out, result, started)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    from observe_r1.models import load_policy

    policy, _ = load_policy(model_dir, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32, device=device)
    batch = 128 if device.type == "cuda" else 8
    result["rating"] = generation_rate(policy, processor, records[: args.rating_items], n=args.num_generations,
                                       temperature=1.0,
                                       new_tokens=args.new_tokens, batch=batch)  # fmt: skip
    save_partial(out, result, started)
    result["eval"] = generation_rate(policy, processor, records[: args.eval_items], n=1, temperature=0.0,
                                     new_tokens=args.new_tokens, batch=batch)  # fmt: skip
    result["wall_s"] = time.perf_counter() - started
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_check.md").write_text(markdown(result))
    (out / "gpu_check.partial.json").unlink(missing_ok=True)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
