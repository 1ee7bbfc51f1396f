"""Batched generation for rating (ladder) and evaluation: Hugging Face ``generate``, or vLLM when installed.

Both backends take records ``{problem, images: [PIL]}`` and return, per record, ``n`` responses as
``(text, num_tokens)``. Hugging Face generation pads on the left and batches records; ``n`` samples of a record
ride in the same batch (``num_return_sequences``).

Fast Hugging Face decoding (docs/gpu.md): ``cache_implementation="static"`` preallocates the KV cache, and
``compile_generation`` compiles the one-token decoding step with ``torch.compile`` (the prompt's prefill stays eager).
A compiled step is specialised to its shapes (batch size, cache length), so :class:`HFGenerator` keeps them few:
prompts are left-padded to a multiple of ``LENGTH_BUCKET`` tokens and a short last batch is filled up to the full
batch size; :func:`compilations` counts the graphs compiled so far (logged, and checked to stay constant).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from observe_r1.models import VISION_TOKENS
from observe_r1.prompts import SYSTEM_PROMPT, build_messages

Response = tuple[str, int]

# Shared defaults of every generation path (eval, ladder rating, both backends).
BATCH_SIZE = 64  # sequences per generate call
MAX_NEW_TOKENS = 1024


def suppress_vision_tokens(args, processor):
    """A copy of a training config whose generation never samples a vision token: TRL suppresses only
    ``<|image_pad|>``, and a sampled ``<|vision_start|>`` or ``<|video_pad|>`` breaks the next forward."""
    vision_ids = [i for i in processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS) if i is not None]
    generation_kwargs = dict(args.generation_kwargs or {})
    suppressed = set(generation_kwargs.get("suppress_tokens") or []) | set(vision_ids)
    generation_kwargs["suppress_tokens"] = sorted(suppressed)
    args = copy.copy(args)  # the caller's config stays as it was
    args.generation_kwargs = generation_kwargs
    return args


LENGTH_BUCKET = 64  # with compiled decoding, prompts are left-padded to a multiple of this many tokens


@dataclass(frozen=True)
class Decoding:
    """How Hugging Face ``generate`` decodes. ``cache_implementation``: None (transformers' dynamic cache) or
    ``"static"``; ``compile``: compile the decoding step (needs the static cache)."""

    cache_implementation: str | None = None
    compile: bool = False

    def __post_init__(self):
        if self.compile and self.cache_implementation != "static":
            from observe_r1.config import ConfigError  # one line on the command line, not a traceback

            raise ConfigError("compile_generation needs cache_implementation 'static' (a dynamic cache changes "
                              "shape every token, so each step would compile again)")  # fmt: skip

    @classmethod
    def default(cls, device: torch.device | str) -> Decoding:
        """The fastest measured on the device: static cache + compiled decoding on CUDA, transformers' default
        (dynamic cache, eager) elsewhere (compiling costs ~25 s a shape on a CPU and gains little there)."""
        return cls("static", True) if torch.device(device).type == "cuda" else cls()

    @classmethod
    def parse(cls, cache_implementation: str | None, compile_generation: bool | None, device) -> Decoding:
        """From the command line's ``--cache-implementation`` (``dynamic``/``static``/``auto``) and
        ``--compile-generation`` (None: with the static cache on CUDA)."""
        if cache_implementation in (None, "auto"):
            default = cls.default(device)
            if compile_generation is None:
                return default
            return cls("static" if compile_generation else default.cache_implementation, compile_generation)
        if cache_implementation not in ("dynamic", "static"):
            from observe_r1.config import ConfigError  # one line on the command line, not a traceback

            raise ConfigError(f"cache implementation must be dynamic, static or auto; got {cache_implementation!r}")
        static = cache_implementation == "static"
        compile_ = static and torch.device(device).type == "cuda" if compile_generation is None else compile_generation
        return cls("static" if static else None, compile_)

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``model.generate``."""
        kwargs = {"cache_implementation": self.cache_implementation} if self.cache_implementation else {}
        if self.compile:
            kwargs["compile_config"] = compile_config()
        else:
            kwargs["disable_compile"] = True  # a static cache alone must not trigger transformers' auto-compile
        return kwargs


def compile_config():
    """transformers' ``CompileConfig`` for the decoding step: static shapes (buckets bound them), and allowed on
    every device (transformers compiles only on accelerators by default)."""
    from transformers import CompileConfig

    config = CompileConfig(fullgraph=False, dynamic=False)
    config._compile_all_devices = True  # the CPU tests and benches compile too
    return config


def compilations() -> int:
    """Graphs ``torch.compile`` has compiled in this process so far (new shapes or guards compile again)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class HFGenerator:
    """Generate with a loaded Hugging Face model and processor, ``batch_size`` records per forward pass."""

    def __init__(self, model, processor, *, batch_size: int = BATCH_SIZE, max_new_tokens: int = MAX_NEW_TOKENS,
                 decoding: Decoding | None = None):  # fmt: skip
        self.model, self.processor = model.eval(), processor
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.decoding = decoding or Decoding()
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
        bucket = {"pad_to_multiple_of": LENGTH_BUCKET} if self.decoding.compile else {}
        return self.processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt",
                              **bucket)  # fmt: skip

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
            filled = batch + [batch[0]] * (step - len(batch)) if self.decoding.compile else batch  # one batch shape
            inputs = self._encode(filled, system_prompt).to(self.model.device)
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
                    **self.decoding.generate_kwargs(),
                )
            completions = out[:, inputs["input_ids"].shape[1] :]
            for i in range(len(batch)):
                results.append([self._decode(completions[i * n + j]) for j in range(n)])
        return results

    def _decode(self, ids) -> Response:
        ids = ids.tolist()
        # pad ids follow the end of a finished response only; one without an end ran to the limit, and a pad token
        # it generated itself (the random tiny model does) is part of it: counted, as a server counts it
        length = ids.index(self.eos_id) + 1 if self.eos_id in ids else len(ids)
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
    model_id_or_path: str,
    *,
    backend: str = "hf",
    batch_size: int = BATCH_SIZE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    cache_implementation: str | None = None,
    compile_generation: bool | None = None,
    server=None,
):
    """``hf`` (any machine), ``vllm`` (GPU, vLLM installed) or ``openai`` (an OpenAI-compatible server described
    by ``server``, a :class:`observe_r1.serving.ServerOptions`; ``model_id_or_path`` then only supplies the
    processor). With ``hf`` a LoRA adapter folder loads on its base model (``observe_r1.models.load_policy``);
    ``cache_implementation`` / ``compile_generation``: see :meth:`Decoding.parse` (default: the fastest for the
    model's device)."""
    if backend == "openai":
        from observe_r1.config import ConfigError
        from observe_r1.models import load_processor
        from observe_r1.serving import OpenAIGenerator

        if server is None:
            raise ConfigError("--backend openai needs --url (the server's OpenAI-compatible endpoint, e.g. "
                              "http://127.0.0.1:8000/v1)")  # fmt: skip
        processor = load_processor(model_id_or_path)
        return OpenAIGenerator(processor, server, model_name=str(model_id_or_path), max_new_tokens=max_new_tokens)
    if backend == "vllm":
        from observe_r1.config import ConfigError
        from observe_r1.launch import check_vllm
        from observe_r1.lora import is_adapter_dir

        if is_adapter_dir(model_id_or_path):  # wrong with or without vLLM installed
            raise ConfigError(f"{model_id_or_path} is a LoRA adapter: merge it for vLLM first "
                             f"(observe-r1 merge {model_id_or_path} --out MERGED), or use --backend hf")  # fmt: skip
        check_vllm(True, "--backend vllm")
        return VLLMGenerator(str(model_id_or_path), max_new_tokens=max_new_tokens)
    if backend != "hf":
        raise ValueError(f"backend must be 'hf', 'vllm' or 'openai'; got {backend!r}")
    from observe_r1.models import load_policy

    Decoding.parse(cache_implementation, compile_generation, "cpu")  # a bad choice fails before the model loads
    model, processor = load_policy(model_id_or_path)
    decoding = Decoding.parse(cache_implementation, compile_generation, model.device)
    return HFGenerator(model, processor, batch_size=batch_size, max_new_tokens=max_new_tokens, decoding=decoding)


def decode_rate(model, processor, records: list[dict], *, sequences: int, new_tokens: int, decoding: Decoding) -> dict:
    """Decoding speed of ``model.generate`` with ``decoding`` on ``sequences`` sequences at once (``records``
    repeated to fill them, greedy, every sequence forced to ``new_tokens`` tokens): a warm-up call (compilation),
    then a 1-token call (the prefill) and a full call. ``ms_per_decode_step`` excludes the prefill;
    ``tokens_per_s`` counts every generated token over the full call."""
    import time

    generator = HFGenerator(model, processor, batch_size=sequences, max_new_tokens=new_tokens, decoding=decoding)
    batch = [records[i % len(records)] for i in range(sequences)]
    inputs = generator._encode(batch, SYSTEM_PROMPT).to(model.device)

    def run(tokens: int) -> float:
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                           pad_token_id=generator.pad_id, **decoding.generate_kwargs())  # fmt: skip
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    before = compilations()
    warmup = run(new_tokens)
    prefill, full = run(1), run(new_tokens)
    return {"sequences": sequences, "new_tokens": new_tokens, "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "warmup_s": round(warmup, 3), "prefill_s": round(prefill, 4), "full_s": round(full, 4),
            "ms_per_decode_step": round(1e3 * (full - prefill) / max(new_tokens - 1, 1), 3),
            "tokens_per_s": round(sequences * new_tokens / full, 1),
            "compilations": compilations() - before}  # fmt: skip
