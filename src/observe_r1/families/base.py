"""What a model family is: the few things observe-r1 needs to know about an architecture (families/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TinySize:
    """Tower sizes of a small, locally built model. ``text_hidden / text_heads`` is the head dim."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vocab_size: int


# The test and demo models, the same numbers for every family (a family's vision tower may add parts of its own).
SIZES = {
    # ~0.2M parameters: unit tests.
    "tiny": TinySize(64, 2, 4, 2, 32, 2, 2, vocab_size=512),
    # ~0.6M: the CPU demo (learns the synthetic task in minutes, docs/benchmarks.md#demo).
    "small": TinySize(128, 2, 4, 2, 64, 2, 4, vocab_size=768),
    # ~1.8M: slower, more capacity.
    "base": TinySize(192, 3, 6, 2, 96, 2, 4, vocab_size=768),
}


@dataclass(frozen=True)
class Family:
    """One vision-language architecture, as observe-r1 builds, loads, freezes and adapts it.

    ``tiny_config(spec, vocab_size, token_ids)`` and ``shaped_config(shape, layers=, vision_layers=, token_ids=)``
    build configs (``token_ids`` maps Qwen's special tokens to ids); ``image_processor(min_pixels, max_pixels)``
    builds the image processor. ``projectors`` are the children of the ``visual`` module that map vision features
    into the language model (``freeze_merger``); the other children are the tower (``freeze_vision_tower``).
    ``vision_linear`` are the linear layer names inside ``visual`` (``lora_target_modules: [visual.NAME]``).
    """

    name: str  # the CLI's name: --family, and the prefix of the shape names
    model_type: str  # config.model_type
    model_class: type
    processor_class: type  # image-only: the stock processors need torchvision for their video processor
    shapes: Mapping[str, Any]  # published architectures: {"qwen3-vl-4b": shape}
    tiny_config: Callable[..., Any]
    shaped_config: Callable[..., Any]
    image_processor: Callable[[int, int], Any]
    image_processor_class: type  # the PIL one (no torchvision), which reads a published preprocessor_config.json
    pixel_unit: int  # patch size × merge size: processed image sides are multiples of it
    published_pixels: tuple[int, int]  # (min, max) of the published processor
    tiny_pixels: tuple[int, int]  # (min, max) of the locally built small models
    projectors: tuple[str, ...]
    vision_linear: tuple[str, ...]

    @property
    def architecture(self) -> str:
        return self.model_class.__name__
