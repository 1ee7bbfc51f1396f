"""Qwen2.5-VL (the paper's family): configs, the image-only processor, vision parameter groups.

Vision tower: ``patch_embed``, ``rotary_pos_emb``, 32 ``blocks`` (window attention but for the full-attention
blocks); projector: ``merger`` (an MLP ``mlp.0`` / ``mlp.2``). Images in 14-px patches merged 2×2 (28-px units).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from observe_r1.families.base import Family, TinySize


class ObserveR1VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor for images and text only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = "<|image_pad|>"
        self.video_token = "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


@dataclass(frozen=True)
class QwenShape:
    """The published architecture numbers of a Qwen2.5-VL-Instruct checkpoint (its ``config.json``)."""

    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    vision_hidden: int = 1280
    vision_intermediate: int = 3420
    vision_layers: int = 32
    vision_heads: int = 16
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)  # the other blocks attend inside 112-px windows


SHAPES = {
    "qwen2.5-vl-3b": QwenShape(2048, 11008, 36, 16, 2, vocab_size=151_936, tie_word_embeddings=True),
    "qwen2.5-vl-7b": QwenShape(3584, 18944, 28, 28, 4, vocab_size=152_064, tie_word_embeddings=False),
}
# Qwen2.5-VL's processor: 14-px patches merged 2×2, between 3,136 and 12,845,056 pixels by default.
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 3136, 12_845_056


def shaped_config(
    shape: str, *, layers: int | None = None, vision_layers: int | None = None, token_ids: dict
) -> Qwen2_5_VLConfig:
    """A ``Qwen2_5_VLConfig`` with the published numbers of ``shape``; ``layers`` / ``vision_layers`` truncate
    the depth (for a CPU). A truncated vision tower keeps the full-attention blocks that fall inside it (the last
    block is full attention when none does)."""
    spec = SHAPES[shape]
    depth = spec.vision_layers if vision_layers is None else vision_layers
    n_layers = spec.text_layers if layers is None else layers
    if not 1 <= n_layers <= spec.text_layers or not 1 <= depth <= spec.vision_layers:
        raise ValueError(f"{shape}: layers must be in 1..{spec.text_layers}, vision layers in 1..{spec.vision_layers}")
    ids = token_ids
    fullatt = [i for i in spec.fullatt_block_indexes if i < depth] or [depth - 1]
    text = dict(
        vocab_size=spec.vocab_size, hidden_size=spec.text_hidden, intermediate_size=spec.text_intermediate,
        num_hidden_layers=n_layers, num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=128_000, rms_norm_eps=1e-6, tie_word_embeddings=spec.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )  # fmt: skip
    vision = dict(
        depth=depth, hidden_size=spec.vision_hidden, intermediate_size=spec.vision_intermediate,
        num_heads=spec.vision_heads, out_hidden_size=spec.text_hidden, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, window_size=112, fullatt_block_indexes=fullatt, hidden_act="silu",
    )  # fmt: skip
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=spec.tie_word_embeddings,
    )  # fmt: skip


def tiny_config(spec: TinySize, vocab_size: int, token_ids: dict) -> Qwen2_5_VLConfig:
    """A small ``Qwen2_5_VLConfig`` of ``spec`` (``families.base.SIZES``)."""
    ids = token_ids
    head_dim = spec.text_hidden // spec.text_heads
    # mrope splits the head_dim/2 rotary frequencies over (time, height, width) as Qwen does: 1/4, 3/8, 3/8.
    half = head_dim // 2
    mrope_section = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=spec.text_hidden,
            intermediate_size=spec.text_hidden * 2,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            num_key_value_heads=spec.text_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            tie_word_embeddings=False,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=spec.vision_layers,
            hidden_size=spec.vision_hidden,
            intermediate_size=spec.vision_hidden * 2,
            num_heads=spec.vision_heads,
            out_hidden_size=spec.text_hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[spec.vision_layers - 1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_image_processor(min_pixels: int = 56 * 56, max_pixels: int = 224 * 224) -> Qwen2VLImageProcessorPil:
    """Qwen2-VL's PIL image processor: 14-px patches, 2×2 merge, so a 112×112 image is 16 image tokens."""
    return Qwen2VLImageProcessorPil(
        patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=min_pixels, max_pixels=max_pixels
    )


FAMILY = Family(
    name="qwen2.5-vl",
    model_type="qwen2_5_vl",
    model_class=Qwen2_5_VLForConditionalGeneration,
    processor_class=ObserveR1VLProcessor,
    shapes=SHAPES,
    tiny_config=tiny_config,
    shaped_config=shaped_config,
    image_processor=build_image_processor,
    image_processor_class=Qwen2VLImageProcessorPil,
    pixel_unit=28,
    published_pixels=(QWEN_MIN_PIXELS, QWEN_MAX_PIXELS),
    tiny_pixels=(56 * 56, 224 * 224),
    projectors=("merger",),
    vision_linear=("qkv", "proj", "gate_proj", "up_proj", "down_proj", "mlp.0", "mlp.2"),
)
