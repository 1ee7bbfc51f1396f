"""Shared test helpers: tiny configs, scripted reward functions, synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import TrainerCallback

from observe_r1.config import ObserveR1Config
from observe_r1.data import load_grpo_dataset
from observe_r1.rewards import completion_text
from observe_r1.synth import generate_items, write_dataset


def tiny_config(output_dir, **overrides) -> ObserveR1Config:
    values = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
        learning_rate=1e-2,
        beta=0.0,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        bonus_min_length=4,
        reward_workers=1,
    )
    values.update(overrides)
    return ObserveR1Config(**values)


def synth_dataset(tmp_path, n=16, seed=0, levels=None):
    """``n`` synthetic items written and loaded; ``levels`` (one per row) become their ladder ``stretch_level``."""
    items = generate_items(n, seed)
    for item, level in zip(items, levels or [], strict=False):
        item["stretch_level"] = level
    path = write_dataset(items, tmp_path / "data")
    dataset, _ = load_grpo_dataset(path)
    return path, dataset


def train_spied(model_dir, tmp_path, reward, n=16, levels=None, **overrides):
    """Train the tiny model at ``model_dir`` on ``n`` synthetic prompts (``levels``: their ladder levels) with
    ``reward`` as the only reward, into ``tmp_path/out``; returns (trainer, the outputs the loss got, dataset,
    processor, whether any parameter moved)."""
    from observe_r1.models import load_policy
    from observe_r1.train import build_trainer

    model, processor = load_policy(model_dir)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    _, dataset = synth_dataset(tmp_path, n=n, levels=levels)
    config = tiny_config(tmp_path / "out", **{"max_steps": 3, **overrides})
    trainer = build_trainer(model, processor, dataset, config, reward_funcs=[reward], concise_progress=False)
    outputs = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        output = original(inputs)
        outputs.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()})
        return output

    trainer._generate_and_score_completions = spy
    trainer.train()
    moved = any(not torch.equal(before[k], v.detach()) for k, v in model.named_parameters())
    return trainer, outputs, dataset, processor, moved


def assert_rows_carry_their_images(output, prompt_ids, dataset, processor, G=4):
    """Each trained group of ``output`` (in ``prompt_ids`` order, ``G`` rows each) holds its own prompt's image."""
    from trl.trainer.utils import split_pixel_values_by_grid

    ids = dataset["id"]
    pixels = split_pixel_values_by_grid(output)["pixel_values"]
    for j, prompt_id in enumerate(prompt_ids):
        image = dataset[ids.index(prompt_id)]["images"][0]
        expected = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        for m in range(G):
            assert torch.equal(pixels[j * G + m], expected), (prompt_id, m)


class ParityAccuracy:
    """Scripted 'accuracy': 1.0 for completions of odd character length, so groups have reward variance."""

    __name__ = "accuracy"

    def __call__(self, completions, **kwargs):
        return [float(len(completion_text(c)) % 2) for c in completions]


class ConstantAccuracy:
    """Every completion scores the same: zero-variance groups, zero advantages, no parameter may move."""

    __name__ = "accuracy"

    def __call__(self, completions, **kwargs):
        return [1.0] * len(completions)


SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
RECIPE_MAX_PIXELS = 2_560_000  # the 3B recipe's image budget


def benchmark_file(relative: str) -> Path:
    """A file of the real benchmark slices beside the project; skips the test when they are absent."""
    import pytest

    path = SHARED_BENCHMARKS / relative
    if not path.exists():
        pytest.skip(f"real benchmark slices not found at {SHARED_BENCHMARKS} (they live in ../shared/benchmarks)")
    return path


def mathvision_dataset(n: int = 16, max_image_pixels: int = 700_000):
    """The first ``n`` MATH-V test rows (as published) whose images are at most ``max_image_pixels``, in TRL's
    layout; their images differ in size, so their prompts differ in length."""
    from observe_r1.data import load_items, to_grpo_dataset

    items, _ = load_items(benchmark_file("mathvision/data/test.jsonl"))
    small = []
    for item in items:
        with Image.open(item["images"][0]) as image:
            if image.width * image.height <= max_image_pixels:
                small.append(item)
    return to_grpo_dataset(small[:n])


class ImagePositionCheck:
    """A forward pre-hook that checks, on every model forward carrying ``mm_token_type_ids``, that the positions
    marked as image are exactly the ``<|image_pad|>`` tokens and that each sample has as many of them as its
    image's grid has merged patches (one image per sample)."""

    def __init__(self, model, processor):
        self.pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self.merge = processor.image_processor.merge_size**2
        self.forwards = self.grad_forwards = self.samples = 0
        self.misaligned: list[int] = []  # per forward: samples whose marks differ from the pad tokens
        self.image_tokens: set[int] = set()  # distinct image-token counts seen per sample
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        import torch

        ids, types = kwargs.get("input_ids"), kwargs.get("mm_token_type_ids")
        if ids is None or types is None or ids.shape != types.shape or ids.shape[1] == 1:
            return
        self.forwards += 1
        self.grad_forwards += int(torch.is_grad_enabled())
        self.samples += ids.shape[0]
        pads = ids == self.pad_id
        bad = ((types == 1) != pads).any(dim=1)
        grid = kwargs.get("image_grid_thw")
        if grid is not None and grid.shape[0] == ids.shape[0]:
            bad |= pads.sum(dim=1) != grid.prod(dim=1) // self.merge
        self.misaligned.append(int(bad.sum()))
        self.image_tokens.update(int(n) for n in pads.sum(dim=1))


class ScriptedGroups:
    """Scripted 'accuracy' per prompt row: rows in ``constant_rows`` score 0.0 on every completion and rows in
    ``solved_rows`` 1.0 on every completion (groups with zero advantage); any other prompt scores 1.0 on the first
    completion of its run in the batch and ``tail`` on the others, so its group always has reward variance (also
    when a group is split across processes)."""

    __name__ = "accuracy"

    def __init__(self, constant_rows=(), tail=lambda text: 0.0, solved_rows=()):
        self.constant_rows, self.tail, self.solved_rows = set(constant_rows), tail, set(solved_rows)

    def __call__(self, completions, row, **kwargs):
        out = []
        for i, (completion, r) in enumerate(zip(completions, row, strict=True)):
            if r in self.constant_rows or r in self.solved_rows:
                out.append(float(r in self.solved_rows))
            elif i == 0 or row[i - 1] != r:
                out.append(1.0)
            else:
                out.append(self.tail(completion_text(completion)))
        return out


def length_parity_tail(text: str) -> float:
    """A completion-dependent score below the 0.5 'correct' threshold."""
    return 0.25 * (len(text) % 2)


def run_until_killed(cmd: list[str], out: Path, *, checkpoint: str, consumed_lines: int, env: dict,
                     timeout: float = 240, poll: float = 0.01) -> int:  # fmt: skip
    """Start ``cmd`` (an ``observe-r1 train`` writing to ``out``) and kill -9 it with every process it started once
    ``out`` holds ``checkpoint`` (a folder or a file in one) and ``consumed.jsonl`` has ``consumed_lines`` lines;
    returns the exit code (-SIGKILL if killed). The whole process tree is killed: torchrun starts each worker in a
    session of its own, so killing the process group would leave the workers training."""
    import signal
    import subprocess
    import time

    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        log = out / "consumed.jsonl"
        if (out / checkpoint).exists() and (consumed_lines == 0 or log.exists() and
                                            len(log.read_text().splitlines()) >= consumed_lines):  # fmt: skip
            parent = psutil.Process(proc.pid)
            for process in [parent, *parent.children(recursive=True)]:
                try:
                    process.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
            break
        time.sleep(poll)
    return proc.wait()


def run_two_processes(script: str, *args, ranks_dir: Path) -> list:
    """Run ``tests/dist/SCRIPT`` on 2 CPU processes (torchrun, gloo, a free port) and return what each rank wrote
    to ``ranks_dir/rank{0,1}.json``; a failing run fails the test with the end of its stderr."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(root / "tests" / "dist" / script), *map(str, args)]  # fmt: skip
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((Path(ranks_dir) / f"rank{r}.json").read_text()) for r in (0, 1)]


def differing_weights(a: dict, b: dict) -> list[str]:
    """Names whose tensors differ between two ``{name: tensor}`` snapshots (or are missing on one side)."""
    return sorted(n for n in a.keys() | b.keys() if n not in a or n not in b or not torch.equal(a[n], b[n]))


class StopAt(TrainerCallback):
    """A trainer callback that ends training after ``step`` (a run that stops where a crash would have) and keeps a
    copy of every parameter at that step (``weights``) and when training (re)starts (``at_start``)."""

    def __init__(self, step: int | None = None, snapshot_at: int | None = None):
        self.step, self.snapshot_at = step, snapshot_at
        self.weights: dict | None = None
        self.at_start: dict | None = None

    def _copy(self, model) -> dict:
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.at_start = self._copy(model)  # after the Trainer has loaded a checkpoint being resumed

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == (self.snapshot_at or self.step):
            self.weights = self._copy(model)
        if state.global_step == self.step:
            control.should_training_stop = True
