"""Padding-free loss-side forwards for M-RoPE vision-language models (``--padding_free``, docs/padding_free.md).

A micro-batch's unpadded sequences go into one row with ``position_ids`` of shape (4, 1, N): row 0 is each
sequence's text position (0, 1, 2, … restarting at every sequence), rows 1–3 its M-RoPE positions (temporal,
height, width) from the model's own rope index, computed on the padded batch with the pad columns dropped. With no
attention mask and no cache, transformers reads the sequence boundaries off row 0 and builds a block-diagonal
causal mask (sdpa, eager) or varlen boundaries (flash-attention 2), so every token sees exactly what it sees in the
padded batch. :func:`packed_logps_and_entropies` returns TRL's padded ``(B, logits_to_keep)`` layout.

Wrong variants run and give plausible, wrong numbers (docs/padding_free.md lists them), so every packed forward
passes :func:`check_packed_inputs` first.

With sdpa, transformers would build an N × N boolean mask for the packed row and sdpa would take its slow masked
path (on a CPU, 8 sequences of 1,100 tokens: 6.8 s per attention call vs 0.2 s). A language model on sdpa is
switched to :func:`per_sequence_sdpa` instead: sdpa on each sequence alone (causal, no mask built), and plain sdpa
for every other forward (padded batches, generation). flash_attention_2 needs nothing: it reads the same positions as
varlen boundaries.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from accelerate.utils import extract_model_from_parallel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from observe_r1.config import ConfigError

PER_SEQUENCE_SDPA = "observe_r1_per_sequence_sdpa"


def per_sequence_sdpa(module, query, key, value, attention_mask, position_ids=None, **kwargs):
    """transformers' sdpa, run on each sequence of a packed row alone: a new sequence starts wherever the text
    position (``position_ids``, (1, N)) does not grow by 1. Attention then costs the sum of the squared sequence
    lengths, not N², and takes sdpa's causal kernel. Any call that is not a packed row is plain sdpa."""
    n = query.shape[2]
    if attention_mask is not None or position_ids is None or query.shape[0] != 1 or n != key.shape[2] or n == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    starts = (position_ids[0, 1:] - position_ids[0, :-1] != 1).nonzero().flatten().add(1).tolist()
    bounds = [0, *starts, n]
    parts = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, **kwargs)[0]
             for a, b in zip(bounds, bounds[1:], strict=False)]  # fmt: skip
    return torch.cat(parts, dim=1), None


def _mask_unless_one_row(batch_size, attention_mask=None, **kwargs):
    """sdpa's mask, except for a single row without padding (a packed row): per_sequence_sdpa needs none."""
    if batch_size == 1 and attention_mask is None:
        return None
    return sdpa_mask(batch_size=batch_size, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(PER_SEQUENCE_SDPA, per_sequence_sdpa)
AttentionMaskInterface.register(PER_SEQUENCE_SDPA, _mask_unless_one_row)


def base_model(model):
    """The model inside accelerate (DDP, FSDP, DeepSpeed, compile) and PEFT wrappers."""
    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return inner.get_base_model() if callable(getattr(inner, "get_base_model", None)) else inner


def attend_per_sequence(model) -> None:
    """Switch a language model on sdpa to :func:`per_sequence_sdpa` (the vision tower keeps its own attention)."""
    text_config = base_model(model).config.get_text_config()
    if text_config._attn_implementation == "sdpa":
        text_config._attn_implementation = PER_SEQUENCE_SDPA


def rope_index(model):
    """The model's ``get_rope_index(input_ids, mm_token_type_ids=, image_grid_thw=, attention_mask=)`` (returns
    ``(positions (3, B, L), deltas)``), found through accelerate (DDP, FSDP, DeepSpeed, compile) and PEFT wrappers."""
    inner = base_model(model)
    for holder in (inner, getattr(inner, "model", None)):  # *ForConditionalGeneration keeps it on .model
        if callable(getattr(holder, "get_rope_index", None)):
            return holder.get_rope_index
    raise ConfigError(f"padding_free needs the model's M-RoPE index (get_rope_index); {type(inner).__name__} has "
                      "none: use a Qwen2.5-VL / Qwen3-VL model or set --padding_free false")  # fmt: skip


def pack(input_ids, attention_mask, logits_to_keep: int, rope_positions=None, mm_token_type_ids=None) -> dict:
    """One row holding the unpadded sequences of a padded batch, as the fused LM head takes them.

    Args: ``input_ids``, ``attention_mask``, ``mm_token_type_ids`` of shape (B, L); ``rope_positions`` (3, B, L)
    from the rope index (None: a text-only batch, all three rows are the text positions); the last
    ``logits_to_keep`` columns are the completion. Returns ``input_ids`` (1, N), ``position_ids`` (4, 1, N),
    ``labels`` (1, N: the completion tokens, -100 elsewhere) and ``mm_token_type_ids`` (1, N) when given.
    """
    keep = attention_mask.bool()
    text = (keep.long().cumsum(1) - 1)[keep]  # restarts at 0 in every row
    rope = text.expand(3, -1) if rope_positions is None else rope_positions[:, keep]
    labels = input_ids.masked_fill(~keep, -100)
    labels[:, :-logits_to_keep] = -100  # only completion tokens are scored, as in TRL
    packed = {"input_ids": input_ids[keep][None], "position_ids": torch.cat([text[None], rope])[:, None],
              "labels": labels[keep][None]}  # fmt: skip
    if mm_token_type_ids is not None:
        packed["mm_token_type_ids"] = mm_token_type_ids[keep][None]
    return packed


def unpack(values: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """Per-token ``values`` of a packed row, (1, N - 1) as the fused LM head returns them (value j scores token
    j + 1), back in TRL's padded layout (B, ``logits_to_keep``), 0 at padding."""
    keep = attention_mask.bool()
    packed_index = (keep.flatten().long().cumsum(0) - 1).view_as(keep)[:, -logits_to_keep:]
    scored = keep[:, -logits_to_keep:]
    out = values.new_zeros(scored.shape)
    out[scored] = values[0, packed_index[scored] - 1]
    return out


def check_packed_inputs(inputs: dict, lengths: torch.Tensor) -> None:
    """Refuse a packed forward that would run but compute something else: positions other than (4, 1, N), a text
    row that does not restart at 0 for every sequence (``lengths``), rope rows that do not start each sequence at 0
    or collapse to 1D on an image, an attention mask, or a cache."""
    position_ids, n = inputs.get("position_ids"), int(lengths.sum())
    if position_ids is None or tuple(position_ids.shape) != (4, 1, n):
        shape = None if position_ids is None else tuple(position_ids.shape)
        raise ValueError(f"packed position_ids must be (4, 1, {n}): text row + 3 M-RoPE rows; got {shape}")
    if inputs.get("use_cache") is not False or inputs.get("attention_mask") is not None:
        raise ValueError("a packed forward needs use_cache=False and no attention mask (else the sequences are "
                         "not separated)")  # fmt: skip
    starts = torch.cumsum(lengths, 0) - lengths
    text, rope = position_ids[0, 0], position_ids[1:, 0]
    starts, lengths = starts.to(text.device), lengths.to(text.device)
    expected = torch.arange(n, device=text.device) - torch.repeat_interleave(starts, lengths)
    if not torch.equal(text, expected):
        raise ValueError("packed text positions (row 0) must restart at 0 at every sequence")
    if (rope[:, starts] != 0).any():
        raise ValueError("packed M-RoPE positions (rows 1-3) must start every sequence at 0")
    types = inputs.get("mm_token_type_ids")
    if types is not None:
        image = types[0] == 1
        segment = torch.cumsum(image & ~torch.cat([image.new_zeros(1), image[:-1]]), 0)[image]  # image runs
        size = torch.bincount(segment)
        flat = torch.bincount(segment, weights=(rope[1, image] == rope[2, image]).double())
        if ((size > 1) & (flat == size)).any():
            raise ValueError("packed M-RoPE positions are 1D on an image (height row == width row): use the "
                             "model's rope index")  # fmt: skip


def vision_inputs(start: int, end: int, pixel_values=None, image_grid_thw=None, num_images=None) -> dict:
    """``pixel_values`` and ``image_grid_thw`` of rows ``start:end`` (patch rows per image: the grid's product)."""
    if pixel_values is None:
        return {}
    images = torch.tensor([0, *num_images]).cumsum(0)
    patches = torch.cat([image_grid_thw.new_zeros(1), image_grid_thw.prod(-1).cumsum(0)])
    first, last = images[start].item(), images[end].item()
    return {"pixel_values": pixel_values[patches[first] : patches[last]], "image_grid_thw": image_grid_thw[first:last]}


def packed_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                               compute_entropy=False, compute_aux_loss=False, pixel_values=None, image_grid_thw=None,
                               num_images=None, mm_token_type_ids=None, autocast=nullcontext,
                               **other_inputs):  # fmt: skip
    """TRL's ``_get_per_token_logps_and_entropies`` (same arguments, same ``(logps, entropies, None)`` in the
    padded (B, ``logits_to_keep``) layout) with each chunk of ``batch_size`` rows packed into one row.
    ``model`` carries TRL's fused LM head (temperature included). Image inputs as Qwen-style VLMs take them."""
    unsupported = sorted(k for k, v in other_inputs.items() if v is not None)
    if compute_aux_loss or unsupported:
        raise ConfigError(f"padding_free supports M-RoPE image inputs only; got {unsupported or 'an MoE aux loss'}: "
                          "set --padding_free false")  # fmt: skip
    index = rope_index(model)
    attend_per_sequence(model)
    batch_size = batch_size or input_ids.size(0)
    logps, entropies = [], []
    for start in range(0, input_ids.size(0), batch_size):
        rows = slice(start, min(start + batch_size, input_ids.size(0)))
        mask = attention_mask[rows]
        vision = vision_inputs(start, rows.stop, pixel_values, image_grid_thw, num_images)
        types = None if mm_token_type_ids is None else mm_token_type_ids[rows]
        rope = None
        if types is not None and "image_grid_thw" in vision:
            rope = index(input_ids[rows], mm_token_type_ids=types, image_grid_thw=vision["image_grid_thw"],
                         attention_mask=mask)[0]  # fmt: skip
        inputs = {**pack(input_ids[rows], mask, logits_to_keep, rope, types), **vision, "use_cache": False}
        check_packed_inputs(inputs, mask.sum(1))
        with autocast():
            outputs = model(**inputs, fused_lm_head=True)
        logps.append(unpack(outputs.log_probs, mask, logits_to_keep))
        if compute_entropy:
            entropies.append(unpack(outputs.entropy, mask, logits_to_keep))
    return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None
