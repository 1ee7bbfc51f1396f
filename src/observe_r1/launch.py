"""Launch checks: what a run asked for (vLLM, several processes, FSDP, DeepSpeed) runs, or it stops in one line.

Kept apart from ``train.py`` so that ``generation.py`` and ``trainer.py`` can use them without importing the
training entry point (which imports both of them).
"""

from __future__ import annotations

import importlib.util
import os

from observe_r1.config import ConfigError


def check_vllm(use_vllm: bool, what: str = "use_vllm") -> None:
    """A one-line error naming the extra when vLLM is asked for but not installed."""
    if use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"{what} needs vLLM, which is not installed: pip install 'observe-r1[vllm]' "
                          "(GPU machines; vLLM 0.31 pins torch 2.13 and torchvision 0.28)")  # fmt: skip


def check_launch(config, environ=None) -> None:
    """Refuse a multi-process launch in which the trainer is not distributed (seen: ``accelerate launch`` with an
    FSDP config on a CPU machine ran independent trainings into one output folder)."""
    environ = os.environ if environ is None else environ
    launched = int(environ.get("WORLD_SIZE", "1"))
    if launched > 1 and config.world_size != launched:
        asked = requested_engine(config, environ)
        raise ConfigError(
            (f"asked for {asked}: " if asked else "")
            + f"launched as {launched} processes (WORLD_SIZE) but the trainer sees {config.world_size} "
            f"(parallel mode {config.parallel_mode.value}): each process would train alone into "
            f"{config.output_dir}. Use torchrun or accelerate with a config that matches the machine "
            "(FSDP and DeepSpeed need GPUs; on CPU use --use-cpu true with DDP)"
        )


def _on(environ, name: str) -> bool:
    return str(environ.get(name, "false")).lower() in ("1", "true", "yes")


def requested_engine(config, environ=None) -> str | None:
    """The sharding engine a launch asked for: ``"FSDP"`` (``--fsdp`` / ``fsdp_config`` or an accelerate FSDP
    config, which sets ``ACCELERATE_USE_FSDP``), ``"DeepSpeed"`` (``--deepspeed`` or an accelerate DeepSpeed config),
    or None (plain data parallel or one process).

    >>> requested_engine(type("C", (), {"fsdp": None, "deepspeed": None})(), {"ACCELERATE_USE_FSDP": "true"})
    'FSDP'
    >>> requested_engine(type("C", (), {"fsdp": "", "deepspeed": "ds.json"})(), {})
    'DeepSpeed'
    """
    environ = os.environ if environ is None else environ
    if getattr(config, "fsdp", None) or _on(environ, "ACCELERATE_USE_FSDP"):
        return "FSDP"
    if getattr(config, "deepspeed", None) or _on(environ, "ACCELERATE_USE_DEEPSPEED"):
        return "DeepSpeed"
    return None


def running_engine(accelerator) -> str:
    """What the accelerator actually runs: ``"FSDP"``, ``"DeepSpeed"`` or the name of its distributed type (``NO``,
    ``MULTI_CPU``, ``MULTI_GPU`` …: every process holds the whole model)."""
    kind = str(accelerator.distributed_type.value)
    return {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}.get(kind, kind)


def check_sharding(config, accelerator, environ=None) -> None:
    """Refuse a launch that asked for FSDP or DeepSpeed and got something else (accelerate shards only on
    accelerators: on CPU processes an FSDP request runs plain DDP without a word, and on a GPU box a config that does
    not reach the trainer replicates the whole model on every GPU)."""
    asked = requested_engine(config, environ)
    runs = running_engine(accelerator)
    if asked is not None and asked != runs:
        where = "CPU processes" if accelerator.device.type == "cpu" else f"{accelerator.device.type} devices"
        raise ConfigError(
            f"asked for {asked} but accelerate runs {runs} on {accelerator.num_processes} {where}: every process "
            f"would hold the whole model. Fix: {asked} needs GPUs (use_cpu false, one process per GPU, launched with "
            f"accelerate launch --config_file or torchrun); to train unsharded, drop the {asked} config"
        )
