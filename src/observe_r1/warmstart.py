"""Supervised warm start: teach a fresh model the observe/think/answer format on templated responses.

There are no pretrained weights on our machines, and RL needs a policy that sometimes succeeds. The demo's
teacher writes a perfect ``<observe>`` description and reasoning but, by design, reports a count one too high
on a fraction of the examples (``error_rate``): a systematic error the verifiable reward can see, which RL then
has to remove (from a clean warm start a few CPU minutes of GRPO sharpened sampling but taught nothing new;
see docs/benchmarks.md#demo).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from observe_r1.prompts import SYSTEM_PROMPT, build_messages
from observe_r1.synth import format_response


def teacher_response(item: dict, rng: random.Random, error_rate: float) -> str:
    """The templated response for a synthetic item; with probability ``error_rate`` the final count is +1."""
    answer = int(item["answer"])
    reasoning = item["reasoning"]
    if rng.random() < error_rate:
        wrong = answer + 1
        head, _, _ = reasoning.rpartition(str(answer))
        reasoning = f"{head}{wrong}." if head else f"{reasoning} So {wrong}."
        answer = wrong
    return format_response(item["observation"], reasoning, answer)


def encode_sft(processor, items: list[dict], responses: list[str], system_prompt: str | None = SYSTEM_PROMPT):
    """Tokenize prompt + response pairs; labels are -100 everywhere except on the response and its end token."""
    examples = []
    for item, response in zip(items, responses, strict=True):
        messages = build_messages(item["problem"], 1, system_prompt)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        full = prompt + response + "<|im_end|>\n"
        prompt_len = processor(text=[prompt], images=[item["image"]], return_tensors="pt")["input_ids"].shape[1]
        enc = processor(text=[full], images=[item["image"]], return_tensors="pt")
        labels = enc["input_ids"].clone()
        labels[:, :prompt_len] = -100
        examples.append({**{k: v for k, v in enc.items()}, "labels": labels})
    return examples


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-pad a list of single-example encodings into one batch."""
    length = max(e["input_ids"].shape[1] for e in examples)

    def pad(key, value):
        """Right-pad token id lists into one tensor."""
        return torch.cat(
            [torch.nn.functional.pad(e[key], (0, length - e[key].shape[1]), value=value) for e in examples]
        )

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", -100),
    }
    if "mm_token_type_ids" in examples[0]:
        batch["mm_token_type_ids"] = pad("mm_token_type_ids", 0)
    batch["pixel_values"] = torch.cat([e["pixel_values"] for e in examples])
    batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in examples])
    return batch


def sft(
    model,
    processor,
    examples: list[dict],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """A short AdamW loop (cosine decay) over pre-encoded examples; returns the loss per step."""
    rng = random.Random(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * 0.1)
    pad_id = processor.tokenizer.pad_token_id
    losses = []
    for step in range(steps):
        batch = collate(rng.sample(examples, min(batch_size, len(examples))), pad_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if progress:
            progress(step, losses[-1])
    model.eval()
    return losses
