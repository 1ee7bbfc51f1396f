"""Generation through an OpenAI-compatible server (vLLM, SGLang, ``transformers serve``) for ``eval`` and ``ladder
build``, with images, and never silently wrong.

    python -m observe_r1.serving runs/r1/final --port 8000            # transformers serve, set up for observe-r1
    observe-r1 eval --model runs/r1/final --backend openai --url http://127.0.0.1:8000/v1 \\
        --served-model runs/r1/final --benchmark MATH-V/data/test.jsonl --out evals/mathv

:class:`OpenAIGenerator` has the interface of :class:`observe_r1.generation.HFGenerator`: records ``{id, problem,
images}`` in, ``n`` responses ``(text, completion_tokens)`` per record out. Each request carries our system prompt
and chat format (the server applies the model's chat template, as ``HFGenerator`` does) and the images as PNG data
URLs, resized to the pixel budget of the model's processor (``--model``: its folder or hub id), so the server's
processor sees what ours would. Requests run on ``concurrency`` threads, each with a timeout and retries with
exponential backoff (:func:`observe_r1.judge.with_retries`). Every answer is appended to ``serving_cache.jsonl`` in
the output folder as it arrives, keyed by (item id, sample index, served model, hash of the request: messages,
temperature, token limit): a rerun after a crash or a dead server asks only what is missing. Each response carries
``usage``, the server's prompt and completion token counts.

Before the first request of a run, a probe (a few tiny requests, written to ``serving_probe.json``) refuses, in one
line naming the server, the check and the fix, a server that would make the run silently wrong:

- **image**: a probe image must raise the prompt by the image tokens our processor expects (a server without the
  model's processor drops ``image_url`` parts and still answers 200);
- **text**: a response forced to ``<observe>…</observe><think>…</think><answer>…</answer>`` must come back verbatim
  (``transformers serve`` moves ``<think>`` to ``reasoning_content`` and drops ``<observe>``; vLLM and SGLang do the
  same with a reasoning parser). The text is forced through the first mechanism the server honours, which also
  tells its dialect: transformers' ``generation_config`` (``sequence_bias``), vLLM's ``structured_outputs`` regex
  (``guided_regex`` before 0.12), SGLang's ``regex``. A server that honours none cannot be checked and is refused
  unless ``check_text=False`` (``--skip-text-check``); every response is still refused if it has a reasoning field;
- **sampling** (runs with temperature > 0): samples of the probe must differ (``transformers serve`` ignores
  ``temperature`` alone; it is sent ``do_sample`` through ``generation_config``). ``n`` is used when the server
  returns ``n`` choices, else each sample is its own request.

The API key comes from an environment variable (``key_env``, then ``OPENAI_API_KEY``) and is never written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from observe_r1.config import ConfigError
from observe_r1.jsonl import append_jsonl, read_jsonl
from observe_r1.judge import _one_line, with_retries
from observe_r1.models import VISION_TOKENS
from observe_r1.prompts import SYSTEM_PROMPT, build_messages

CACHE_FILE = "serving_cache.jsonl"
PROBE_FILE = "serving_probe.json"
PROBE_TEXT = "<observe>two red squares</observe><think>2 + 1 = 3</think><answer>3</answer>"
PROBE_QUESTION = "Describe the image."
PROBE_SAMPLES = 4
PROBE_SAMPLE_TOKENS = 32
FORCING_BIAS = 100.0  # per matched token: the longest matching prefix of PROBE_TEXT always wins over any logit


class ServingError(ConfigError):
    """The server can't be used for this run, or failed during it; one line naming the server, the check and the
    fix (what was answered stays in the cache)."""


class RewrittenResponse(ServingError):
    """A response came back split into content and reasoning: the run stops at once."""


@dataclass(frozen=True)
class ServerOptions:
    """Where the server is and how to talk to it (``--url``, ``--served-model``, …)."""

    url: str
    served_model: str | None = None  # the name the server knows the model by; default: --model
    key_env: str = "OBSERVE_R1_API_KEY"
    concurrency: int = 8
    timeout: float = 600.0
    retries: int = 3
    backoff: float = 1.0
    check_text: bool = True
    cache_dir: str | Path | None = None  # the run's output folder: serving_cache.jsonl, serving_probe.json


# ------------------------------------------------------------------------------------------------ requests
def fit_image(image: Image.Image, image_processor) -> Image.Image:
    """``image`` resized as the model's image processor resizes it (Qwen's ``smart_resize``: sides multiples of
    patch × merge, pixels within the processor's budget, its resampling), so a server given the result resizes
    nothing and sees the pixels our processor would."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    size, factor = image_processor.size, image_processor.patch_size * image_processor.merge_size
    height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=size["shortest_edge"],
                                 max_pixels=size["longest_edge"])  # fmt: skip
    if (width, height) == image.size:
        return image
    return image.resize((width, height), resample=image_processor.resample)


def data_url(image: Image.Image) -> str:
    """A PNG data URL (lossless: the server decodes the exact pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def request_messages(record: dict, system_prompt: str | None, image_processor) -> list[dict]:
    """OpenAI chat messages of ``record``: :func:`observe_r1.prompts.build_messages` with each image part an
    ``image_url`` holding the fitted image."""
    images = iter(record["images"])
    messages = build_messages(record["problem"], len(record["images"]), system_prompt)
    for message in messages:
        message["content"] = [
            {"type": "image_url", "image_url": {"url": data_url(fit_image(next(images), image_processor))}}
            if part["type"] == "image"
            else part
            for part in message["content"]
        ]
    return messages


def request_hash(messages: list[dict], temperature: float, max_new_tokens: int) -> str:
    """What a request asks, whatever the server's dialect: its messages (images included), temperature and limit."""
    text = json.dumps({"messages": messages, "temperature": temperature, "max_new_tokens": max_new_tokens},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


class ServedResponse(tuple):
    """``(text, completion_tokens)``, as every generator returns, plus ``usage``: the server's counts."""

    def __new__(cls, text: str, usage: dict):
        response = super().__new__(cls, (text, usage["completion_tokens"]))
        response.usage = usage
        return response


def choice_tokens(reply) -> list[int] | None:
    """Completion tokens of each choice of an ``n``-choice reply, whose ``usage`` counts all choices together: the
    length of each choice's logprobs (None if a choice has none). Where they fall short of the server's total by
    exactly the choices that stopped, the end token was left out of the logprobs and is counted back (as ``usage``
    and :class:`~observe_r1.generation.HFGenerator` count it)."""
    if any(c.logprobs is None or c.logprobs.content is None for c in reply.choices):
        return None
    counts = [len(c.logprobs.content) for c in reply.choices]
    stopped = [c.finish_reason == "stop" for c in reply.choices]
    if sum(counts) + sum(stopped) == reply.usage.completion_tokens:
        counts = [n + s for n, s in zip(counts, stopped, strict=True)]
    return counts


def reasoning_of(message) -> str:
    """The text a server split off the response (``reasoning_content`` or ``reasoning``), or ``""``."""
    extra = message.model_extra or {}
    return "".join(str(extra.get(k) or "") for k in ("reasoning_content", "reasoning"))


# ---------------------------------------------------------------------------------------------------- cache
class ServingCache:
    """``serving_cache.jsonl``: every response, one line each, appended under a lock as it arrives."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.responses: dict[tuple, ServedResponse] = {}
        for line in read_jsonl(path, missing_ok=True, skip_torn=True) if path else []:
            self.responses[self.key(line)] = ServedResponse(line["text"], line["usage"])
        self._lock = threading.Lock()

    @staticmethod
    def key(line: dict) -> tuple:
        return line["id"], line["sample"], line["model"], line["request_sha256"]

    def add(self, line: dict) -> None:
        with self._lock:
            self.responses[self.key(line)] = ServedResponse(line["text"], line["usage"])
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                append_jsonl(self.path, [line])


# ------------------------------------------------------------------------------------------------ generator
class OpenAIGenerator:
    """Generate through an OpenAI-compatible chat endpoint; the contract of :meth:`HFGenerator.generate`.

    ``processor``: the served model's processor (image budget, expected image tokens, token ids for the probe).
    ``probe``: what the probe found (dialect, image tokens, ``n`` honoured), also in ``serving_probe.json``.
    """

    def __init__(self, processor, options: ServerOptions, *, model_name: str, max_new_tokens: int) -> None:
        from openai import OpenAI

        if options.concurrency < 1 or options.retries < 0 or options.timeout <= 0:
            raise ServingError(f"server at {options.url}: concurrency must be ≥ 1, retries ≥ 0 and timeout > 0")
        self.processor, self.options, self.max_new_tokens = processor, options, max_new_tokens
        self.url, self.model = options.url, options.served_model or model_name
        api_key = os.environ.get(options.key_env) or os.environ.get("OPENAI_API_KEY")
        # a local server needs no key, but the client refuses an empty one
        self.client = OpenAI(base_url=options.url, api_key=api_key or "none", timeout=options.timeout, max_retries=0)
        cache_dir = Path(options.cache_dir) if options.cache_dir is not None else None
        self.cache = ServingCache(cache_dir / CACHE_FILE if cache_dir else None)
        self.probe_path = cache_dir / PROBE_FILE if cache_dir else None
        self.probe: dict = {}
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        tokenizer = processor.tokenizer
        self.eos_id, self.pad_id = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
        self.suppressed = sorted(i for i in tokenizer.convert_tokens_to_ids(VISION_TOKENS) if i is not None)

    # ------------------------------------------------------------------------------------------- the run
    def generate(self, records: list[dict], *, n: int = 1, temperature: float = 0.0,
                 system_prompt: str | None = SYSTEM_PROMPT) -> list[list[ServedResponse]]:  # fmt: skip
        """``n`` responses per record (greedy when ``temperature == 0``, which requires ``n == 1``)."""
        assert temperature > 0 or n == 1, "greedy decoding gives one response per record; set temperature > 0"
        ids = [str(r.get("id", i)) for i, r in enumerate(records)]
        messages = [request_messages(r, system_prompt, self.processor.image_processor) for r in records]
        hashes = [request_hash(m, temperature, self.max_new_tokens) for m in messages]
        keys = [[(ids[i], j, self.model, hashes[i]) for j in range(n)] for i in range(len(records))]
        missing = {i: [j for j in range(n) if keys[i][j] not in self.cache.responses] for i in range(len(records))}
        missing = {i: samples for i, samples in missing.items() if samples}
        self.stats["cached"] += n * len(records) - sum(map(len, missing.values()))
        if missing:
            self._run_probe(temperature)
            if temperature > 0 and self.probe["n_honoured"]:  # one request per record, n = its missing samples
                jobs = list(missing.items())
            else:  # one request per sample
                jobs = [(i, [j]) for i, samples in missing.items() for j in samples]
            self._ask_all(jobs, messages, keys, temperature)
        return [[self.cache.responses[key] for key in row] for row in keys]

    def _ask_all(self, jobs: list[tuple[int, list[int]]], messages, keys, temperature: float) -> None:
        from tqdm import tqdm

        def one(job):
            i, samples = job
            replies = self._ask(messages[i], len(samples), temperature)
            for j, (text, usage) in zip(samples, replies, strict=False):
                key = keys[i][j]
                self.cache.add({"id": key[0], "sample": j, "model": self.model, "request_sha256": key[3],
                                "text": text, "usage": usage})  # fmt: skip
            if len(replies) < len(samples):
                raise ServingError(f"server at {self.url} returned {len(replies)} of {len(samples)} choices")

        failures: list[str] = []
        pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="serving")
        try:
            futures = [pool.submit(one, job) for job in jobs]
            with tqdm(total=len(futures), desc="server", unit="request", leave=False) as bar:
                for future in as_completed(futures):
                    error = future.exception()
                    if isinstance(error, RewrittenResponse):
                        raise error  # every other response may be rewritten too: stop at once
                    if error is not None:
                        failures.append(_one_line(error))
                    bar.update(1)
        finally:  # on Ctrl-C or a refusal: what has arrived is in the cache; nothing new starts
            pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            where = self.cache.path or "memory (no output folder)"
            raise ServingError(f"server at {self.url} failed {len(failures)} of {len(jobs)} requests after "
                               f"{self.options.retries} retries (first: {failures[0]}); the answered ones are in "
                               f"{where}: rerun the same command to ask only the rest")  # fmt: skip

    def _ask(self, messages: list[dict], count: int, temperature: float) -> list[tuple[str, dict]]:
        """``count`` responses to one request: ``[(text, usage)]``; a response with a reasoning field is refused."""
        kwargs = self._sampling(temperature, self.max_new_tokens) if temperature > 0 else self._greedy()
        if count > 1:  # logprobs: one entry per generated token, each choice's own count
            kwargs.update(n=count, logprobs=True)
        reply = self._create(messages, **kwargs)
        with self._lock:
            self.stats["requests"] += 1
        counts = choice_tokens(reply) if len(reply.choices) > 1 else [reply.usage.completion_tokens]
        if counts is None:
            raise ServingError(f"server at {self.url} returned {len(reply.choices)} choices without logprobs: "
                               f"their token counts are unknown")  # fmt: skip
        out = []
        for choice, tokens in zip(reply.choices, counts, strict=True):
            reasoning = reasoning_of(choice.message)
            if reasoning:
                raise RewrittenResponse(f"server at {self.url} split a response into content and reasoning "
                                        f"({reasoning[:60]!r}): start it without a reasoning parser / response "
                                        f"template (docs/serving.md)")  # fmt: skip
            usage = {"prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": tokens}
            if len(reply.choices) > 1:  # the server's own count covers every choice
                usage["request_completion_tokens"] = reply.usage.completion_tokens
            out.append((choice.message.content or "", usage))
        return out

    def _create(self, messages: list[dict], *, retry: bool = True, **kwargs):
        call = lambda: self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)  # noqa: E731
        if not retry:
            return call()
        return with_retries(call, retries=self.options.retries, backoff=self.options.backoff, stats=self.stats,
                            lock=self._lock)  # fmt: skip

    # ------------------------------------------------------------------------------ sampling per dialect
    def _greedy(self) -> dict:
        return {"temperature": 0.0, "max_tokens": self.max_new_tokens}

    def _sampling(self, temperature: float, max_tokens: int) -> dict:
        """Parameters that really sample at ``temperature`` with no top-k / top-p cut (as ``HFGenerator``)."""
        if self.probe.get("dialect") == "transformers":  # `temperature` alone never sets do_sample there
            config = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0,
                      "max_new_tokens": max_tokens, "eos_token_id": self.eos_id, "pad_token_id": self.pad_id,
                      "suppress_tokens": self.suppressed}  # fmt: skip
            return {"extra_body": {"generation_config": json.dumps(config)}}
        # vLLM and SGLang read top_k from extra_body; -1 turns off a top_k the model's generation_config may set
        return {"temperature": temperature, "top_p": 1.0, "max_tokens": max_tokens, "extra_body": {"top_k": -1}}

    # ------------------------------------------------------------------------------------------- the probe
    def _run_probe(self, temperature: float) -> None:
        with self._lock:
            if not self.probe:
                self._probe_image()
                self._probe_text()
            if temperature > 0 and "sampling" not in self.probe:
                self._probe_sampling(temperature)
            if self.probe_path is not None:
                self.probe_path.parent.mkdir(parents=True, exist_ok=True)
                self.probe_path.write_text(json.dumps({"url": self.url, "model": self.model, **self.probe}, indent=2))

    def _probe_record(self) -> dict:
        """A 200×150 gradient (not square, so a swapped height and width would show)."""
        image = Image.new("RGB", (200, 150))
        image.putdata([(x, y, (x + y) % 256) for y in range(150) for x in range(200)])
        return {"problem": PROBE_QUESTION, "images": [image]}

    def _prompt_tokens(self, messages: list[dict]) -> int:
        try:
            return self._create(messages, retry=False, **self._greedy() | {"max_tokens": 1}).usage.prompt_tokens
        except Exception as err:  # noqa: BLE001 - one line naming the server, whatever went wrong
            raise self._unusable(err) from None

    def _unusable(self, err: Exception) -> ServingError:
        import openai

        if isinstance(err, openai.APIConnectionError):
            return ServingError(f"server at {self.url} is unreachable ({_one_line(err)}): start it or fix --url")
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            return ServingError(f"server at {self.url} refused the API key (HTTP {err.status_code}); put it in "
                                f"${self.options.key_env} (or OPENAI_API_KEY)")  # fmt: skip
        if isinstance(err, openai.APIStatusError):
            return ServingError(f"server at {self.url} answered HTTP {err.status_code} to a request for model "
                                f"{self.model!r} ({_one_line(err)}): check --served-model")  # fmt: skip
        return ServingError(f"server at {self.url} gave no chat completion ({_one_line(err)})")

    def _probe_image(self) -> None:
        record = self._probe_record()
        fitted = fit_image(record["images"][0], self.processor.image_processor)
        chat = self.processor.apply_chat_template
        texts = [chat(build_messages(PROBE_QUESTION, k, SYSTEM_PROMPT), add_generation_prompt=True) for k in (1, 0)]
        local = [len(self.processor(text=[texts[0]], images=[fitted])["input_ids"][0]),
                 len(self.processor(text=[texts[1]])["input_ids"][0])]  # fmt: skip
        expected = local[0] - local[1]
        with_image = self._prompt_tokens(request_messages(record, SYSTEM_PROMPT, self.processor.image_processor))
        without = self._prompt_tokens(request_messages({**record, "images": []}, SYSTEM_PROMPT, None))
        seen = with_image - without
        self.probe["image"] = {"expected_tokens": expected, "seen_tokens": seen, "size": list(fitted.size)}
        if seen <= 0:
            raise ServingError(f"server at {self.url} dropped the probe image (prompt tokens {with_image} with it, "
                               f"{without} without, {expected} more expected): it serves {self.model} without its "
                               f"image processor; transformers serve: start it with `python -m observe_r1.serving "
                               f"MODEL`; vLLM: --limit-mm-per-prompt (docs/serving.md)")  # fmt: skip
        if abs(seen - expected) > max(2, expected // 10):
            raise ServingError(f"server at {self.url} turned the {fitted.width}x{fitted.height} probe image into "
                               f"{seen} prompt tokens where the processor of --model gives {expected}: its image "
                               f"processor or pixel budget differs; serve the same processor (vLLM: "
                               f"--mm-processor-kwargs max_pixels) or point --model at the served one")  # fmt: skip

    def _forcing(self) -> list[tuple[str, dict]]:
        """Ways to force PROBE_TEXT, in the order tried: (dialect, request fields)."""
        ids = self.processor.tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        bias = [[ids[: k + 1], FORCING_BIAS * (k + 1)] for k in range(len(ids))]
        bias.append([ids + [self.eos_id], FORCING_BIAS * (len(ids) + 1)])
        config = {"do_sample": False, "max_new_tokens": len(ids) + 1, "eos_token_id": self.eos_id,
                  "pad_token_id": self.pad_id, "sequence_bias": bias}  # fmt: skip
        regex, limit = re.escape(PROBE_TEXT), {"temperature": 0.0, "max_tokens": len(ids) + 8}
        return [("transformers", {"extra_body": {"generation_config": json.dumps(config)}}),
                ("vllm", {**limit, "extra_body": {"structured_outputs": {"regex": regex}}}),
                ("vllm<0.12", {**limit, "extra_body": {"guided_regex": regex}}),
                ("sglang", {**limit, "extra_body": {"regex": regex}})]  # fmt: skip

    def _probe_text(self) -> None:
        import openai

        if not self.options.check_text:
            self.probe["text"] = "not checked (--skip-text-check)"
            return
        messages = request_messages({"problem": PROBE_QUESTION, "images": []}, SYSTEM_PROMPT, None)
        tried = []
        for dialect, fields in self._forcing():
            try:
                reply = self._create(messages, retry=False, **fields)
            except openai.APIStatusError as err:
                if err.status_code in (400, 404, 422):  # this dialect's field refused: try the next one
                    tried.append(f"{dialect}: HTTP {err.status_code}")
                    continue
                raise self._unusable(err) from None
            except Exception as err:  # noqa: BLE001
                raise self._unusable(err) from None
            message = reply.choices[0].message
            content, reasoning = message.content or "", reasoning_of(message)
            if content == PROBE_TEXT and not reasoning:
                self.probe["dialect"], self.probe["text"] = dialect, "verbatim"
                return
            if reasoning or (content and (content in PROBE_TEXT or "</answer>" in content)):
                raise ServingError(f"server at {self.url} rewrote a response: the forced text {PROBE_TEXT!r} came "
                                   f"back as content {content!r} and reasoning {reasoning!r}; observe-r1 scores the "
                                   f"raw text: transformers serve: start it with `python -m observe_r1.serving MODEL`"
                                   f" (no response template); vLLM / SGLang: no --reasoning-parser")  # fmt: skip
            tried.append(f"{dialect}: not forced")
        raise ServingError(f"server at {self.url} could not be made to return a known text ({'; '.join(tried)}), so "
                           f"observe-r1 cannot check that it returns responses verbatim; if it surely does, pass "
                           f"--skip-text-check (responses with a reasoning field are still refused)")  # fmt: skip

    def _probe_sampling(self, temperature: float) -> None:
        import openai

        messages = request_messages(self._probe_record(), SYSTEM_PROMPT, self.processor.image_processor)
        fields = self._sampling(temperature, PROBE_SAMPLE_TOKENS)
        try:
            try:
                reply = self._create(messages, retry=False, n=PROBE_SAMPLES, logprobs=True, **fields)
                choices = reply.choices
            except openai.BadRequestError:  # n refused outright: one request per sample
                choices = []
            # n is used only where each choice's tokens can be counted (its logprobs)
            n_honoured = len(choices) == PROBE_SAMPLES and choice_tokens(reply) is not None
            while len(choices) < PROBE_SAMPLES:
                choices += self._create(messages, retry=False, **fields).choices
        except Exception as err:  # noqa: BLE001
            raise self._unusable(err) from None
        texts = [c.message.content or "" for c in choices[:PROBE_SAMPLES]]
        distinct = len(set(texts))
        self.probe["sampling"] = {"temperature": temperature, "distinct": distinct, "of": PROBE_SAMPLES}
        self.probe["n_honoured"] = n_honoured
        if distinct < 2:
            raise ServingError(f"server at {self.url} ignores sampling: {PROBE_SAMPLES} samples of the probe at "
                               f"temperature {temperature} were identical ({texts[0][:40]!r}); transformers serve "
                               f"needs do_sample (sent once the text check identifies it: don't --skip-text-check); "
                               f"vLLM / SGLang: check its generation_config.json (top_k 1 is greedy)")  # fmt: skip


# ---------------------------------------------------------------------------------------- local launcher
def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, non_blocking: bool = False):
    """``transformers serve`` for an observe-r1 model: our processors registered (this module imports
    ``observe_r1``, so images are not dropped) and the per-model response template off (responses come back as the
    model wrote them). ``non_blocking``: run in a background thread and return the ``Serve`` (``kill_server()``
    stops it)."""
    import transformers.cli.serving.utils as serving_utils
    from transformers.cli.serve import Serve

    serving_utils.get_response_template = lambda processor, model: None  # the raw text, <think> included
    return Serve(force_model=str(model_dir), host=host, port=port, device="cpu" if _no_gpu() else "auto",
                 non_blocking=non_blocking)  # fmt: skip


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="transformers serve for an observe-r1 model (see serve()).")
    parser.add_argument("model", help="model directory (or hub id)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    serve(args.model, host=args.host, port=args.port)
