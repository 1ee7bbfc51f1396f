"""What trains: a frozen vision tower or projector, LoRA adapters, and adapter folders (docs/lora.md).

    observe-r1 train --config recipes/tiny_cpu.yaml --freeze-vision-tower true
    observe-r1 train --config recipes/tiny_cpu.yaml --use-peft true --lora-r 8 --merge true
    observe-r1 merge runs/tiny-cpu/final --out runs/tiny-cpu/merged

``ObserveR1Trainer`` builds the LoRA config from ``ObserveR1Config`` (:func:`lora_config`, handed to TRL as its
``peft_config``) and freezes the parts named in the config (:func:`freeze_parts`) once TRL has wrapped the model.
An adapter folder (``final/`` or a ``checkpoint-*`` of a LoRA run) loads anywhere a model path is accepted:
:func:`observe_r1.models.load_policy` reads its base model from ``adapter_config.json`` and merges the adapter in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from observe_r1.families import family_of, supported

# The language model's linear layers in every supported family: attention and MLP projections.
LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_PREFIX = "visual."
ADAPTER_CONFIG = "adapter_config.json"


def target_modules_pattern(names: list[str] | tuple[str, ...] | None = None) -> str:
    """PEFT's ``target_modules`` as one regular expression over module names (PEFT full-matches a string).

    A plain name is a module-name suffix inside the language model; ``visual.NAME`` is one inside the vision
    tower. Qwen2.5-VL's vision MLP has ``gate_proj``/``up_proj``/``down_proj`` too, which PEFT's list form would
    adapt as well: the pattern keeps the vision tower out unless it is named (Qwen3-VL's vision layers have names
    of their own, ``linear_fc1/2``; the rule is the same for every family).

    >>> p = target_modules_pattern(["q_proj", "gate_proj", "visual.qkv"])
    >>> [bool(re.fullmatch(p, n)) for n in ("model.language_model.layers.0.mlp.gate_proj",
    ...     "model.visual.blocks.0.mlp.gate_proj", "model.visual.blocks.3.attn.qkv", "lm_head")]
    [True, False, True, False]
    """
    names = list(names or LANGUAGE_LINEAR)
    parts = []
    for name in names:
        if name.startswith(VISION_PREFIX):
            parts.append(rf"(?:.*\.)?visual\.(?:.*\.)?{re.escape(name.removeprefix(VISION_PREFIX))}")
        else:
            parts.append(rf"(?:.*\.)?language_model\.(?:.*\.)?{re.escape(name)}")
    return "|".join(f"(?:{p})" for p in parts)


def lora_config(args, model: torch.nn.Module | None = None):
    """The ``peft.LoraConfig`` of an ``ObserveR1Config`` with ``use_peft``; with ``model``, its targets checked
    against the model first (:func:`check_targets`)."""
    from peft import LoraConfig

    if isinstance(model, torch.nn.Module):
        check_targets(model, args.lora_target_modules)
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=target_modules_pattern(args.lora_target_modules),
        bias="none",
    )


def vision_parts(model: torch.nn.Module) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """``(tower, projectors)`` of a supported model (also wrapped by PEFT): the projectors are the children of its
    ``visual`` module that map vision features into the language model (the family's ``projectors``: Qwen2.5-VL's
    ``merger``; Qwen3-VL's ``merger`` and deepstack mergers), the tower every other child (patch embedding,
    position tables, blocks)."""
    family = family_of(model)
    for name, module in model.named_modules():
        if name == "visual" or name.endswith(".visual"):
            children = dict(module.named_children())
            tower = [child for child_name, child in children.items() if child_name not in family.projectors]
            return tower, [children[name] for name in family.projectors if name in children]
    raise ValueError(f"{type(model).__name__} has no `visual` module: freeze_vision_tower / freeze_merger apply to "
                     f"the vision-language families ({supported()})")  # fmt: skip


def check_targets(model: torch.nn.Module, names: list[str] | tuple[str, ...] | None) -> None:
    """Refuse a LoRA target that names no module of ``model``: PEFT only complains when no target matches at all,
    so a vision name of another family (``visual.gate_proj`` on Qwen3-VL, whose vision MLP is ``linear_fc1/2``)
    would silently adapt nothing."""
    pattern_of = {name: target_modules_pattern([name]) for name in names or LANGUAGE_LINEAR}
    module_names = [name for name, _ in model.named_modules()]
    unmatched = [name for name, p in pattern_of.items() if not any(re.fullmatch(p, m) for m in module_names)]
    if unmatched:
        family = family_of(model)
        raise ValueError(f"lora_target_modules {unmatched} match no module of this {family.name} model; its vision "
                         f"linear layers are {['visual.' + n for n in family.vision_linear]}, its language model's "
                         f"{list(LANGUAGE_LINEAR)}")  # fmt: skip


def freeze_parts(model: torch.nn.Module, *, vision_tower: bool = False, merger: bool = False) -> int:
    """Stop gradients for the vision tower and/or the projector; returns how many parameters were frozen.

    Refuses to freeze a LoRA adapter placed there on purpose (``lora_target_modules`` naming ``visual.…``)."""
    tower, projectors = vision_parts(model)
    modules = (tower if vision_tower else []) + (projectors if merger else [])
    frozen = 0
    for module in modules:
        for name, param in module.named_parameters():
            if "lora_" in name and param.requires_grad:
                raise ValueError(f"lora_target_modules put an adapter ({name}) in a part the config freezes; "
                                 "drop freeze_vision_tower / freeze_merger or that target")  # fmt: skip
            if param.requires_grad:
                param.requires_grad_(False)
                frozen += param.numel()
    return frozen


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def trainable_line(model: torch.nn.Module) -> str:
    """One line for the training log: how much of the model trains."""
    trainable, total = parameter_counts(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f} %)"


def is_adapter_dir(path: str | Path) -> bool:
    """A folder holding a PEFT adapter (``adapter_config.json``) rather than a whole model."""
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path`` in adapter_config.json)."""
    config = json.loads((Path(path).expanduser() / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}/{ADAPTER_CONFIG} names no base_model_name_or_path; set it to the base model")
    return base


def record_base(adapter_dir: str | Path) -> None:
    """Write the base model of a saved adapter as an absolute path when it is a local folder, so the adapter
    loads from any working directory."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    base = Path(config.get("base_model_name_or_path") or "").expanduser()
    if str(base) and base.is_dir():
        config["base_model_name_or_path"] = str(base.resolve())
        path.write_text(json.dumps(config, indent=2, sort_keys=True))


def load_adapter_policy(adapter_dir: str | Path, **load_kwargs):
    """``(model, processor)``: the adapter merged into its base model. The processor saved beside the adapter
    (``final/`` has one) wins over the base model's."""
    from peft import PeftModel

    from observe_r1.models import load_policy, load_processor

    adapter_dir = Path(adapter_dir).expanduser()
    device = load_kwargs.pop("device", None)
    model, processor = load_policy(adapter_base(adapter_dir), **load_kwargs)
    if any((adapter_dir / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        processor = load_processor(adapter_dir, trust_remote_code=load_kwargs.get("trust_remote_code", False))
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    if device is not None:
        model.to(device)
    return model, processor


def merge_adapter(adapter_dir: str | Path, out: str | Path) -> Path:
    """Write the adapter merged into its base model (model, processor, generation config) to ``out``: a whole
    model that vLLM and any other tool load without PEFT."""
    if not is_adapter_dir(adapter_dir):
        raise FileNotFoundError(f"{adapter_dir} holds no {ADAPTER_CONFIG}: not an adapter folder")
    model, processor = load_adapter_policy(adapter_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
