"""``observe-r1 train``: load policy and data, run ``ObserveR1Trainer``, write metrics, checkpoints and plots.

    observe-r1 train --config recipes/tiny_cpu.yaml --max_steps 20
    observe-r1 train --config recipes/tiny_cpu.yaml --resume          # after a crash: same curriculum position
    observe-r1 train --config recipes/tiny_cpu.yaml --resume auto     # requeued jobs: continue, or start fresh

A run directory holds ``checkpoint-*/``, TensorBoard events (``runs/``), ``metrics.jsonl`` (one line per
logging step), ``consumed.jsonl`` (the prompt ids each step trained on) and ``plots/*.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from transformers.hf_argparser import string_to_bool

from observe_r1.checkpoints import discard, export_model, latest_complete
from observe_r1.config import ConfigError, ObserveR1Config, TrainScriptArguments
from observe_r1.data import load_grpo_dataset
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.launch import check_launch, check_sharding, check_vllm
from observe_r1.lora import is_adapter_dir, merge_adapter, record_base, trainable_line
from observe_r1.metrics import MetricsJsonl, use_concise_progress
from observe_r1.models import load_policy
from observe_r1.plots import plot_metrics
from observe_r1.trainer import ObserveR1Trainer


def load_recipe(path: str | Path) -> dict:
    """A YAML recipe as a dict; ``extends: other.yaml`` (relative to the file) loads that one first, then
    overrides it with this file's values."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    parent = values.pop("extends", None)
    return {**load_recipe(path.parent / parent), **values} if parent else values


def normalize_flags(argv: list[str]) -> list[str]:
    """observe-r1's CLI convention (``--skip-bad-rows``, ``--out``) on top of TRL's (``--skip_bad_rows``,
    ``--output_dir``): both spellings work for ``train``.

    >>> normalize_flags(["--skip-bad-rows", "true", "--out", "runs/a", "--max_steps", "3"])
    ['--skip_bad_rows', 'true', '--output_dir', 'runs/a', '--max_steps', '3']
    >>> normalize_flags(["--resume", "--max-steps", "3"])
    ['--resume', 'true', '--max_steps', '3']
    """
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            name = "output_dir" if name == "out" else name.replace("-", "_")
            arg = f"--{name}{eq}{value}"
            if name == "resume" and not eq and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
                out += [arg, "true"]  # a bare --resume means --resume true
                continue
        out.append(arg)
    return out


def accepted_flags() -> set[str]:
    """Every flag ``observe-r1 train`` accepts, in both spellings (``--skip-bad-rows`` and ``--skip_bad_rows``)."""
    from dataclasses import fields

    names = {f.name for cls in (TrainScriptArguments, ObserveR1Config) for f in fields(cls)} | {"config", "out"}
    return {f"--{n}" for n in names} | {f"--{n.replace('_', '-')}" for n in names}


def check_flags(argv: list[str]) -> None:
    """Refuse an unknown flag in one line that names it and the closest valid ones (TRL's parser would raise a
    ValueError listing every unknown argument at once, after importing everything)."""
    import difflib

    known = accepted_flags()
    for arg in argv:
        if arg.startswith("--"):
            flag = arg.partition("=")[0]
            if flag not in known:
                close = difflib.get_close_matches(flag, sorted(known), n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else "; see observe-r1 train --help"
                raise ConfigError(f"observe-r1 train: unknown flag {flag}{hint}")


def train_help() -> str:
    """``observe-r1 train -h``: every field it accepts with its help, observe-r1's first, then TRL's GRPOConfig,
    then transformers' TrainingArguments."""
    from dataclasses import MISSING, fields

    from transformers import TrainingArguments
    from trl import GRPOConfig

    def owner(name: str) -> str:
        if name in {f.name for f in fields(TrainingArguments)}:
            return "transformers TrainingArguments"
        return "TRL GRPOConfig" if name in {f.name for f in fields(GRPOConfig)} else "observe-r1"

    groups: dict[str, list[str]] = {"observe-r1": [], "TRL GRPOConfig": [], "transformers TrainingArguments": []}
    for cls in (TrainScriptArguments, ObserveR1Config):
        for f in fields(cls):
            if f.name.startswith("_"):
                continue
            default = f.default if f.default is not MISSING else "…"
            text = " ".join(str(f.metadata.get("help", "")).split())
            groups["observe-r1" if cls is TrainScriptArguments else owner(f.name)].append(
                f"  --{f.name.replace('_', '-')} (default: {default!r})\n      {text}"
            )
    lines = ["Usage: observe-r1 train --config RECIPE.yaml [--field value ...]",
             "Flags take dashes or underscores (--max-steps = --max_steps); --out is --output_dir.", ""]  # fmt: skip
    for title, entries in groups.items():
        lines += [f"{title} fields:", *entries, ""]
    return "\n".join(lines)


def parse_train_args(argv: list[str]) -> tuple[TrainScriptArguments, ObserveR1Config]:
    """TRL's parser: ``--config FILE.yaml`` (which may ``extends:`` another recipe) plus ``--field value``
    overrides for both dataclasses."""
    import tempfile

    import yaml
    from trl import TrlParser

    check_flags(argv)
    argv = normalize_flags(argv)
    merged = {}
    if "--config" in argv:
        i = argv.index("--config")
        merged = load_recipe(argv[i + 1])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(merged, f)
        argv = [*argv[: i + 1], f.name, *argv[i + 2 :]]
    # --use_vllm as TRL's parser reads it (bare, "X" or "=X"; the last wins), checked before the config is built:
    # its checks would fail first on a CPU machine
    vllm_flag = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    vllm_flag.add_argument("--use_vllm", type=string_to_bool, nargs="?", const=True, default=merged.get("use_vllm"))
    check_vllm(bool(vllm_flag.parse_known_args(argv)[0].use_vllm))
    parser = TrlParser((TrainScriptArguments, ObserveR1Config))
    try:
        script_args, config = parser.parse_args_and_config(argv)[:2]
    except ValueError as err:  # the config's own checks: one line, not a traceback through dataclasses
        raise ConfigError(f"observe-r1 train: {' '.join(str(err).split())}") from None
    return script_args, config


def _truncate_logs(output_dir: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint: those steps will be trained again."""
    for name in ("metrics.jsonl", "consumed.jsonl"):
        path = output_dir / name
        kept = [
            row for row in read_jsonl(path) if row["step"] < step or (name == "metrics.jsonl" and row["step"] == step)
        ]
        write_jsonl(path, kept)


RESUME_MODES = ("false", "true", "auto")


def resume_mode(value: str | bool) -> str:
    """``--resume`` as one of :data:`RESUME_MODES` (booleans and their spellings are accepted).

    >>> [resume_mode(v) for v in (True, "no", "auto", "Yes")]
    ['true', 'false', 'auto', 'true']
    """
    if str(value).lower() == "auto":
        return "auto"
    try:
        return "true" if string_to_bool(str(value).lower()) else "false"
    except Exception:
        raise ConfigError(f"--resume must be true, false or auto; got {value!r}") from None


def resolve_checkpoint(output_dir: Path, resume: str | bool) -> str | None:
    """The checkpoint to continue from: with ``resume`` true the newest complete ``checkpoint-*`` of ``output_dir``
    (an error if there is none); with ``auto`` the same or None when there is none (a job scheduler that requeues a
    preempted job with the same command: the first attempt starts fresh, every later one continues); with false None.
    Newer torn checkpoints (a save that was killed) are named, with the reason, and removed."""
    mode = resume_mode(resume)
    if mode == "false":
        return None
    checkpoint, skipped = latest_complete(output_dir)
    if checkpoint is None and mode == "true":
        why = "; ".join(f"{folder.name}: {reason}" for folder, reason in skipped)
        raise FileNotFoundError(f"--resume: no complete checkpoint-* directory in {output_dir}"
                                + (f" ({why})" if why else "") + "; start without --resume, "
                                "or use --resume auto to start fresh when there is none")  # fmt: skip
    for folder, reason in skipped:
        print(f"--resume: skipping {folder.name} ({reason}); "
              + (f"resuming from {checkpoint.name}" if checkpoint else "starting fresh"))  # fmt: skip
    if checkpoint is None:
        print(f"--resume auto: no complete checkpoint in {output_dir}; starting fresh")
    if int(os.environ.get("RANK", "0")) == 0:
        discard([folder for folder, _ in skipped])
    return str(checkpoint) if checkpoint else None


def build_trainer(
    model,
    processor,
    dataset,
    config: ObserveR1Config,
    *,
    reward_funcs=None,
    callbacks=None,
    concise_progress: bool = True,
) -> ObserveR1Trainer:
    """The one way observe-r1 sets up training (``observe-r1 train``, the demo, the benchmarks).

    Writes ``metrics.jsonl`` and ``consumed.jsonl`` into ``config.output_dir`` (created) and prints one readable
    line per step instead of the Trainer's dictionary of metrics.
    """
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer = ObserveR1Trainer(
        model=model,
        args=config,
        reward_funcs=reward_funcs,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[MetricsJsonl(output_dir / "metrics.jsonl"), *(callbacks or [])],
        consumed_log=output_dir / "consumed.jsonl",
    )
    check_sharding(config, trainer.accelerator)  # FSDP / DeepSpeed asked for and not running: stop, in one line
    if concise_progress:
        use_concise_progress(trainer)
    return trainer


def save_final(trainer: ObserveR1Trainer, processor, *, merge: bool = False) -> Path:
    """Save the trained policy (with LoRA: the adapter) and its processor to ``output_dir/final`` and plot the
    run; with ``merge`` also write the adapter merged into its base model to ``output_dir/merged``. Returns
    ``final``.

    Every process calls it: a sharded model (FSDP, DeepSpeed ZeRO-3) is gathered collectively
    (:func:`observe_r1.checkpoints.export_model`), whatever the state-dict type of the run's checkpoints; the main
    process writes, and every process returns once ``final/`` is complete."""
    output_dir = Path(trainer.args.output_dir)
    final = output_dir / "final"
    export_model(trainer, final)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(final)
        if is_adapter_dir(final):
            record_base(final)
            if merge:
                merge_adapter(final, output_dir / "merged")
        plot_metrics(output_dir / "metrics.jsonl", output_dir / "plots")
    trainer.accelerator.wait_for_everyone()
    return final


def run_training(script_args: TrainScriptArguments, config: ObserveR1Config) -> ObserveR1Trainer:
    """``observe-r1 train``: load policy and data, train (resuming from the last checkpoint if asked), save."""
    if not script_args.dataset_path:
        raise ValueError("--dataset_path is required (a JSONL/Parquet file or a datasets directory)")
    if script_args.merge and not config.use_peft:
        raise ConfigError("--merge applies to LoRA runs (--use_peft true); a full fine-tune's final/ is a whole model")
    check_launch(config)
    output_dir = Path(config.output_dir)
    checkpoint = resolve_checkpoint(output_dir, script_args.resume)
    model, processor = load_policy(script_args.model_name_or_path, trust_remote_code=config.trust_remote_code)
    processor.image_processor.size = {"shortest_edge": script_args.min_pixels, "longest_edge": script_args.max_pixels}
    dataset, report = load_grpo_dataset(
        script_args.dataset_path,
        skip_bad_rows=script_args.skip_bad_rows,
        strict=script_args.strict,
        system_prompt=config.system_prompt,
        image_root=script_args.image_root,
        layout=script_args.layout,
    )
    print(report)
    trainer = build_trainer(model, processor, dataset, config)
    if trainer.accelerator.is_main_process:
        if checkpoint:
            step = int(Path(checkpoint).name.split("-")[-1])
            _truncate_logs(output_dir, step)
        else:
            for name in ("metrics.jsonl", "consumed.jsonl"):
                (output_dir / name).unlink(missing_ok=True)
    if trainer.accelerator.is_main_process:
        print(trainable_line(trainer.model))
    trainer.train(resume_from_checkpoint=checkpoint)
    save_final(trainer, processor, merge=script_args.merge)
    end_processes(trainer)
    return trainer


def end_processes(trainer) -> None:
    """End a multi-process run cleanly (a no-op in one process): release the trainer's distributed wrapper, wait for
    every process, then destroy the process group, on every process at once.

    Left to the interpreter's exit, the group's gloo/NCCL threads were torn down while the other process had gone:
    a rank aborted now and then after its last step ("terminate called without an active exception", SIGABRT), or,
    with the group destroyed while DDP's reducer still held it, hung in the group's destructor at exit."""
    import gc
    import warnings

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_initialized():
        return
    trainer.model_wrapped = trainer.model  # DDP's reducer holds the group: it must go first
    trainer.accelerator.free_memory()  # the accelerator's references to prepared models, optimizers, loaders
    gc.collect()
    held = sum(issubclass(type(o), DistributedDataParallel) for o in gc.get_objects())
    if held:
        warnings.warn(f"{held} DistributedDataParallel wrapper(s) still referenced: the process group outlives "
                      "destroy_process_group and is torn down at exit", stacklevel=2)  # fmt: skip
    trainer.accelerator.wait_for_everyone()
    dist.destroy_process_group()  # the group's last reference: its threads stop now, every peer still alive
