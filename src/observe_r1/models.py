"""Models: a tiny Qwen2.5-VL built entirely locally, and the one loader used everywhere.

Hub downloads are impossible on our CI machines, so tests and the demo use a Qwen2.5-VL with the real
architecture but a few hundred thousand parameters, a byte-level BPE trained here, Qwen's chat format and
the PIL image processor. Users pass a hub id instead (``Qwen/Qwen2.5-VL-3B-Instruct``)::

    observe-r1 tiny-model --out /tmp/tiny --size tiny --seed 0
    python -c "import observe_r1; from observe_r1.models import load_policy; print(load_policy('/tmp/tiny'))"

torchvision can't be imported beside the CPU torch we pin, and the stock ``Qwen2_5_VLProcessor`` insists on a
video processor (which needs torchvision). ``ObserveR1VLProcessor`` is the image-only variant; importing
``observe_r1`` registers it with ``AutoProcessor``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from observe_r1.prompts import SYSTEM_PROMPT

# The 14 special tokens of Qwen2.5-VL, in Qwen's id order.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Tokens a policy must never generate: an image placeholder in a completion breaks the next forward pass
# ("Image features and image tokens do not match").
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen's chat layout (<|im_start|>role\n…<|im_end|>\n, images as <|vision_start|><|image_pad|><|vision_end|>),
# written for observe-r1. Accepts string content or lists of {"type": "image"} / {"type": "text"} parts.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


class ObserveR1VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor for images and text only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = "<|image_pad|>"
        self.video_token = "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


# transformers (5.17) ignores registrations keyed by a native config class, and AutoProcessor then returns a
# bare tokenizer. Registered under its own key, the class is found by the name saved in processor_config.json.
AutoProcessor.register("observe_r1_vl_processor", ObserveR1VLProcessor, exist_ok=True)


def image_token_types(input_ids: torch.Tensor, image_pad_id: int, video_pad_id: int | None = None) -> torch.Tensor:
    """``mm_token_type_ids`` read off the token ids themselves: 1 at image-pad tokens, 2 at video-pad, else 0.

    Qwen2.5-VL places image features and rope positions where these ids say; rebuilding them from the very ids
    the forward sees keeps them aligned whatever padding side, length or image size a batch has.
    """
    types = torch.zeros_like(input_ids)
    types[input_ids == image_pad_id] = 1
    if video_pad_id is not None:
        types[input_ids == video_pad_id] = 2
    return types


@dataclass(frozen=True)
class TinySize:
    """Tower sizes of a locally built Qwen2.5-VL. ``text_hidden / text_heads`` is the head dim."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vocab_size: int


SIZES = {
    # ~0.2M parameters: unit tests.
    "tiny": TinySize(64, 2, 4, 2, 32, 2, 2, vocab_size=512),
    # ~0.6M: the CPU demo (learns the synthetic task in minutes, docs/benchmarks.md#demo).
    "small": TinySize(128, 2, 4, 2, 64, 2, 4, vocab_size=768),
    # ~1.8M: slower, more capacity.
    "base": TinySize(192, 3, 6, 2, 96, 2, 4, vocab_size=768),
}


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
    shape: str, *, layers: int | None = None, vision_layers: int | None = None, token_ids: dict | None = None
) -> Qwen2_5_VLConfig:
    """A ``Qwen2_5_VLConfig`` with the published numbers of ``shape``; ``layers`` / ``vision_layers`` truncate
    the depth (for a CPU). A truncated vision tower keeps the full-attention blocks that fall inside it (the last
    block is full attention when none does). ``token_ids`` maps Qwen's special tokens to ids (default: Qwen's)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPES)}")
    spec = SHAPES[shape]
    depth = spec.vision_layers if vision_layers is None else vision_layers
    n_layers = spec.text_layers if layers is None else layers
    if not 1 <= n_layers <= spec.text_layers or not 1 <= depth <= spec.vision_layers:
        raise ValueError(f"{shape}: layers must be in 1..{spec.text_layers}, vision layers in 1..{spec.vision_layers}")
    ids = token_ids or {tok: 151_643 + i for i, tok in enumerate(QWEN_SPECIAL_TOKENS)}  # Qwen's own ids
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


def count_parameters(config: Qwen2_5_VLConfig) -> int:
    """Parameters of a model with ``config``, counted on the meta device (nothing is allocated).

    >>> round(count_parameters(shaped_config("qwen2.5-vl-3b")) / 1e9, 3)
    3.755
    """
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    return num_parameters(model)


def _tokenizer_corpus() -> list[str]:
    """Local text the BPE is trained on: prompts, tags, the synthetic task's words, digits and punctuation."""
    from observe_r1.synth import corpus_sentences  # the built-in task decides which merges are worth having

    ascii_line = "".join(chr(c) for c in range(32, 127))
    return [SYSTEM_PROMPT, ascii_line, "0 1 2 3 4 5 6 7 8 9 10 11 12", *corpus_sentences()]


def build_tokenizer(vocab_size: int = 512) -> Qwen2Tokenizer:
    """Train a byte-level BPE (Qwen2's pre-tokenizer) on local text and wrap it as a ``Qwen2Tokenizer``."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["model"]["vocab"],
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=QWEN_SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_image_processor(min_pixels: int = 56 * 56, max_pixels: int = 224 * 224) -> Qwen2VLImageProcessorPil:
    """Qwen2-VL's PIL image processor: 14-px patches, 2×2 merge, so a 112×112 image is 16 image tokens."""
    return Qwen2VLImageProcessorPil(
        patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=min_pixels, max_pixels=max_pixels
    )


def build_tiny_model(
    out_dir: str | Path,
    size: str = "tiny",
    seed: int = 0,
    *,
    layers: int | None = None,
    vision_layers: int | None = None,
) -> Path:
    """Write a randomly initialised Qwen2.5-VL with processor and generation config to ``out_dir``.

    ``size``: a small model (``tiny``, ``small``, ``base``) or a shape-true one (``qwen2.5-vl-3b``,
    ``qwen2.5-vl-7b``: the published architecture, ``layers`` / ``vision_layers`` truncate its depth).
    Deterministic for a ``seed``. The result loads with ``AutoProcessor`` / ``AutoModelForImageTextToText``
    (after ``import observe_r1``) or :func:`load_policy`.
    """
    model, processor = build_policy(size, seed=seed, layers=layers, vision_layers=vision_layers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_policy(
    size: str = "tiny",
    *,
    seed: int = 0,
    layers: int | None = None,
    vision_layers: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
):
    """``(model, processor)`` of :func:`build_tiny_model`, in memory (``device``: where weights are created)."""
    if size not in SIZES and size not in SHAPES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES) + sorted(SHAPES)}")
    tokenizer = build_tokenizer(SIZES[size].vocab_size if size in SIZES else 512)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    if size in SHAPES:
        config = shaped_config(size, layers=layers, vision_layers=vision_layers, token_ids=ids)
        image_processor = build_image_processor(QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
    else:
        if layers is not None or vision_layers is not None:
            raise ValueError("--layers / --vision-layers apply to the shape-true sizes (qwen2.5-vl-3b, -7b)")
        config = _tiny_config(SIZES[size], len(tokenizer), ids)
        image_processor = build_image_processor()
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        suppress_tokens=[ids[t] for t in VISION_TOKENS],
    )
    return model, ObserveR1VLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def _tiny_config(spec: TinySize, vocab_size: int, ids: dict) -> Qwen2_5_VLConfig:
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


def load_processor(model_id_or_path: str | Path, *, trust_remote_code: bool = False, **kwargs):
    """``AutoProcessor.from_pretrained`` that refuses to silently fall back to a bare tokenizer for a VLM."""
    processor = AutoProcessor.from_pretrained(str(model_id_or_path), trust_remote_code=trust_remote_code, **kwargs)
    if getattr(processor, "image_processor", None) is None:
        raise RuntimeError(
            f"AutoProcessor returned {type(processor).__name__} without an image processor for {model_id_or_path}: "
            "the model would be trained as text-only. Import observe_r1 before loading (it registers the "
            "image-only Qwen2.5-VL processor), and check the transformers version pinned in pyproject.toml."
        )
    return processor


def _check_exists(model_id_or_path: str | Path) -> None:
    path = Path(model_id_or_path)
    looks_local = path.is_absolute() or str(model_id_or_path).startswith((".", "~")) or path.exists()
    if looks_local and not (path.expanduser() / "config.json").is_file():
        raise FileNotFoundError(
            f"model path {path} does not exist or has no config.json; "
            "build a local model with `observe-r1 tiny-model --out DIR` or pass a hub id like "
            "Qwen/Qwen2.5-VL-3B-Instruct"
        )


def load_policy(
    model_id_or_path: str | Path,
    *,
    dtype: torch.dtype | str = "auto",
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
    **model_kwargs,
):
    """Load ``(model, processor)`` from a hub id or a local directory through the auto classes.

    A LoRA adapter folder (``final/`` of a ``--use_peft`` run) loads on its base model with the adapter merged in
    (``observe_r1.lora.load_adapter_policy``)."""
    from observe_r1.lora import is_adapter_dir, load_adapter_policy

    if is_adapter_dir(model_id_or_path):
        return load_adapter_policy(model_id_or_path, dtype=dtype, trust_remote_code=trust_remote_code, device=device,
                                   **model_kwargs)  # fmt: skip
    _check_exists(model_id_or_path)
    processor = load_processor(model_id_or_path, trust_remote_code=trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(
        str(model_id_or_path), dtype=dtype, trust_remote_code=trust_remote_code, **model_kwargs
    )
    if device is not None:
        model.to(device)
    return model, processor


def num_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
