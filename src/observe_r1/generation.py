"""Batched generation for rating (ladder) and evaluation: Hugging Face ``generate``, or vLLM when installed.

Both backends take records ``{problem, images: [PIL]}`` and return, per record, ``n`` responses as
``(text, num_tokens)``. Hugging Face generation pads on the left and batches records; ``n`` samples of a record
ride in the same batch (``num_return_sequences``).
"""

from __future__ import annotations

import torch

from observe_r1.prompts import SYSTEM_PROMPT, build_messages

Response = tuple[str, int]

# Shared defaults of every generation path (eval, ladder rating, both backends).
BATCH_SIZE = 64  # sequences per generate call
MAX_NEW_TOKENS = 1024


class HFGenerator:
    """Generate with a loaded Hugging Face model and processor, ``batch_size`` records per forward pass."""

    def __init__(self, model, processor, *, batch_size: int = BATCH_SIZE, max_new_tokens: int = MAX_NEW_TOKENS):
        self.model, self.processor = model.eval(), processor
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        tokenizer = processor.tokenizer
        self.eos_id, self.pad_id = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id

    def _encode(self, records: list[dict], system_prompt: str | None):
        texts = [
            self.processor.apply_chat_template(
                build_messages(r["problem"], len(r["images"]), system_prompt), add_generation_prompt=True
            )
            for r in records
        ]
        images = [img for r in records for img in r["images"]] or None
        return self.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")

    def generate(
        self,
        records: list[dict],
        *,
        n: int = 1,
        temperature: float = 0.0,
        system_prompt: str | None = SYSTEM_PROMPT,
    ) -> list[list[Response]]:
        """``n`` responses per record (greedy when ``temperature == 0``, which requires ``n == 1``)."""

        assert temperature > 0 or n == 1, "greedy decoding gives one response per record; set temperature > 0"
        results: list[list[Response]] = []
        step = max(1, self.batch_size // n)
        for start in range(0, len(records), step):
            batch = records[start : start + step]
            inputs = self._encode(batch, system_prompt).to(self.model.device)
            sampling = dict(temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else {}
            with torch.no_grad():
                out = self.model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    num_return_sequences=n,
                    do_sample=temperature > 0,
                    eos_token_id=self.eos_id,
                    pad_token_id=self.pad_id,
                    **sampling,
                )
            completions = out[:, inputs["input_ids"].shape[1] :]
            for i in range(len(batch)):
                results.append([self._decode(completions[i * n + j]) for j in range(n)])
        return results

    def _decode(self, ids) -> Response:
        ids = ids.tolist()
        length = ids.index(self.eos_id) + 1 if self.eos_id in ids else len([t for t in ids if t != self.pad_id])
        text = self.processor.tokenizer.decode(ids[:length], skip_special_tokens=True)
        return text, length


class VLLMGenerator:
    """Offline vLLM generation (``pip install observe-r1[vllm]``, GPU only); images passed as multimodal data."""

    def __init__(self, model_id: str, *, max_new_tokens: int = MAX_NEW_TOKENS, **llm_kwargs):
        from vllm import LLM  # optional dependency

        self.llm = LLM(model=model_id, limit_mm_per_prompt={"image": 8}, **llm_kwargs)
        self.max_new_tokens = max_new_tokens

    def generate(self, records, *, n=1, temperature=0.0, system_prompt=SYSTEM_PROMPT):
        """``n`` responses per record, as ``(text, num_tokens)``; the same contract as :meth:`HFGenerator.generate`."""
        from vllm import SamplingParams

        tokenizer = self.llm.get_tokenizer()
        prompts = [
            {
                "prompt": tokenizer.apply_chat_template(
                    build_messages(r["problem"], len(r["images"]), system_prompt),
                    add_generation_prompt=True,
                    tokenize=False,
                ),
                "multi_modal_data": {"image": r["images"]} if r["images"] else None,
            }
            for r in records
        ]
        params = SamplingParams(n=n, temperature=temperature, max_tokens=self.max_new_tokens)
        outputs = self.llm.generate(prompts, params)
        return [[(c.text, len(c.token_ids)) for c in o.outputs] for o in outputs]


def make_generator(
    model_id_or_path: str, *, backend: str = "hf", batch_size: int = BATCH_SIZE, max_new_tokens: int = MAX_NEW_TOKENS
):
    """``hf`` (any machine) or ``vllm`` (GPU, vLLM installed). With ``hf`` a LoRA adapter folder loads on its
    base model (``observe_r1.models.load_policy``)."""
    if backend == "vllm":
        from observe_r1.config import ConfigError
        from observe_r1.lora import is_adapter_dir
        from observe_r1.train import check_vllm

        if is_adapter_dir(model_id_or_path):  # wrong with or without vLLM installed
            raise ConfigError(f"{model_id_or_path} is a LoRA adapter: merge it for vLLM first "
                             f"(observe-r1 merge {model_id_or_path} --out MERGED), or use --backend hf")  # fmt: skip
        check_vllm(True, "--backend vllm")
        return VLLMGenerator(str(model_id_or_path), max_new_tokens=max_new_tokens)
    if backend != "hf":
        raise ValueError(f"backend must be 'hf' or 'vllm'; got {backend!r}")
    from observe_r1.models import load_policy

    model, processor = load_policy(model_id_or_path)
    return HFGenerator(model, processor, batch_size=batch_size, max_new_tokens=max_new_tokens)
