"""What freezing and LoRA save: trainable parameters, optimizer-state bytes and peak memory per training step.

    .venv/bin/python bench/lora_memory.py [--steps 3] [--layers 2] [--vision-layers 2] [--no-shape]
                                          [--out bench/results/lora_memory.json]

Each (model, option) pair trains in a fresh process on the CPU: Observe-R1 steps of 2 prompts x 4 completions of
16 tokens on the built-in synthetic task, AdamW, beta 0.01 (as in the recipes: a full fine-tune keeps a reference
model, LoRA disables its adapter instead), fp32. Options: ``full`` (the paper's), ``freeze_vision_tower``,
``freeze_vision_tower + freeze_merger``, ``lora`` (r 16, the language model's linear layers). Measured per run:

* trainable parameters (``requires_grad``) and the model's total;
* optimizer-state bytes: every tensor AdamW holds after the last step (two moments per trainable parameter);
* peak RSS of each step: the kernel's high-water mark (``VmHWM``) reset before the step (``/proc/self/clear_refs``)
  and read after it, so each step's peak is its own; and the RSS once the trainer is set up (``setup_rss_bytes``:
  the weights are still memory-mapped from their safetensors file then, mostly not resident).

Models: ``tiny`` (the test model, 0.23M parameters) and, unless ``--no-shape``, the published Qwen2.5-VL-3B
architecture cut to ``--layers`` language layers and ``--vision-layers`` vision blocks (``observe-r1 tiny-model
--size qwen2.5-vl-3b``; its 151,936 x 2048 tied embedding dominates at that depth). Full-depth 3B and 7B counts
(trainable parameters, AdamW moments in fp32) come from models built on the meta device, nothing allocated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {
    "full": {},
    "freeze_vision_tower": {"freeze_vision_tower": True},
    "freeze_vision_tower+merger": {"freeze_vision_tower": True, "freeze_merger": True},
    "lora_r16": {"use_peft": True},
}


def _status(key: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts at the current RSS


def worker(model_dir: str, option: str, steps: int, out_json: str) -> None:
    """One training run; writes its measurements to ``out_json``."""
    import torch
    from transformers import TrainerCallback

    from observe_r1.config import ObserveR1Config
    from observe_r1.data import load_grpo_dataset
    from observe_r1.lora import parameter_counts
    from observe_r1.models import load_policy
    from observe_r1.rewards import FormatReward, completion_text
    from observe_r1.synth import generate_items, write_dataset
    from observe_r1.train import build_trainer

    class Parity:
        """Reward variance in every group, so every step has gradients."""

        __name__ = "accuracy"

        def __call__(self, completions, **kwargs):
            return [float(len(completion_text(c)) % 2) for c in completions]

    class StepPeaks(TrainerCallback):
        def __init__(self):
            self.peaks, self.seconds, self._start = [], [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            _reset_peak()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)
            self.peaks.append(_status("VmHWM"))

    torch.manual_seed(0)
    tmp = Path(out_json).parent / f"run-{option}"
    data = write_dataset(generate_items(4 * steps, seed=0), tmp / "data")
    dataset, _ = load_grpo_dataset(data)
    model, processor = load_policy(model_dir)
    config = ObserveR1Config(output_dir=str(tmp / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                             per_device_train_batch_size=8, num_generations=4, max_completion_length=16,
                             learning_rate=1e-5, beta=0.01, max_steps=steps, logging_steps=1, save_strategy="no",
                             report_to=[], seed=0, bonus_min_length=4, reward_workers=1,
                             **OPTIONS[option])  # fmt: skip
    peaks = StepPeaks()
    trainer = build_trainer(model, processor, dataset, config, reward_funcs=[Parity(), FormatReward()],
                            callbacks=[peaks], concise_progress=False)  # fmt: skip
    setup_rss = _status("VmRSS")
    trainer.train()
    state = trainer.optimizer.state
    optimizer_bytes = sum(t.numel() * t.element_size() for s in state.values() for t in s.values()
                          if torch.is_tensor(t) and t.dim() > 0)  # fmt: skip
    trainable, total = parameter_counts(trainer.model)
    result = {"trainable_parameters": trainable, "total_parameters": total, "optimizer_state_bytes": optimizer_bytes,
              "setup_rss_bytes": setup_rss, "step_peak_rss_bytes": peaks.peaks,
              "step_seconds": [round(s, 3) for s in peaks.seconds]}  # fmt: skip
    Path(out_json).write_text(json.dumps(result))


def full_depth_counts() -> dict:
    """Trainable parameters of the full-depth 3B and 7B for each option, counted on the meta device."""
    import torch
    from peft import get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    from observe_r1.lora import freeze_parts, lora_config, parameter_counts
    from observe_r1.models import shaped_config

    class LoraArgs:
        lora_alpha, lora_dropout, lora_target_modules = 32, 0.0, None

    counts = {}
    for shape in ("qwen2.5-vl-3b", "qwen2.5-vl-7b"):
        rows = {}
        for option in ("full", "freeze_vision_tower", "freeze_vision_tower+merger", "lora_r16", "lora_r64"):
            with torch.device("meta"):
                model = Qwen2_5_VLForConditionalGeneration(shaped_config(shape))
            if option.startswith("lora"):
                args = LoraArgs()
                args.lora_r = int(option.removeprefix("lora_r"))
                model = get_peft_model(model, lora_config(args))
            else:
                freeze_parts(model, vision_tower=option != "full", merger=option.endswith("merger"))
            trainable, total = parameter_counts(model)
            rows[option] = {"trainable_parameters": trainable, "total_parameters": total,
                            "adamw_fp32_moment_bytes": 8 * trainable}  # fmt: skip
        counts[shape] = rows
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2, help="Language layers of the 3B-shaped model.")
    parser.add_argument("--vision-layers", type=int, default=2, help="Vision blocks of the 3B-shaped model.")
    parser.add_argument("--no-shape", action="store_true", help="Only the tiny model.")
    parser.add_argument("--out", default="bench/results/lora_memory.json")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "OPTION", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.steps, args.worker[2])

    from observe_r1.models import build_tiny_model

    results = {"steps": args.steps, "setting": "CPU, fp32, 2 prompts x 4 completions of 16 tokens, beta 0.01, AdamW",
               "models": {}, "full_depth": full_depth_counts()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        models = {"tiny": build_tiny_model(Path(tmp) / "tiny", size="tiny")}
        if not args.no_shape:
            name = f"qwen2.5-vl-3b, {args.layers} layers, {args.vision_layers} vision blocks"
            models[name] = build_tiny_model(Path(tmp) / "3b", size="qwen2.5-vl-3b", layers=args.layers,
                                            vision_layers=args.vision_layers)  # fmt: skip
        for name, model_dir in models.items():
            results["models"][name] = {}
            for option in OPTIONS:
                out = Path(tmp) / f"{Path(model_dir).name}-{option}.json"
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--worker", str(model_dir), option,
                       str(out)]  # fmt: skip
                run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if run.returncode != 0:
                    raise RuntimeError(f"{name} / {option} failed:\n{run.stderr[-3000:]}")
                row = json.loads(out.read_text())
                results["models"][name][option] = row
                peak = max(row["step_peak_rss_bytes"]) / 2**20
                print(
                    f"{name:45s} {option:28s} trainable {row['trainable_parameters']:>12,}  optimizer "
                    f"{row['optimizer_state_bytes'] / 2**20:9.1f} MiB  peak RSS/step {peak:8.1f} MiB",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
