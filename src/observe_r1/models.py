"""Models: small vision-language models built entirely locally, and the one loader used everywhere.

Hub downloads are impossible on our CI machines, so tests and the demo use models with a real architecture
(Qwen2.5-VL by default, or Qwen3-VL) but a few hundred thousand parameters, a byte-level BPE trained here, Qwen's
chat format and the PIL image processor. Users pass a hub id instead (``Qwen/Qwen2.5-VL-3B-Instruct``,
``Qwen/Qwen3-VL-4B-Instruct``)::

    observe-r1 tiny-model --out /tmp/tiny --size tiny --seed 0 [--family qwen3-vl]
    python -c "import observe_r1; from observe_r1.models import load_policy; print(load_policy('/tmp/tiny'))"

What differs between the families (configs, published shapes, processors, vision parameter groups) lives in
``observe_r1.families``; this module only asks it. torchvision can't be imported beside the CPU torch we pin, and
the stock processors insist on a video processor (which needs torchvision): each family has an image-only one,
which importing ``observe_r1`` registers with ``AutoProcessor``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, GenerationConfig, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from observe_r1.families import DEFAULT_FAMILY, SIZES, Family, family_named, family_of, shapes
from observe_r1.families.qwen2_5_vl import ObserveR1VLProcessor  # noqa: F401  (its historical home: callers)
from observe_r1.prompts import SYSTEM_PROMPT

# The 14 special tokens of Qwen2.5-VL and Qwen3-VL, in Qwen's id order (Qwen3 adds more after them).
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


# Every published architecture observe-r1 builds, by name (each family's ``shapes``).
SHAPES = {name: shape for name, (_, shape) in shapes().items()}


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


def shaped_config(
    shape: str, *, layers: int | None = None, vision_layers: int | None = None, token_ids: dict | None = None
):
    """The config of a published architecture (``qwen2.5-vl-3b``, ``qwen3-vl-4b``, …: ``SHAPES``) from its family;
    ``layers`` / ``vision_layers`` truncate the depth (for a CPU). ``token_ids`` maps Qwen's special tokens to ids
    (default: Qwen's own)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPES)}")
    ids = token_ids or {tok: 151_643 + i for i, tok in enumerate(QWEN_SPECIAL_TOKENS)}  # Qwen's own ids
    family, _ = shapes()[shape]
    return family.shaped_config(shape, layers=layers, vision_layers=vision_layers, token_ids=ids)


def count_parameters(config) -> int:
    """Parameters of a model with ``config``, counted on the meta device (nothing is allocated).

    >>> round(count_parameters(shaped_config("qwen2.5-vl-3b")) / 1e9, 3)
    3.755
    """
    with torch.device("meta"):
        model = family_of(config).model_class(config)
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


def build_tiny_model(
    out_dir: str | Path,
    size: str = "tiny",
    seed: int = 0,
    *,
    family: str | None = None,
    layers: int | None = None,
    vision_layers: int | None = None,
) -> Path:
    """Write a randomly initialised model with processor and generation config to ``out_dir``.

    ``size``: a small model (``tiny``, ``small``, ``base``) of ``family`` (default Qwen2.5-VL; ``qwen3-vl``) or a
    shape-true one (``SHAPES``: ``qwen2.5-vl-3b``, ``qwen3-vl-4b``, …: the published architecture, its family
    implied; ``layers`` / ``vision_layers`` truncate its depth). Deterministic for a ``seed``. The result loads
    with ``AutoProcessor`` / ``AutoModelForImageTextToText`` (after ``import observe_r1``) or :func:`load_policy`.
    """
    model, processor = build_policy(size, family=family, seed=seed, layers=layers, vision_layers=vision_layers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def resolve_size(size: str, family: str | None = None) -> Family:
    """The family a ``size`` is built in: a published shape's own, else ``family`` (default Qwen2.5-VL)."""
    if size in SHAPES:
        owner = shapes()[size][0]
        if family is not None and family != owner.name:
            raise ValueError(f"--size {size} is a {owner.name} shape; drop --family {family} or pick one of "
                             f"{sorted(family_named(family).shapes)}")  # fmt: skip
        return owner
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES) + sorted(SHAPES)}")
    return family_named(family or DEFAULT_FAMILY)


def build_policy(
    size: str = "tiny",
    *,
    family: str | None = None,
    seed: int = 0,
    layers: int | None = None,
    vision_layers: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
):
    """``(model, processor)`` of :func:`build_tiny_model`, in memory (``device``: where weights are created)."""
    chosen = resolve_size(size, family)
    tokenizer = build_tokenizer(SIZES[size].vocab_size if size in SIZES else 512)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    if size in SHAPES:
        config = chosen.shaped_config(size, layers=layers, vision_layers=vision_layers, token_ids=ids)
        image_processor = chosen.image_processor(*chosen.published_pixels)
    else:
        if layers is not None or vision_layers is not None:
            raise ValueError(f"--layers / --vision-layers apply to the shape-true sizes ({', '.join(sorted(SHAPES))})")
        config = chosen.tiny_config(SIZES[size], len(tokenizer), ids)
        image_processor = chosen.image_processor(*chosen.tiny_pixels)
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        model = chosen.model_class(config).to(dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        suppress_tokens=[ids[t] for t in VISION_TOKENS],
    )
    return model, chosen.processor_class(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def load_processor(model_id_or_path: str | Path, *, trust_remote_code: bool = False, **kwargs):
    """``AutoProcessor.from_pretrained`` that refuses to silently fall back to a bare tokenizer for a VLM.

    A published checkpoint names the stock processor, which needs torchvision (for its video processor and its
    fast image processor): without torchvision, the family's image-only processor is built from the same files."""
    try:
        processor = AutoProcessor.from_pretrained(str(model_id_or_path), trust_remote_code=trust_remote_code, **kwargs)
    except (ImportError, ValueError) as error:
        if "torchvision" not in str(error).lower():
            raise
        processor = _image_only_processor(model_id_or_path, trust_remote_code=trust_remote_code, **kwargs)
    if getattr(processor, "image_processor", None) is None:
        raise RuntimeError(
            f"AutoProcessor returned {type(processor).__name__} without an image processor for {model_id_or_path}: "
            "the model would be trained as text-only. Import observe_r1 before loading (it registers the "
            "image-only processors), and check the transformers version pinned in pyproject.toml."
        )
    return processor


def _image_only_processor(model_id_or_path: str | Path, **kwargs):
    """The family's image-only processor from a checkpoint's preprocessor settings, tokenizer and chat template."""
    from transformers import AutoTokenizer
    from transformers.utils import cached_file

    path = str(model_id_or_path)
    family = family_of(AutoConfig.from_pretrained(path, **kwargs))
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    template = tokenizer.chat_template
    for name in ("chat_template.jinja", "chat_template.json"):  # where processors keep theirs
        found = None if template else cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        if found:
            text = Path(found).read_text()
            template = json.loads(text)["chat_template"] if name.endswith(".json") else text
    return family.processor_class(family.image_processor_class.from_pretrained(path), tokenizer,
                                  chat_template=template)  # fmt: skip


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
    family_of(AutoConfig.from_pretrained(str(model_id_or_path), trust_remote_code=trust_remote_code))  # supported?
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
