"""Eval and ladder rating through an OpenAI-compatible server (observe_r1.serving), against a real `transformers
serve` started in this process with observe-r1's processor registered (observe_r1.serving.serve); the faulty servers
are that same server with one thing broken (its image processor, its response template, its sampling), or a proxy
in front of it that dies."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest
import transformers.cli.serving.utils as serving_utils
from helpers import benchmark_file
from PIL import Image
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.eval import evaluate
from observe_r1.generation import make_generator
from observe_r1.jsonl import read_jsonl
from observe_r1.ladder.stages import rate
from observe_r1.models import load_processor
from observe_r1.serving import (
    CACHE_FILE,
    PROBE_FILE,
    PROBE_QUESTION,
    ServerOptions,
    ServingError,
    fit_image,
    serve,
)

RESPONSE_TEMPLATE = serving_utils.get_response_template  # transformers' own, before serve() turns it off
TOKENS = 24  # new tokens per response: enough to tell samples apart, short enough for the suite


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tiny_model_dir):
    """`transformers serve` of the tiny Qwen2.5-VL in this process, through observe-r1's launcher."""
    port = _free_port()
    server = serve(tiny_model_dir, port=port, non_blocking=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("transformers serve did not start in 60 s")
            time.sleep(0.1)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/v1", model=str(tiny_model_dir), server=server)
    server.kill_server()
    serving_utils.get_response_template = RESPONSE_TEMPLATE  # serve() turned it off for the whole process


def _generator(served, out=None, url=None, **options):
    server = ServerOptions(
        url or served.url, retries=options.pop("retries", 0), backoff=0.01, cache_dir=out, **options
    )
    return make_generator(served.model, backend="openai", max_new_tokens=TOKENS, server=server)


def _ladder_items(out, n=3):
    """``n`` rating items with images of different sizes stored under ``out/images``."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        Image.new("RGB", (60 + 40 * i, 90), (70 * i, 120, 200)).save(out / "images" / f"{i}.png")
        items.append({"id": f"item{i}", "problem": f"How many shapes? ({i})", "answer": str(i),
                      "images": [f"images/{i}.png"]})  # fmt: skip
    return items


# ------------------------------------------------------------------------------------------ no server needed
@pytest.mark.parametrize("size", [(1000, 700), (60, 40), (224, 224), (30, 500)])
def test_fit_image_gives_the_processor_its_own_grid(tiny_model_dir, size):
    """A fitted image is what the processor would resize to: the same grid, and the processor resizes it no more."""
    processor = load_processor(tiny_model_dir)
    image = Image.new("RGB", size, (10, 200, 30))
    fitted = fit_image(image, processor.image_processor)
    grid = processor.image_processor(images=[image])["image_grid_thw"].tolist()
    assert processor.image_processor(images=[fitted])["image_grid_thw"].tolist() == grid
    assert fitted.width == grid[0][2] * 14 and fitted.height == grid[0][1] * 14


def test_openai_backend_needs_a_url(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--benchmark", str(tmp_path / "b.jsonl"), "--out", str(tmp_path / "o"),
                                      "--model", "m", "--backend", "openai"])  # fmt: skip
    assert result.exit_code == 2 and "--backend openai needs --url" in result.output


# ------------------------------------------------------------------------------------------ a real server
@pytest.mark.slow
def test_eval_through_the_server_equals_in_process_greedy(served, tiny_model_dir, tmp_path):
    bench = benchmark_file("mathvision/data/test.jsonl")
    local = evaluate(make_generator(str(tiny_model_dir), max_new_tokens=TOKENS), bench, tmp_path / "hf", limit=3)
    result = CliRunner().invoke(app, [
        "eval", "--benchmark", str(bench), "--out", str(tmp_path / "served"), "--model", served.model, "--limit",
        "3", "--max-new-tokens", str(TOKENS), "--backend", "openai", "--url", served.url, "--concurrency", "2",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    mine = [(r["id"], r["response"], r["tokens"]) for r in read_jsonl(tmp_path / "hf" / "predictions.jsonl")]
    theirs = read_jsonl(tmp_path / "served" / "predictions.jsonl")
    assert mine == [(r["id"], r["response"], r["tokens"]) for r in theirs]  # token for token
    assert all(r["usage"]["completion_tokens"] == r["tokens"] and r["usage"]["prompt_tokens"] > 64 for r in theirs)
    served_results = json.loads((tmp_path / "served" / "results.json").read_text())
    assert served_results["official"] == local["official"] and served_results["accuracy"] == local["accuracy"]
    probe = json.loads((tmp_path / "served" / PROBE_FILE).read_text())
    assert probe["dialect"] == "transformers" and probe["text"] == "verbatim"
    assert probe["image"]["seen_tokens"] == probe["image"]["expected_tokens"] > 2
    # a rerun asks nothing: predictions.jsonl already holds every row, and the cache every response
    assert len(read_jsonl(tmp_path / "served" / CACHE_FILE)) == 3


@pytest.mark.slow
def test_rating_k_samples_through_the_server_differ_and_carry_usage(served, tmp_path, monkeypatch):
    monkeypatch.setenv("OBSERVE_R1_API_KEY", "sk-must-not-reach-disk")
    generator = _generator(served, tmp_path)
    items = _ladder_items(tmp_path)
    rated = rate(items, generator, tmp_path, k=4, temperature=1.0)
    assert [it["id"] for it in rated] == ["item0", "item1", "item2"]
    for row in read_jsonl(tmp_path / "responses.jsonl"):
        assert len(set(row["responses"])) == 4, row["responses"]  # four different samples per item
        assert [u["completion_tokens"] for u in row["usage"]] == next(
            r["lengths"] for r in read_jsonl(tmp_path / "rating.jsonl") if r["id"] == row["id"]
        )
        assert len({u["prompt_tokens"] for u in row["usage"]}) == 1  # one prompt, four samples
    probe = json.loads((tmp_path / PROBE_FILE).read_text())
    assert probe["n_honoured"] is False and probe["sampling"]["distinct"] >= 2  # transformers serve ignores n
    assert generator.stats["requests"] == 12 and len(read_jsonl(tmp_path / CACHE_FILE)) == 12
    written = [path.read_text(errors="ignore") for path in tmp_path.rglob("*") if path.is_file()]
    assert written and not any("sk-must-not-reach-disk" in text for text in written)


@pytest.mark.slow
def test_probe_refuses_a_server_that_drops_images(served, tmp_path, monkeypatch):
    from transformers.cli.serving.utils import Modality

    # what a server without the model's image processor does: image_url parts dropped, 200 from the text alone
    monkeypatch.setattr(served.server._model_manager, "get_model_modality", lambda model, processor=None: Modality.LLM)
    with pytest.raises(
        ServingError,
        match=rf"server at {served.url} dropped the probe image \(prompt tokens (\d+) with it, \1 without",
    ):
        _generator(served, tmp_path).generate([{"id": "a", "problem": "q", "images": [Image.new("RGB", (56, 56))]}])
    with pytest.raises(ServingError, match="dropped the probe image"):  # every run probes: the same refusal
        _generator(served, tmp_path).generate([{"id": "a", "problem": "q", "images": []}])
    assert not (tmp_path / CACHE_FILE).exists()  # nothing was asked


@pytest.mark.slow
def test_probe_refuses_a_server_that_rewrites_responses(served, tmp_path, monkeypatch):
    # transformers serve's own per-model response template, as `transformers serve MODEL` runs it
    monkeypatch.setattr(serving_utils, "get_response_template", RESPONSE_TEMPLATE)
    with pytest.raises(
        ServingError, match=f"server at {served.url} rewrote a response: .*content '<answer>3</answer>'"
    ):
        _generator(served, tmp_path).generate([{"id": "a", "problem": "q", "images": []}])
    # told to skip the text check, a greedy run goes ahead (the random model writes no <think> to move)
    [[(text, tokens)]] = _generator(served, tmp_path, check_text=False).generate([{"id": "a", "problem": "q",
                                                                                   "images": []}])  # fmt: skip
    assert tokens > 0 and json.loads((tmp_path / PROBE_FILE).read_text())["text"].startswith("not checked")


@pytest.mark.slow
def test_probe_refuses_a_server_that_ignores_sampling(served, tmp_path, monkeypatch):
    build = served.server._chat_handler._build_generation_config

    def greedy_anyway(*args, **kwargs):
        config = build(*args, **kwargs)
        config.do_sample = False
        return config

    monkeypatch.setattr(served.server._chat_handler, "_build_generation_config", greedy_anyway)
    record = {"id": "a", "problem": "q", "images": []}
    assert _generator(served, tmp_path).generate([record])  # greedy runs are not refused
    with pytest.raises(ServingError, match=f"server at {served.url} ignores sampling: 4 samples .* identical"):
        _generator(served, tmp_path).generate([record], n=2, temperature=1.0)


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A stand-in server in front of the real one: each chat completion goes to ``behaviour(body, forward, probe)``
    (``probe``: a request of the probe's), which returns the reply to send (``forward(body)`` asks the real server)
    or None to drop the connection unanswered, as a dead server would. ``items`` counts the other requests."""

    target, behaviour, items, lock = "", None, 0, threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        probe = PROBE_QUESTION in json.dumps(body)
        with self.lock:
            type(self).items += not probe
        reply = type(self).behaviour(body, self.forward, probe)
        if reply is None:
            self.close_connection = True
            return
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self, body: dict) -> dict:
        request = urllib.request.Request(self.target + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request) as reply:
            return json.loads(reply.read())

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy(served):
    """``proxy(behaviour)`` starts a :class:`_Proxy` in front of the served model and returns its URL."""
    started = []

    def start(behaviour):
        _Proxy.target, _Proxy.behaviour, _Proxy.items = served.url, behaviour, 0
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_server_dying_mid_run_leaves_a_resumable_run(served, tmp_path, proxy):
    items = _ladder_items(tmp_path)
    answered = []

    def dies_after_four(body, forward, probe):
        if probe:
            return forward(body)
        with _Proxy.lock:
            if len(answered) >= 4:
                return None
            answered.append(body)
        return forward(body)

    url = proxy(dies_after_four)
    with pytest.raises(ServingError, match=f"server at {url} failed 2 of 6 requests .* rerun the same command"):
        rate(items, _generator(served, tmp_path, url=url, retries=1, timeout=5.0), tmp_path, k=2, temperature=1.0)
    assert len(read_jsonl(tmp_path / CACHE_FILE)) == 4 and not read_jsonl(tmp_path / "rating.jsonl", missing_ok=True)
    url = proxy(lambda body, forward, probe: forward(body))
    generator = _generator(served, tmp_path, url=url)
    rate(items, generator, tmp_path, k=2, temperature=1.0)
    assert _Proxy.items == 2 and generator.stats["cached"] == 4  # only the two that were missing
    assert [len(r["responses"]) for r in read_jsonl(tmp_path / "responses.jsonl")] == [2, 2, 2]


@pytest.mark.slow
def test_a_server_that_honours_n_gets_one_request_per_item(served, tmp_path, proxy):
    """vLLM and SGLang return ``n`` choices: stood in for by asking the real server ``n`` times."""

    def with_n(body, forward, probe):  # n choices, each with one logprob per token but the end token, as vLLM's
        n, logprobs = body.pop("n", 1), body.pop("logprobs", False)
        replies = [forward(body) for _ in range(n)]
        counts = [r["usage"]["completion_tokens"] for r in replies]
        merged = replies[0]
        merged["choices"] = [dict(r["choices"][0], index=i) for i, r in enumerate(replies)]
        merged["usage"]["completion_tokens"] = sum(counts)
        for choice, tokens in zip(merged["choices"], counts, strict=True):
            entry = {"token": "t", "logprob": 0.0, "bytes": None, "top_logprobs": []}
            kept = tokens - (choice["finish_reason"] == "stop")
            choice["logprobs"] = {"content": [entry] * kept} if logprobs else None
        return merged

    url = proxy(with_n)
    generator = _generator(served, tmp_path, url=url)
    items = _ladder_items(tmp_path)
    rate(items, generator, tmp_path, k=3, temperature=1.0)
    assert json.loads((tmp_path / PROBE_FILE).read_text())["n_honoured"] is True
    assert _Proxy.items == generator.stats["requests"] == 3  # one per item
    lengths = {r["id"]: r["lengths"] for r in read_jsonl(tmp_path / "rating.jsonl")}
    for row in read_jsonl(tmp_path / "responses.jsonl"):
        assert len(set(row["responses"])) == 3
        # the server counts the three together; each sample's count is its logprobs' (+ its end token)
        assert sum(u["completion_tokens"] for u in row["usage"]) == row["usage"][0]["request_completion_tokens"]
        assert [u["completion_tokens"] for u in row["usage"]] == lengths[row["id"]]


@pytest.mark.slow
def test_a_response_split_into_reasoning_stops_the_run(served, tmp_path, proxy):
    """The probe passes (its requests are untouched); the first item response with a reasoning field stops the run."""

    def splits(body, forward, probe):
        reply = forward(body)
        if not probe:
            reply["choices"][0]["message"]["reasoning_content"] = "2 + 1 = 3"
        return reply

    url = proxy(splits)
    with pytest.raises(ServingError, match=f"server at {url} split a response into content and reasoning"):
        rate(_ladder_items(tmp_path), _generator(served, tmp_path, url=url, concurrency=1), tmp_path, k=2,
             temperature=1.0)  # fmt: skip
    assert _Proxy.items < 6  # stopped before asking everything


@pytest.mark.slow
def test_ladder_build_through_the_server_from_the_command_line(served, tmp_path):
    from observe_r1.synth import generate_items, write_dataset

    source = write_dataset(generate_items(4, seed=3), tmp_path / "pool")
    out = tmp_path / "ladder"
    result = CliRunner().invoke(app, [
        "ladder", "build", "--source", str(source), "--model", served.model, "--out", str(out), "--k", "2",
        "--max-new-tokens", "16", "--backend", "openai", "--url", served.url, "--served-model", served.model,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    probe = json.loads((out / PROBE_FILE).read_text())
    assert probe["text"] == "verbatim" and probe["sampling"]["distinct"] >= 2
    rows = read_jsonl(out / "responses.jsonl")
    assert rows and all(len(r["responses"]) == 2 and len(r["usage"]) == 2 for r in rows)
    assert len(read_jsonl(out / "ladder.jsonl")) > 0


def test_in_process_decoding_keeps_a_generated_pad_token_as_a_server_does(tiny_model_dir):
    """Found by bench/serving.py: HFGenerator dropped the last token of a response that ran to the limit holding the
    pad token (6 of 32 greedy responses of the tiny model), so it disagreed with the server's text and count."""
    import torch

    from observe_r1.generation import HFGenerator

    generator = HFGenerator.__new__(HFGenerator)  # _decode needs only the processor and the two ids
    generator.processor = load_processor(tiny_model_dir)
    generator.eos_id, generator.pad_id = 2, 0  # <|im_end|>, <|endoftext|>
    decode = generator.processor.tokenizer.decode
    assert generator._decode(torch.tensor([40, 0, 41])) == (decode([40, 41]), 3)  # ran to the limit: 3 tokens
    assert generator._decode(torch.tensor([40, 41, 2, 0, 0])) == (decode([40, 41]), 3)  # ended: padding after
