"""Model families: everything that differs between the vision-language architectures observe-r1 trains.

Per family, one module: its configs (the small test models and the published shapes), its image-only processor
(registered with ``AutoProcessor`` here), which children of its vision module are the tower and which the
projectors (``freeze_vision_tower`` / ``freeze_merger``), and the names of its vision linear layers (LoRA). The
rest of the package asks :func:`family_of` and never names an architecture. To add a family: a module with a
``FAMILY`` (``families.base.Family``), one line in ``FAMILIES``, and its row in the tests parametrized by family.

>>> from transformers import AutoConfig
>>> family_of(AutoConfig.for_model("qwen3_vl")).name
'qwen3-vl'
>>> family_of(AutoConfig.for_model("llava"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: unsupported architecture llava (LlavaForConditionalGeneration); observe-r1 supports qwen2.5-vl (...

"""

from __future__ import annotations

from transformers import AutoProcessor

from observe_r1.families import qwen2_5_vl, qwen3_vl
from observe_r1.families.base import SIZES, Family, TinySize

FAMILIES: dict[str, Family] = {family.name: family for family in (qwen2_5_vl.FAMILY, qwen3_vl.FAMILY)}
DEFAULT_FAMILY = "qwen2.5-vl"  # the paper's

# transformers (5.17) ignores registrations keyed by a native config class, and AutoProcessor then returns a
# bare tokenizer. Registered under keys of their own, the classes are found by the names saved in
# processor_config.json. The first key predates the families and stays so that saved models keep loading.
AutoProcessor.register("observe_r1_vl_processor", qwen2_5_vl.ObserveR1VLProcessor, exist_ok=True)
AutoProcessor.register("observe_r1_qwen3_vl_processor", qwen3_vl.ObserveR1Qwen3VLProcessor, exist_ok=True)


def supported() -> str:
    """The supported families and their architectures, for error messages."""
    return ", ".join(f"{f.name} ({f.architecture})" for f in FAMILIES.values())


def family_of(config_or_model) -> Family:
    """The family of a config, or of a model (also wrapped by PEFT or a Trainer: anything with ``.config``).
    Raises a one-line ``ValueError`` naming the supported architectures otherwise."""
    config = getattr(config_or_model, "config", config_or_model)
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if family.model_type == model_type:
            return family
    architectures = getattr(config, "architectures", None) or [_architecture(model_type)]
    raise ValueError(f"unsupported architecture {model_type} ({', '.join(map(str, architectures))}); "
                     f"observe-r1 supports {supported()}")  # fmt: skip


def _architecture(model_type: str | None) -> str:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(model_type, "unknown class")


def family_named(name: str) -> Family:
    """The family called ``name`` (``--family``)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def shapes() -> dict:
    """Every published shape observe-r1 can build, ``{"qwen3-vl-4b": (family, shape)}``."""
    return {name: (family, shape) for family in FAMILIES.values() for name, shape in family.shapes.items()}


__all__ = ["DEFAULT_FAMILY", "FAMILIES", "SIZES", "Family", "TinySize", "family_named", "family_of", "shapes",
           "supported"]  # fmt: skip
