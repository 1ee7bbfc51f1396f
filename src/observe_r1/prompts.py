"""The Observe-R1 system prompt and the chat messages built from a problem (docs/method.md §3)."""

from __future__ import annotations

SYSTEM_PROMPT = (
    "First look at the image and describe what you see inside <observe> </observe>. "
    "Then reason step by step inside <think> </think>. "
    "Finally give only the final answer inside <answer> </answer>."
)

# For base models evaluated without the observe/think/answer format.
PLAIN_PROMPT = "Answer the question. Put the final answer inside \\boxed{}."


def build_messages(problem: str, num_images: int = 1, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict]:
    """Conversational prompt for TRL and chat templates: optional system turn, then images and the question.

    Content is always a list of typed parts so that every row of a dataset has the same Arrow type.
    """
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    parts = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": problem}]
    messages.append({"role": "user", "content": parts})
    return messages
