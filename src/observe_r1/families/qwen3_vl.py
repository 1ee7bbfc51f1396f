"""Qwen3-VL (2B / 4B / 8B dense): configs, the image-only processor, vision parameter groups.

Vision tower: ``patch_embed``, ``pos_embed`` (a learned square grid, resampled to each image), ``rotary_pos_emb``,
``blocks`` (MLP ``linear_fc1`` / ``linear_fc2``); projectors: ``merger`` and ``deepstack_merger_list``. The
deepstack mergers take the outputs of the blocks named by ``deepstack_visual_indexes`` and add them to the hidden
states of the first language-model layers (merger k feeds layer k) at the image positions: like ``merger`` they
map vision features into the language model, so ``freeze_merger`` freezes them and ``freeze_vision_tower`` does
not (docs/lora.md). Images in 16-px patches merged 2×2 (32-px units), pixel mean/std 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

from observe_r1.families.base import Family, TinySize


class ObserveR1Qwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor for images and text only (the stock one requires a video processor, hence torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.vision_start_token, self.vision_end_token = "<|vision_start|>", "<|vision_end|>"
        for name in ("image_token", "video_token", "vision_start_token", "vision_end_token"):
            setattr(self, f"{name}_id", tokenizer.convert_tokens_to_ids(getattr(self, name)))
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


@dataclass(frozen=True)
class Qwen3Shape:
    """The published architecture numbers of a Qwen3-VL-Instruct checkpoint (its ``config.json``)."""

    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    tie_word_embeddings: bool
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    deepstack_visual_indexes: tuple[int, ...]
    text_kv_heads: int = 8
    head_dim: int = 128
    vocab_size: int = 151_936
    vision_heads: int = 16


SHAPES = {
    "qwen3-vl-2b": Qwen3Shape(2048, 6144, 28, 16, True, 1024, 4096, 24, (5, 11, 17)),
    "qwen3-vl-4b": Qwen3Shape(2560, 9728, 36, 32, True, 1024, 4096, 24, (5, 11, 17)),
    "qwen3-vl-8b": Qwen3Shape(4096, 12288, 36, 32, False, 1152, 4304, 27, (8, 16, 24)),
}
# The published processor: 16-px patches merged 2×2, between 65,536 (256²) and 16,777,216 (4096²) pixels.
QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS = 65_536, 16_777_216


def deepstack_indexes(published: tuple[int, ...], depth: int, layers: int) -> list[int]:
    """The deepstack blocks of a tower truncated to ``depth`` blocks under ``layers`` language-model layers: those
    inside the tower (the last block when none is), and fewer than ``layers`` of them. Merger k adds its features
    to the output of language-model layer k, so one feeding the last layer's output reaches only the image
    positions' own logits: never the completion's loss, never a gradient (and an unused parameter under DDP).

    >>> deepstack_indexes((5, 11, 17), 24, 28), deepstack_indexes((5, 11, 17), 12, 28)
    ([5, 11, 17], [5, 11])
    >>> deepstack_indexes((5, 11, 17), 3, 28), deepstack_indexes((5, 11, 17), 24, 2), deepstack_indexes((5,), 24, 1)
    ([2], [5], [])
    """
    return ([i for i in published if i < depth] or [depth - 1])[: layers - 1]


def _text_config(ids: dict, **sizes) -> dict:
    return dict(
        **sizes, hidden_act="silu", rms_norm_eps=1e-6, attention_bias=False,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )  # fmt: skip


def _config(text: dict, vision: dict, ids: dict, tie: bool) -> Qwen3VLConfig:
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=tie,
    )  # fmt: skip


def shaped_config(
    shape: str, *, layers: int | None = None, vision_layers: int | None = None, token_ids: dict
) -> Qwen3VLConfig:
    """A ``Qwen3VLConfig`` with the published numbers of ``shape``; ``layers`` / ``vision_layers`` truncate the
    depth (for a CPU), keeping the deepstack indexes valid (:func:`deepstack_indexes`)."""
    spec = SHAPES[shape]
    depth = spec.vision_layers if vision_layers is None else vision_layers
    n_layers = spec.text_layers if layers is None else layers
    if not 1 <= n_layers <= spec.text_layers or not 1 <= depth <= spec.vision_layers:
        raise ValueError(f"{shape}: layers must be in 1..{spec.text_layers}, vision layers in 1..{spec.vision_layers}")
    text = _text_config(
        token_ids, vocab_size=spec.vocab_size, hidden_size=spec.text_hidden, intermediate_size=spec.text_intermediate,
        num_hidden_layers=n_layers, num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
        head_dim=spec.head_dim, max_position_embeddings=262_144, tie_word_embeddings=spec.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                         "mrope_interleaved": True},
    )  # fmt: skip
    vision = dict(
        depth=depth, hidden_size=spec.vision_hidden, intermediate_size=spec.vision_intermediate,
        num_heads=spec.vision_heads, out_hidden_size=spec.text_hidden, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh",
        deepstack_visual_indexes=deepstack_indexes(spec.deepstack_visual_indexes, depth, n_layers),
    )  # fmt: skip
    return _config(text, vision, token_ids, spec.tie_word_embeddings)


def tiny_config(spec: TinySize, vocab_size: int, token_ids: dict) -> Qwen3VLConfig:
    """A small ``Qwen3VLConfig`` of ``spec`` (``families.base.SIZES``): deepstack mergers on the first vision
    blocks, one per language-model layer but the last (the tiny size: one, on block 0)."""
    head_dim = spec.text_hidden // spec.text_heads
    # interleaved M-RoPE over the head_dim/2 rotary frequencies, split as the published [24, 20, 20] of 64
    half = head_dim // 2
    mrope_section = [half - 2 * (5 * half // 16), 5 * half // 16, 5 * half // 16]
    text = _text_config(
        token_ids, vocab_size=vocab_size, hidden_size=spec.text_hidden, intermediate_size=spec.text_hidden * 2,
        num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads, head_dim=head_dim, max_position_embeddings=4096,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
    )  # fmt: skip
    vision = dict(
        depth=spec.vision_layers, hidden_size=spec.vision_hidden, intermediate_size=spec.vision_hidden * 2,
        num_heads=spec.vision_heads, out_hidden_size=spec.text_hidden, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, num_position_embeddings=64,  # a perfect square (an 8 × 8 grid, resampled)
        deepstack_visual_indexes=deepstack_indexes(tuple(range(spec.vision_layers)), spec.vision_layers,
                                                   spec.text_layers),
    )  # fmt: skip
    return _config(text, vision, token_ids, tie=False)


def build_image_processor(min_pixels: int = 64 * 64, max_pixels: int = 256 * 256) -> Qwen2VLImageProcessorPil:
    """Qwen2-VL's PIL image processor at Qwen3-VL's settings: 16-px patches, 2×2 merge, mean/std 0.5, so a
    128×128 image is 16 image tokens."""
    return Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=min_pixels, max_pixels=max_pixels,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )  # fmt: skip


FAMILY = Family(
    name="qwen3-vl",
    model_type="qwen3_vl",
    model_class=Qwen3VLForConditionalGeneration,
    processor_class=ObserveR1Qwen3VLProcessor,
    shapes=SHAPES,
    tiny_config=tiny_config,
    shaped_config=shaped_config,
    image_processor=build_image_processor,
    image_processor_class=Qwen2VLImageProcessorPil,
    pixel_unit=32,
    published_pixels=(QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS),
    tiny_pixels=(64 * 64, 256 * 256),
    projectors=("merger", "deepstack_merger_list"),
    vision_linear=("qkv", "proj", "linear_fc1", "linear_fc2"),
)
