"""Checkpoints a run can trust: complete or ignored, and restored weight for weight (docs/resume.md).

Two upstream behaviours make a plain ``Trainer`` resume unsafe, and this module is where observe-r1 handles both:

* **Torn saves.** ``Trainer`` writes ``checkpoint-N/`` in place, file by file; a run killed during a save leaves a
  folder that ``get_last_checkpoint`` still picks (it takes the highest number) and resume then fails. Every
  checkpoint observe-r1 writes ends with a marker file, written last and atomically (:func:`mark_complete`);
  :func:`latest_complete` resumes from the newest folder that has it and names the ones it skipped.
* **Renamed keys.** transformers 5 saves Qwen2.5-VL in the published key layout (``visual.*``, ``model.layers.*``)
  while the model in memory uses ``model.visual.*`` / ``model.language_model.*``; ``Trainer._load_from_checkpoint``
  loads with ``strict=False`` and no key conversion, so a resumed full fine-tune silently kept the base weights
  (huggingface/transformers#43701). :func:`load_full_weights` converts the keys as ``from_pretrained`` does and
  refuses a checkpoint that leaves any weight of the model unloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers.trainer_utils import rotate_checkpoints

COMPLETE_MARKER = "observe_r1_complete.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from, with the reason and the folder."""


_INDEXED_CPU = False


def _cpu_with_index(storage, location: str):
    return storage if location.startswith("cpu:") else None


def allow_indexed_cpu_location() -> None:
    """Let ``torch.load`` map storages to ``cpu:N``: ``Trainer`` loads the optimizer state onto ``args.device`` in a
    multi-process run, which is ``cpu:N`` for CPU processes, a location torch's own loader refuses ("don't know how
    to restore data location ... cpu:0"). CPU storages are the same on every index. Registered once."""
    global _INDEXED_CPU
    if not _INDEXED_CPU:
        torch.serialization.register_package(11, lambda storage: None, _cpu_with_index)
        _INDEXED_CPU = True


def mark_complete(folder: str | Path, step: int) -> None:
    """Write ``folder``'s completion marker (atomically: a temporary file renamed over the final name), once every
    other file of the checkpoint is on disk."""
    folder = Path(folder)
    tmp = folder / f".{COMPLETE_MARKER}.tmp"
    with open(tmp, "w") as f:
        json.dump({"global_step": step, "files": sorted(p.name for p in folder.iterdir() if p != tmp)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / COMPLETE_MARKER)


def finish_checkpoint(accelerator, folder: Path, should_save: bool, limit: int | None, best: str | None) -> None:
    """After ``Trainer`` wrote ``folder`` on every process: the marker (once every shard is written), then the
    ``save_total_limit`` rotation (``limit``), which therefore never removes the last complete checkpoint."""
    accelerator.wait_for_everyone()
    if should_save:
        mark_complete(folder, int(CHECKPOINT.match(folder.name)[1]))
        rotate_checkpoints(str(folder.parent), limit, best)


def incomplete_reason(folder: str | Path) -> str | None:
    """Why ``folder`` can't be resumed from (None when it is a complete observe-r1 checkpoint).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "checkpoint-4"
    >>> folder.mkdir()
    >>> incomplete_reason(folder)
    'no observe_r1_complete.json: its save did not finish'
    >>> mark_complete(folder, 4)
    >>> incomplete_reason(folder) is None
    True
    """
    folder = Path(folder)
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return f"no {COMPLETE_MARKER}: its save did not finish"
    try:
        listed = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"{COMPLETE_MARKER} is unreadable"
    missing = [name for name in listed if not (folder / name).exists()]
    return f"files listed by {COMPLETE_MARKER} are gone: {missing[:3]}" if missing else None


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir``, by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name)[1]))


def latest_complete(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint of ``output_dir`` (None if there is none) and the newer ones skipped, each
    with the reason."""
    skipped = []
    for folder in reversed(checkpoint_folders(output_dir)):
        reason = incomplete_reason(folder)
        if reason is None:
            return folder, skipped
        skipped.append((folder, reason))
    return None, skipped


def discard(folders: list[Path]) -> None:
    """Remove torn checkpoints newer than the one resumed from: the resumed run writes those steps again, and a
    half-written folder left beside a new one could be mistaken for part of it."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def is_full_model_dir(folder: str | Path) -> bool:
    """Whether ``folder`` holds a whole model's weights as ``save_pretrained`` writes them (not a LoRA adapter)."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    return any((Path(folder) / name).is_file() for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME))


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``save_pretrained`` folder (one safetensors file or an index of shards)."""
    from safetensors.torch import load_file
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    if (folder / SAFE_WEIGHTS_NAME).is_file():
        return load_file(folder / SAFE_WEIGHTS_NAME, device="cpu")
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if not index.is_file():
        raise CheckpointError(f"{folder}: no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME} to restore weights from")
    state = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        state |= load_file(folder / shard, device="cpu")
    return state


def runtime_keys(model: torch.nn.Module, keys) -> dict[str, str]:
    """``{checkpoint key: model key}``: the renaming ``from_pretrained`` applies to a checkpoint's keys for this
    model (published layout → runtime layout). Conversions that reshape tensors (fused experts and the like) are
    refused: resuming such a model is not supported here."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if not isinstance(t, WeightRenaming)]
    meta = {k: torch.empty(0, device="meta") for k in model.state_dict()}
    mapping = {}
    for key in keys:
        renamed, converted_by = rename_source_key(key, renamings, converters, model.base_model_prefix, meta)
        if converted_by is not None:
            raise CheckpointError(f"{key}: {type(model).__name__} checkpoints need a tensor conversion on load "
                                  f"({converted_by}); resuming such a model is not supported")  # fmt: skip
        mapping[key] = renamed
    return mapping


def load_full_weights(model: torch.nn.Module, folder: str | Path) -> int:
    """Load a full-model checkpoint into ``model`` in place, keys converted as ``from_pretrained`` converts them.
    Every weight of the model must come from the checkpoint (tied weights count as loaded with their source) and
    every tensor of the checkpoint must find its weight: otherwise :class:`CheckpointError`, before anything is
    copied. Returns the number of tensors loaded."""
    folder = Path(folder)
    state = _read_weights(folder)
    mapping = runtime_keys(model, state)
    converted = {mapping[k]: v for k, v in state.items()}
    own = model.state_dict(keep_vars=True)
    unexpected = sorted(k for k, renamed in mapping.items() if renamed not in own)  # as the checkpoint names them
    loaded_storage = {own[k].data_ptr() for k in converted if k in own}
    missing = sorted(k for k in set(own) - set(converted) if own[k].data_ptr() not in loaded_storage)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder} does not match the model being resumed ({type(model).__name__}): "
            f"{len(missing)} of its {len(own)} weights are not in the checkpoint {missing[:3]}, "
            f"{len(unexpected)} checkpoint tensors have no weight {unexpected[:3]}. Refusing to continue from "
            "weights that were not restored."
        )
    shapes = [k for k, v in converted.items() if v.shape != own[k].shape]
    if shapes:
        raise CheckpointError(f"{folder}: shapes differ from the model's for {shapes[:3]}")
    with torch.no_grad():
        for key, tensor in converted.items():
            own[key].copy_(tensor)
    return len(converted)


def export_model(trainer, folder: str | Path) -> None:
    """Write the trained model to ``folder`` as ``save_pretrained`` does (with LoRA: the adapter), whatever the
    sharding. Collective: every process calls it, the main process writes.

    Under FSDP the full state dict is gathered from every rank's shards for this export, whether the run's mid-run
    checkpoints are sharded (``SHARDED_STATE_DICT``, for which ``Trainer.save_model`` writes no weights at all) or
    full. DeepSpeed gathers ZeRO-3 shards inside ``Trainer.save_model``, which is why every process enters it.
    Raises :class:`CheckpointError` if the folder ends up without weights."""
    from observe_r1.lora import is_adapter_dir

    folder = Path(folder)
    if trainer.is_fsdp_enabled:
        state_dict = trainer.accelerator.get_state_dict(trainer.model)  # full tensors on the main process
        if trainer.args.should_save:
            trainer._save(str(folder), state_dict=state_dict)
        del state_dict
    else:
        trainer.save_model(str(folder))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save and not (is_full_model_dir(folder) or is_adapter_dir(folder)):
        raise CheckpointError(f"{folder}: the export wrote no weights")


FSDP_SHARDED_DIR, FSDP_FULL_FILE = "pytorch_model_fsdp_0", "pytorch_model_fsdp.bin"  # as accelerate names them


def fsdp_layout(folder: str | Path) -> str | None:
    """``"SHARDED_STATE_DICT"`` or ``"FULL_STATE_DICT"``: how an FSDP checkpoint holds its weights (None: neither)."""
    folder = Path(folder)
    if (folder / FSDP_SHARDED_DIR).is_dir():
        return "SHARDED_STATE_DICT"
    return "FULL_STATE_DICT" if (folder / FSDP_FULL_FILE).is_file() else None


@contextmanager
def reading_fsdp_layout(accelerator, folder: str | Path | None):
    """Within the block, the FSDP plugin reads the state-dict type ``folder`` was written with: a run resumes from
    sharded or full checkpoints whichever type its config now names. A no-op without FSDP."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    on_disk = fsdp_layout(folder) if plugin is not None and folder else None
    if on_disk is None or str(plugin.state_dict_type).endswith(on_disk):
        yield
        return
    previous = plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config
    plugin.state_dict_config = plugin.optim_state_dict_config = None  # rebuilt for the type read
    plugin.set_state_dict_type(on_disk)
    try:
        yield
    finally:
        plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config = previous


def _fsdp_checkpoint_keys(folder: Path) -> set[str] | None:
    """The weight names an FSDP checkpoint holds (None: it holds no FSDP weights). Read from the metadata of a
    sharded checkpoint, or the keys of a full one (memory-mapped: no tensor is read)."""
    layout = fsdp_layout(folder)
    if layout == "SHARDED_STATE_DICT":
        from torch.distributed.checkpoint import FileSystemReader

        names = FileSystemReader(str(folder / FSDP_SHARDED_DIR)).read_metadata().state_dict_metadata
        return {name.removeprefix("model.") for name in names}  # accelerate saves {"model": state_dict}
    if layout == "FULL_STATE_DICT":
        return set(torch.load(folder / FSDP_FULL_FILE, mmap=True, weights_only=True, map_location="cpu"))
    return None


def check_fsdp_checkpoint(model: torch.nn.Module, folder: str | Path) -> None:
    """Refuse, before anything is loaded, an FSDP checkpoint that would leave a trained weight of ``model`` as it
    is or holds a tensor the model has no weight for: the loaders accelerate uses for LoRA load with
    ``strict=False``, and a mismatched full model fails deep in a stack. With LoRA the adapter's name is ignored
    (PEFT saves ``lora_A.weight`` for ``lora_A.default.weight``)."""
    folder = Path(folder)
    held = _fsdp_checkpoint_keys(folder)
    if held is None:
        return
    adapter = getattr(model, "active_adapter", None)

    def name(key: str) -> str:
        return key.replace(f".{adapter}.", ".") if isinstance(adapter, str) else key

    own = {name(key) for key in model.state_dict()}
    held = {name(key) for key in held}
    missing = sorted(name(n) for n, p in model.named_parameters() if p.requires_grad and name(n) not in held)
    unexpected = sorted(held - own)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder} does not match the model being resumed ({type(model).__name__}): {len(missing)} trained "
            f"weights are not in it {missing[:3]}, {len(unexpected)} of its tensors have no weight "
            f"{unexpected[:3]}. Refusing to continue from weights that were not restored."
        )
