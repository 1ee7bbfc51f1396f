"""LLM judge (#30): which rows go to the judge, its cache, its faults, and eval against a real server.

The real-server tests run `transformers serve` once per session on a tiny Qwen2 language model built here. Its
weights are set so that its greedy reply to any chat is ``1``: attention and MLP add nothing, every token but
``1`` embeds on one axis that the head maps to ``1``, and ``1`` embeds on another that it maps to the end token.
So the judge extracts ``1`` from every response and calls every MathVerse pair the same answer, and each verdict
the judge decides is known in advance. A stand-in HTTP server is used only to inject faults (500s, timeouts).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from observe_r1.config import ConfigError
from observe_r1.eval import evaluate, score_responses
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.judge import (
    CACHE_FILE,
    Judge,
    JudgeError,
    clear_judgements,
    needs_equivalence,
    parse_equivalence,
    parse_extraction,
    rule_reads,
)

REPLY = "1"  # what the served model answers to anything


# ------------------------------------------------------------------------------------------- benchmarks
def _mathvista_row(pid, question_type, answer, *, choices=None, answer_type="integer"):
    return {"pid": pid, "question": f"Question {pid}?", "choices": choices, "answer": answer,
            "question_type": question_type, "answer_type": answer_type, "precision": None, "image": "x.png",
            "metadata": {"category": "math-targeted-vqa", "task": "counting"}}  # fmt: skip


MATHVISTA = [
    _mathvista_row("1", "free_form", "1"),  # "one apple": no number to read; the judge reads 1 (right)
    _mathvista_row("2", "free_form", "3"),  # <answer>3</answer>: read by the rule, never asked
    _mathvista_row("3", "multi_choice", "1", choices=["7", "1"], answer_type="text"),  # judge "1" = option B
    _mathvista_row("4", "free_form", "5"),  # "five apples": the judge reads 1 (wrong, as the rule)
]
MATHVISTA_RESPONSES = {
    "1": ["I count one apple.", "<answer>2</answer>"],
    "2": ["<answer>3</answer>", "<answer>3</answer>"],
    "3": ["<answer>the second one</answer>", "<answer>A</answer>"],
    "4": ["five apples", "<answer>5</answer>"],
}
JUDGED_ROWS = [("1", 0), ("3", 0), ("4", 0)]  # (id, sample) whose answer the rule can't read


def _write_responses(path, responses):
    write_jsonl(path, [{"id": i, "response": r} for i, samples in responses.items() for r in samples])
    return path


@pytest.fixture
def mathvista(tmp_path):
    bench = tmp_path / "testmini.json"
    bench.write_text(json.dumps({row["pid"]: row for row in MATHVISTA}))
    return bench, _write_responses(tmp_path / "responses.jsonl", MATHVISTA_RESPONSES)


# ------------------------------------------------------------------------------------ pure rules (fast)
MV_INT = {"answer": "12", "choices": [], "meta": {"question_type": "free_form", "answer_type": "integer"}}
MV_MC = {"answer": "B", "choices": ["2 cm", "5 cm"], "meta": {"question_type": "multi_choice"}}
MV_TEXT = {"answer": "yes", "choices": [], "meta": {"question_type": "free_form", "answer_type": "text"}}
ANY = {"answer": "A, C", "choices": []}


@pytest.mark.parametrize(
    ("benchmark", "response", "item", "reads"),
    [
        ("mathvista", "<answer>12</answer>", MV_INT, True),
        ("mathvista", "\\boxed{-1.5e2}", MV_INT, True),
        ("mathvista", "<answer>twelve</answer>", MV_INT, False),
        ("mathvista", "so it is 12", MV_INT, False),  # no marked answer: the rule's last number is a guess
        ("mathvista", "   ", MV_INT, True),  # nothing to read
        ("mathvista", "<answer>(B)</answer>", MV_MC, True),
        ("mathvista", "<answer>5 cm</answer>", MV_MC, True),
        ("mathvista", "<answer>C</answer>", MV_MC, False),  # not one of the two options
        ("mathvista", "<answer>B. 5 cm</answer>", MV_MC, False),
        ("mathvista", "<answer>yes</answer>", MV_TEXT, True),
        ("mathvista", "<answer></answer>", MV_TEXT, False),
        ("mathvista", "anything", {**MV_INT, "answer": " "}, True),  # empty gold: wrong whatever is read
        ("logicvista", "<answer>A, C</answer>", ANY, True),
        ("logicvista", "<answer>(a) and (c)</answer>", ANY, True),
        ("logicvista", "<answer>3</answer>", ANY, True),
        ("logicvista", "<answer>AC</answer>", ANY, False),  # its rule reads no standalone letter
        ("logicvista", "<answer>a cat and C</answer>", ANY, False),
        ("logicvista", "I choose A", ANY, False),
        ("mathverse", "<answer>2\\sqrt{3}</answer>", ANY, True),
        ("mathverse", "it is two root three", ANY, False),
        ("mathvision", "it is two root three", ANY, True),  # rules only
        ("wemath", "whatever", ANY, True),
        ("mmmu", "whatever", ANY, True),
    ],
)
def test_which_rows_the_rules_read(benchmark, response, item, reads):
    assert rule_reads(benchmark, response, item) is reads


def test_equivalence_and_reply_parsing():
    assert needs_equivalence("3 cm", "3", False) and needs_equivalence("5", "B", False)
    assert not needs_equivalence("(C)", "B", False)  # two option letters: a different one is wrong
    assert not needs_equivalence("3", "3", True) and not needs_equivalence("", "3", False)
    assert not needs_equivalence("3", " ", False)
    assert [parse_extraction(r) for r in ["12", "Answer: (B)\nmore", "'A, C'.", "NONE", "", "  \n x \n"]] == [
        "12", "(B)", "A, C", "", "", "x"]  # fmt: skip
    assert [parse_equivalence(r) for r in ["1", "0", " Yes, same", "false", "7", ""]] == [
        True, False, True, False, None, None]  # fmt: skip


def test_clear_judgements_restores_rule_verdicts():
    rows = [{"official": True, "judge": {"rule_official": False}}, {"official": False}]
    assert clear_judgements(rows) and rows == [{"official": False}, {"official": False}]
    assert not clear_judgements(rows)


# --------------------------------------------------------------------------- unreachable judge (fast)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stopped_judge_is_a_one_line_error_naming_the_url(mathvista, tmp_path, monkeypatch, capsys):
    from observe_r1.cli import main

    bench, responses = mathvista
    url = f"http://127.0.0.1:{_free_port()}/v1"  # a port nothing listens on: a stopped server
    argv = ["observe-r1", "eval", "--benchmark", str(bench), "--responses", str(responses), "--out",
            str(tmp_path / "out"), "--judge-url", url, "--judge-model", "m"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: judge at " + url + " is unreachable"), err
    assert "Traceback" not in err


def test_judge_flags_come_together(mathvista, tmp_path):
    from typer.testing import CliRunner

    from observe_r1.cli import app

    bench, responses = mathvista
    args = ["eval", "--benchmark", str(bench), "--responses", str(responses), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--judge-url", "http://127.0.0.1:1/v1"])
    assert result.exit_code == 2 and "--judge-url and --judge-model together" in result.output


# ------------------------------------------------------------------------------ fault injection (fast)
class _FaultyHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in chat endpoint: a question holding FLAKY fails with 500 once, ALWAYS_FAIL always, SLOW answers
    after the client's timeout; everything else is answered ``1``."""

    seen: dict = {}
    posts: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        self.posts.append(text)
        if self.headers.get("Authorization") == "Bearer bad-key":
            return self._send(401, {"error": {"message": "invalid key", "type": "auth"}})
        if body["model"] == "missing":
            return self._send(404, {"error": {"message": "model 'missing' not found", "type": "not_found"}})
        count = self.seen[text] = self.seen.get(text, 0) + 1
        if "ALWAYS_FAIL" in text or ("FLAKY" in text and count == 1):
            return self._send(500, {"error": {"message": "injected", "type": "server_error"}})
        if "SLOW" in text:
            time.sleep(1.0)
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": REPLY}}]})  # fmt: skip

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def faulty_server():
    _FaultyHandler.seen, _FaultyHandler.posts = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FaultyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_retries_timeouts_and_fallback_to_the_rule(mathvista, tmp_path, faulty_server):
    bench, _ = mathvista
    responses = _write_responses(tmp_path / "faulty.jsonl", {
        "1": ["one apple, FLAKY"],  # 500 once, then answered: judged right
        "3": ["the second one, ALWAYS_FAIL"],  # 500 on every try: the rule reading stays (wrong)
        "4": ["five, SLOW"],  # past the timeout on every try: the rule reading stays
        "2": ["<answer>3</answer>"],  # read by the rule
    })  # fmt: skip
    judge = Judge(faulty_server, "stand-in", concurrency=3, timeout=0.3, retries=2, backoff=0.01, rows="unreadable")
    out = tmp_path / "out"
    results = score_responses(bench, responses, out, judge=judge)
    block = results["judge"]
    assert (block["requests"], block["cached"], block["failures"], block["failed_requests"]) == (3, 0, 2, 2)
    assert block["retries"] == 1 + 2 + 2 and block["rows_judged"] == 1 and block["rows_asked"] == 3
    rows = {r["id"]: r for r in read_jsonl(out / "predictions.jsonl")}
    assert rows["1"]["official"] is True and rows["1"]["judge"]["extracted"] == REPLY
    for failed in ("3", "4"):
        assert rows[failed]["official"] is rows[failed]["judge"]["rule_official"] is False
        assert rows[failed]["judge"]["failed"]
    assert results["official"]["sample_0"]["accuracy"] == 0.5
    # only what the judge answered is cached: a rerun asks the failed questions again, nothing else
    assert len(read_jsonl(out / CACHE_FILE)) == 1
    again = score_responses(
        bench, responses, out, judge=Judge(faulty_server, "stand-in", timeout=0.3, retries=0, rows="unreadable")
    )
    assert (again["judge"]["requests"], again["judge"]["cached"], again["judge"]["failures"]) == (2, 1, 2)
    # without the judge, every verdict is the rule's again
    plain = score_responses(bench, responses, out)
    assert "judge" not in plain and plain["official"]["sample_0"]["accuracy"] == 0.25
    assert not any("judge" in r for r in read_jsonl(out / "predictions.jsonl"))


def test_a_refused_model_or_key_is_one_error_naming_the_url(faulty_server):
    with pytest.raises(JudgeError, match=f"judge at {faulty_server} answered HTTP 404 .*'missing'"):
        Judge(faulty_server, "missing").check()
    with pytest.raises(JudgeError, match=r"refused the API key \(HTTP 401\); put it in \$MY_KEY"):
        Judge(faulty_server, "m", api_key="bad-key", key_env="MY_KEY").check()
    Judge(faulty_server, "m").check()  # and a good one passes


def test_a_benchmark_read_by_rules_only_asks_nothing(tmp_path, faulty_server):
    bench = tmp_path / "mathv.jsonl"
    write_jsonl(bench, [{"id": "1", "question": "Area?", "options": [], "answer": "4", "image": "x.png",
                         "subject": "metric geometry", "level": 1}])  # fmt: skip
    responses = _write_responses(tmp_path / "r.jsonl", {"1": ["four, I think"]})
    results = score_responses(bench, responses, tmp_path / "out", judge=Judge(faulty_server, "m"))
    assert results["judge"]["used_for"] == [] and "rules only" in results["judge"]["note"]
    assert _FaultyHandler.posts == [] and "judge" not in results["official"]


# ------------------------------------------------------------------------------------ a real server
def _constant_reply_lm(out: Path) -> Path:
    """A 2-layer Qwen2 LM (hidden 64) with our BPE tokenizer and chat template whose greedy reply is ``1``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from observe_r1.models import build_tokenizer

    tokenizer = build_tokenizer()
    one, end = tokenizer.convert_tokens_to_ids(REPLY), tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
                         tie_word_embeddings=False, eos_token_id=end, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:  # each layer adds nothing to the residual stream
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = model.model.embed_tokens.weight
        embed.zero_()
        embed[:, 0] = 1.0  # every token on axis 0 ...
        embed[one] = 0.0
        embed[one, 1] = 1.0  # ... but "1", on axis 1
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[one, 0] = 1.0  # axis 0 -> "1"
        model.lm_head.weight[end, 1] = 1.0  # axis 1 -> end of turn
    model.generation_config = GenerationConfig(eos_token_id=end, pad_token_id=tokenizer.pad_token_id,
                                               do_sample=False)  # fmt: skip
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _posts(log: Path) -> int:
    """Chat completions the server answered, from its access log."""
    return log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


@pytest.fixture(scope="session")
def judge_server(tmp_path_factory):
    """`transformers serve` on 127.0.0.1 with the constant-reply LM: started once, stopped at the end."""
    exe = Path(sys.executable).with_name("transformers")
    command = str(exe) if exe.exists() else shutil.which("transformers")
    if command is None:
        pytest.fail("`transformers` CLI not found: pip install -e '.[dev]' (transformers[serving])")
    model_dir = _constant_reply_lm(tmp_path_factory.mktemp("judge_lm"))
    port, log = _free_port(), model_dir.parent / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as sink:
        process = subprocess.Popen([command, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                                    "--device", "cpu"], stdout=sink, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/v1", model=str(model_dir), log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_posts(log: Path, count: int, wait: float = 5.0) -> int:
    """The access log's count once it reaches ``count`` or ``wait`` seconds passed (log lines may trail the
    replies by a moment)."""
    deadline = time.monotonic() + wait
    while _posts(log) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return _posts(log)


@pytest.mark.slow
def test_real_judge_reads_mathvista_answers_the_rules_cannot(mathvista, tmp_path, judge_server):
    bench, responses = mathvista
    rules = score_responses(bench, responses, tmp_path / "rules")
    assert rules["official"]["sample_0"]["accuracy"] == 0.25  # only <answer>3</answer> reads right

    out, posts_before = tmp_path / "judged", _posts(judge_server.log)
    results = score_responses(
        bench, responses, out, judge=Judge(judge_server.url, judge_server.model, rows="unreadable")
    )
    block = results["judge"]
    assert (block["requests"], block["cached"], block["failures"]) == (3, 0, 0)
    assert (block["url"], block["model"], block["prompt_version"]) == (judge_server.url, judge_server.model, "v1")
    # the three questions (and the probe before them) reached the server
    assert _wait_for_posts(judge_server.log, posts_before + 4) == posts_before + 4
    rows = {(r["id"], r["sample"]): r for r in read_jsonl(out / "predictions.jsonl")}
    assert sorted(k for k, r in rows.items() if "judge" in r) == JUDGED_ROWS
    assert all(rows[k]["judge"]["extracted"] == REPLY for k in JUDGED_ROWS)
    # "1" is item 1's integer, item 3's option B by MathVista's edit distance, and not item 4's 5
    assert [rows[k]["official"] for k in JUDGED_ROWS] == [True, True, False]
    assert [rows[k]["judge"]["rule_official"] for k in JUDGED_ROWS] == [False, False, False]
    assert block["changed_verdicts"] == 2 and block["rows_judged"] == 3
    assert block["used_for"] == ["official.sample_0", "official.mean_over_samples"]
    assert results["official"]["sample_0"]["accuracy"] == 0.75
    assert results["official"]["mean_over_samples"]["accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert "3 of 8 responses judged" in results["official"]["judge"]
    summary = (out / "summary.md").read_text()
    assert "Read with an LLM judge" in summary and judge_server.model in summary
    assert rules["accuracy"] == results["accuracy"]  # observe-r1's reward is not the judge's business
    cache = read_jsonl(out / CACHE_FILE)
    assert sorted((c["id"], c["sample"]) for c in cache) == JUDGED_ROWS and {c["reply"] for c in cache} == {REPLY}

    # a re-score asks nothing: every answer comes from the cache, the verdicts are the same
    again = score_responses(
        bench, responses, out, judge=Judge(judge_server.url, judge_server.model, rows="unreadable")
    )
    assert (again["judge"]["requests"], again["judge"]["cached"]) == (0, 3)
    assert again["official"] == results["official"]
    assert _wait_for_posts(judge_server.log, posts_before + 5, wait=1.0) == posts_before + 4  # not even a probe


class ScriptedModel:
    def __init__(self, responses):
        self.responses = responses

    def generate(self, records, *, n=1, temperature=0.0, system_prompt=None):
        return [[(self.responses[r["problem"].split("\n")[0]][j], 5) for j in range(n)] for r in records]


def _mathverse_bench(tmp_path, third_gold: str):
    """Three MathVerse rows (Q1 gold 5, Q2 gold B, Q3 gold ``third_gold``) sharing one image, written to a file."""
    bench = tmp_path / "mathverse.jsonl"
    write_jsonl(bench, [
        {"sample_index": "1", "problem_index": "1", "problem_version": "Text Lite", "question": "Q1", "answer": "5",
         "image": "x.png"},
        {"sample_index": "2", "problem_index": "2", "problem_version": "Text Lite", "question": "Q2",
         "answer": "B", "image": "x.png"},
        {"sample_index": "3", "problem_index": "3", "problem_version": "Vision Only", "question": "Q3",
         "answer": third_gold, "image": "x.png"},
    ])  # fmt: skip
    (tmp_path / "x.png").write_bytes(_png())
    return bench


@pytest.mark.slow
def test_real_judge_with_generation_mathverse_two_steps(tmp_path, judge_server):
    bench = _mathverse_bench(tmp_path, third_gold="2\\sqrt{3}")
    model = ScriptedModel({
        "Q1": ["it is five", "<answer>5</answer>"],  # extract (1), the reward rejects 1, equivalence (1): right
        "Q2": ["<answer>C</answer>", "<answer>B</answer>"],  # letters: settled by the rule, never asked
        "Q3": ["<answer>3.46</answer>", "<answer>2\\sqrt{3}</answer>"],  # the reward rejects: equivalence (1)
    })  # fmt: skip
    out = tmp_path / "out"
    results = evaluate(
        model, bench, out, samples=2, judge=Judge(judge_server.url, judge_server.model, rows="unreadable")
    )
    block = results["judge"]
    assert (block["requests"], block["failures"], block["rows_asked"]) == (3, 0, 2)
    rows = {(r["id"], r["sample"]): r for r in read_jsonl(out / "predictions.jsonl")}
    assert rows[("1", 0)]["judge"] == {"rule_official": False, "asked": ["extract", "equivalence"],
                                       "extracted": REPLY, "equivalent": True}  # fmt: skip
    assert rows[("3", 0)]["judge"]["asked"] == ["equivalence"] and rows[("3", 0)]["official"] is True
    assert rows[("2", 0)]["official"] is False and "judge" not in rows[("2", 0)]
    assert results["official"]["sample_0"]["accuracy"] == pytest.approx(2 / 3)
    # a resumed eval generates nothing and asks nothing
    again = evaluate(
        ScriptedModel({}), bench, out, samples=2, judge=Judge(judge_server.url, judge_server.model, rows="unreadable")
    )
    assert (again["judge"]["requests"], again["judge"]["cached"]) == (0, 3)
    assert again["official"] == results["official"]


@pytest.mark.slow
def test_real_judge_logicvista_letters(tmp_path, judge_server):
    bench = tmp_path / "logicvista.json"
    rows = {
        "a": {"question": "Which? 1. x 2. y", "answer": "1", "imagename": "x.png", "skill": "inductive"},
        "b": {"question": "Which? A. x B. y C. z", "answer": "A, C", "imagename": "x.png", "skill": "spatial"},
    }
    bench.write_text(json.dumps(rows))
    responses = _write_responses(tmp_path / "r.jsonl", {"a": ["the first one"], "b": ["<answer>A, C</answer>"]})
    results = score_responses(
        bench, responses, tmp_path / "out", judge=Judge(judge_server.url, judge_server.model, rows="unreadable")
    )
    assert (results["judge"]["requests"], results["judge"]["rows_judged"]) == (1, 1)
    assert results["judge"]["used_for"] == ["official.sample_0"]
    assert results["official"]["sample_0"]["accuracy"] == 1.0  # the judge's "1" is option 1


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (56, 56), "blue").save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------- the authors' prompts, read from a checkout
# Fixture checkouts laid out like the benchmarks' repositories, holding prompt text we wrote for these tests. Each
# file also holds a statement that would leave a mark if the file were run: reading it must not run it.
OUR_MATHVISTA_DEMO = """
A made-up demo for our tests: copy the final answer of the response.

Question: How many dots?

Response: There are four dots, so 4.

Extracted answer: 4
"""
OUR_MATHVERSE_EXTRACT = "\nA made-up demo: copy the answer.\n\nModel response: 'so x = 2'\nExtracted Answer: 2\n"
OUR_MATHVERSE_SCORE = "\nMade-up scoring text.\nQuestion: {question}\nGold: {gt}\nAnswer: {extraction}\nJudgement:\n"
RAN = "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('the file was run')\n"


def _checkout(root: Path, relative: str, body: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RAN + body)
    return root


def _mathvista_checkout(root: Path, demo: str = OUR_MATHVISTA_DEMO) -> Path:
    return _checkout(root, "evaluation/prompts/ext_ans.py", f"demo_prompt = {demo!r}\n")


def _mathverse_checkout(root: Path, score: str = OUR_MATHVERSE_SCORE) -> Path:
    body = f"demo_prompt_extract = {OUR_MATHVERSE_EXTRACT!r}\n\ndemo_prompt_score = {score!r}\n"
    return _checkout(root, "evaluation/prompts.py", body)


def test_official_prompts_are_read_without_running_the_file(tmp_path):
    import hashlib

    from observe_r1.judge_prompts import OfficialPrompts

    vista = OfficialPrompts("mathvista", _mathvista_checkout(tmp_path / "MathVista"))
    verse = OfficialPrompts("mathverse", _mathverse_checkout(tmp_path / "MathVerse"))
    assert vista.texts == {"demo_prompt": OUR_MATHVISTA_DEMO}
    assert verse.texts == {"demo_prompt_extract": OUR_MATHVERSE_EXTRACT, "demo_prompt_score": OUR_MATHVERSE_SCORE}
    assert not list(tmp_path.rglob("RAN"))  # parsed, never run
    assert vista.sha256 == hashlib.sha256(json.dumps({"demo_prompt": OUR_MATHVISTA_DEMO}).encode()).hexdigest()
    assert vista.version == f"official-mathvista-{vista.sha256[:12]}"
    # other text, other hash and version (so other cache keys)
    other = OfficialPrompts("mathvista", _mathvista_checkout(tmp_path / "other", OUR_MATHVISTA_DEMO + "more\n"))
    assert other.sha256 != vista.sha256 and other.version != vista.version
    # the requests, as the authors' scorers build them
    item = {"problem": "Question 1?", "answer": "5"}
    assert vista.extraction_messages("mathvista", item, "It is 5.") == [{"role": "user", "content": (
        OUR_MATHVISTA_DEMO.strip() + "\n\nQuestion 1?\n\nIt is 5.\n\nExtracted answer: ")}]  # fmt: skip
    assert verse.extraction_messages("mathverse", item, "It is 5.") == [{"role": "user", "content": (
        OUR_MATHVERSE_EXTRACT.strip() + "\n\nModel response: 'It is 5.'\nExtracted Answer: ")}]  # fmt: skip
    assert verse.equivalence_messages(item, "5 cm") == [{"role": "user", "content": (
        "Made-up scoring text.\nQuestion: Question 1?\nGold: 5\nAnswer: 5 cm\nJudgement:")}]  # fmt: skip
    # replies, read as the authors read them
    assert [verse.parse_extraction(r) for r in ["Extracted Answer: 5 cm ", " 5\n"]] == ["5 cm", "5"]
    assert vista.parse_extraction(" The answer is 5\n") == "The answer is 5"
    assert [verse.parse_equivalence(r) for r in ["1", "Judgement: 0", " 1\n", "yes", "10"]] == [
        True, False, True, None, None]  # fmt: skip


@pytest.mark.parametrize(
    ("benchmark", "body", "complaint"),
    [
        ("mathvista", None, "not found"),  # no prompt file in the checkout
        ("mathvista", "demo_prompt = '''unclosed\n", "not valid Python (line"),
        ("mathvista", "demo_prompt = open('demo.txt').read()\n", "no non-empty string literal to demo_prompt"),
        ("mathvista", "prompt = 'wrong name'\n", "no non-empty string literal to demo_prompt"),
        ("mathvista", "demo_prompt = '  '\n", "no non-empty string literal to demo_prompt"),
        ("mathvista", "demo_prompt = ['a list', 'of demos']\n", "no non-empty string literal to demo_prompt"),
        ("mathverse", "demo_prompt_score = 'Q {question} {gt} {extraction}'\n", "to demo_prompt_extract"),
        ("mathverse", "demo_prompt_extract = 'x'\ndemo_prompt_score = 'Q {question} A {extraction}'\n",
         "must take the fields {question}, {gt} and {extraction}; it takes ['extraction', 'question']"),
        ("mathverse", "demo_prompt_extract = 'x'\ndemo_prompt_score = '{question} {gt} {extraction} {answer}'\n",
         "it takes ['answer', 'extraction', 'gt', 'question']"),
        ("mathverse", "demo_prompt_extract = 'x'\ndemo_prompt_score = '{question} {gt} {extraction'\n",
         "not a str.format template"),
    ],
)  # fmt: skip
def test_a_missing_or_malformed_prompt_file_is_one_line_naming_it(tmp_path, benchmark, body, complaint):
    from observe_r1.judge_prompts import OFFICIAL_FILES, OfficialPrompts, PromptFileError

    relative = OFFICIAL_FILES[benchmark][0]
    if body is not None:
        _checkout(tmp_path, relative, body)
    with pytest.raises(PromptFileError) as error:
        OfficialPrompts(benchmark, tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / relative}: ") and "\n" not in message, message
    assert complaint in message, message
    assert not list(tmp_path.rglob("RAN"))


def test_official_prompts_flags_fail_in_one_line(mathvista, tmp_path, monkeypatch, capsys):
    from observe_r1.cli import main

    bench, responses = mathvista
    url = f"http://127.0.0.1:{_free_port()}/v1"  # never reached: the prompt file is read first
    base = ["observe-r1", "eval", "--benchmark", str(bench), "--responses", str(responses), "--out",
            str(tmp_path / "out"), "--judge-url", url, "--judge-model", "m",
            "--judge-prompts", "official"]  # fmt: skip
    wrong_repo = _mathverse_checkout(tmp_path / "MathVerse")  # a checkout of the other benchmark
    expected = {
        "--benchmark-repo PATH": [],
        f"{wrong_repo / 'evaluation/prompts/ext_ans.py'}: not found": ["--benchmark-repo", str(wrong_repo)],
    }
    for message, extra in expected.items():
        monkeypatch.setattr(sys, "argv", base + extra)
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err, err
        assert "Traceback" not in err and "unreachable" not in err
    with pytest.raises(ConfigError, match="authors' prompts of mathvista and mathverse only, not logicvista"):
        Judge(url, "m", prompts="official", benchmark_repo=wrong_repo).prompts_for("logicvista")
    with pytest.raises(JudgeError, match="--judge-rows is all or unreadable .* got 'some'"):
        Judge(url, "m", rows="some")
    with pytest.raises(JudgeError, match="--benchmark-repo only with it"):
        Judge(url, "m", benchmark_repo=wrong_repo)  # a checkout, but our prompts
    assert Judge(url, "m").rows == "all"  # the default: every response, as the authors' scorers ask


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Forwards each POST to the real judge server and keeps its JSON body (the probe aside)."""

    target = ""
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        data = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(data)
        if body["messages"] != [{"role": "user", "content": "Reply with OK."}]:
            self.bodies.append(body)
        forward = urllib.request.Request(self.target + self.path, data=data,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(forward, timeout=60) as reply:
            payload, status = reply.read(), reply.status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorded_judge(judge_server):
    """The real judge behind a recording proxy: what reaches the server is in ``.bodies``."""
    _Recorder.target, _Recorder.bodies = judge_server.url.removesuffix("/v1"), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}/v1", model=judge_server.model,
                          bodies=_Recorder.bodies)  # fmt: skip
    server.shutdown()
    server.server_close()


def _contents(bodies: list) -> list[str]:
    assert all(len(b["messages"]) == 1 and b["messages"][0]["role"] == "user" for b in bodies)  # no system turn
    return sorted(b["messages"][0]["content"] for b in bodies)


OFFICIAL_RESPONSES = {
    "1": ["I count one apple.", "<answer>1</answer>"],  # asked: the judge's 1 is right (the rule misses row 0)
    "2": ["<answer>3</answer>", "3"],  # row 0 asked: the judge's 1 is wrong; row 1: int() reads it (right), unasked
    "3": ["<answer>the second one</answer>", "1"],  # row 0 asked: 1 is option B (right); row 1 is option B's
    # text: read as it is (right), where the rule reads no letter (wrong)
    "4": ["five apples", ""],  # row 0 asked: 1 is wrong, as the rule says; an empty response is never sent
}
OFFICIAL_ASKED = {("1", 0): True, ("1", 1): True, ("2", 0): False, ("3", 0): True, ("4", 0): False}  # -> verdict


@pytest.mark.slow
def test_real_judge_official_mathvista_every_row(mathvista, tmp_path, recorded_judge):
    from observe_r1.data import load_items

    bench, _ = mathvista
    responses = _write_responses(tmp_path / "r.jsonl", OFFICIAL_RESPONSES)
    repo = _mathvista_checkout(tmp_path / "MathVista")
    out = tmp_path / "out"

    def judge(**options):
        return Judge(recorded_judge.url, recorded_judge.model, **options)

    results = score_responses(bench, responses, out, judge=judge(prompts="official", benchmark_repo=repo))
    block = results["judge"]
    assert (block["requests"], block["cached"], block["failures"], block["rows_asked"]) == (5, 0, 0, 5)
    assert (block["prompts"], block["judge_rows"], block["prompt_file"]) == (
        "official", "all", str(repo / "evaluation/prompts/ext_ans.py"))  # fmt: skip
    assert block["prompt_version"] == "official-mathvista-" + block["prompt_sha256"][:12]
    # what reached the server: the authors' request format, one user message, temperature 0, 256 new tokens
    problems = {it["id"]: it["problem"] for it in load_items(bench, images="ignore")[0]}
    assert _contents(recorded_judge.bodies) == sorted(
        f"{OUR_MATHVISTA_DEMO.strip()}\n\n{problems[i]}\n\n{OFFICIAL_RESPONSES[i][j]}\n\nExtracted answer: "
        for i, j in OFFICIAL_ASKED)  # fmt: skip
    assert {(b["temperature"], b["max_tokens"]) for b in recorded_judge.bodies} == {(0.0, 256)}
    rows = {(r["id"], r["sample"]): r for r in read_jsonl(out / "predictions.jsonl")}
    as_is = {("2", 1): ("3", True), ("3", 1): ("1", True)}  # what the authors' scorer reads without asking
    assert {k for k, r in rows.items() if "judge" in r} == set(OFFICIAL_ASKED) | set(as_is)
    assert {k: rows[k]["official"] for k in OFFICIAL_ASKED} == OFFICIAL_ASKED
    assert {k: (rows[k]["judge"]["extracted"], rows[k]["official"]) for k in as_is} == as_is
    assert all(rows[k]["judge"]["asked"] == [] for k in as_is)
    # rule figure, judge figure, agreement; the rows that differ beside results.json
    agreement = block["agreement"]
    assert (agreement["rule"], agreement["judge"]) == ({"accuracy": 0.25}, {"accuracy": 0.5})
    assert (agreement["rows_read"], agreement["rows_differ"], agreement["agreement"]) == (7, 4, pytest.approx(3 / 7))
    differ = read_jsonl(out / "judge_disagreements.jsonl")
    assert [(d["id"], d["sample"], d["rule_official"], d["judge_official"]) for d in differ] == [
        ("1", 0, False, True), ("2", 0, True, False), ("3", 0, False, True), ("3", 1, False, True)]  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert "rule figure accuracy 0.2500, judge figure 0.5000; the two readings agree on 3 of the 7" in summary
    assert "official prompts" in summary and results["official"]["sample_0"]["accuracy"] == 0.5

    # only what the rules can't read: the questions asked before come from the cache (same prompts, same keys)
    recorded_judge.bodies.clear()
    partial = score_responses(bench, responses, out, judge=judge(prompts="official", benchmark_repo=repo,
                                                                 rows="unreadable"))  # fmt: skip
    assert (partial["judge"]["requests"], partial["judge"]["cached"]) == (2, 3)  # "3" and "1" have no marked answer
    assert len(recorded_judge.bodies) == 2
    # our prompts are other questions: nothing comes from the cache
    ours = score_responses(bench, responses, out, judge=judge())
    assert (ours["judge"]["requests"], ours["judge"]["cached"], ours["judge"]["prompts"]) == (5, 0, "observe-r1")
    assert ours["judge"]["prompt_sha256"] != block["prompt_sha256"]
    # without a judge the disagreements go too
    score_responses(bench, responses, out)
    assert not (out / "judge_disagreements.jsonl").exists()


@pytest.mark.slow
def test_real_judge_official_mathverse_extracts_then_scores(tmp_path, recorded_judge):
    bench = _mathverse_bench(tmp_path, third_gold="2")
    responses = _write_responses(tmp_path / "r.jsonl", {"1": ["it is five"], "2": ["<answer>C</answer>"], "3": [""]})
    repo = _mathverse_checkout(tmp_path / "MathVerse")
    judge = Judge(recorded_judge.url, recorded_judge.model, prompts="official", benchmark_repo=repo)
    results = score_responses(bench, responses, tmp_path / "out", judge=judge)
    assert (results["judge"]["requests"], results["judge"]["rows_judged"]) == (4, 2)  # two steps, two rows
    extract = [f"{OUR_MATHVERSE_EXTRACT.strip()}\n\nModel response: '{r}'\nExtracted Answer: "
               for r in ("it is five", "<answer>C</answer>")]  # fmt: skip
    score = [OUR_MATHVERSE_SCORE.strip().format(question=q, gt=g, extraction=REPLY)
             for q, g in (("Q1", "5"), ("Q2", "B"))]  # fmt: skip
    assert _contents(recorded_judge.bodies) == sorted(extract + score)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "predictions.jsonl")}
    # the judge's score decides, even against two different letters; the empty response keeps the rule's wrong
    assert [rows[i]["official"] for i in "123"] == [True, True, False]
    assert rows["2"]["judge"] == {"rule_official": False, "asked": ["extract", "equivalence"], "extracted": REPLY,
                                  "equivalent": True}  # fmt: skip
    agreement = results["judge"]["agreement"]
    assert (agreement["rule"]["accuracy"], agreement["judge"]["accuracy"]) == (0.0, pytest.approx(2 / 3))
    assert (agreement["rows_read"], agreement["agreement"]) == (2, 0.0)


@pytest.mark.slow
def test_cli_passes_rows_and_official_prompts_to_the_judge(mathvista, tmp_path, judge_server):
    from typer.testing import CliRunner

    from observe_r1.cli import app

    bench, responses = mathvista
    repo, out = _mathvista_checkout(tmp_path / "MathVista"), tmp_path / "out"
    result = CliRunner().invoke(app, [
        "eval", "--benchmark", str(bench), "--responses", str(responses), "--out", str(out),
        "--judge-url", judge_server.url, "--judge-model", judge_server.model, "--judge-rows", "unreadable",
        "--judge-prompts", "official", "--benchmark-repo", str(repo)])  # fmt: skip
    assert result.exit_code == 0, result.output
    block = json.loads((out / "results.json").read_text())["judge"]
    assert (block["judge_rows"], block["prompts"], block["requests"]) == ("unreadable", "official", len(JUDGED_ROWS))
    assert block["prompt_file"] == str(repo / "evaluation/prompts/ext_ans.py")
    assert "agrees with the rules on 0.333" in result.output  # rows 1 and 3 change, row 4 stays wrong
    assert "answers the rules could not read went to judge" in (out / "summary.md").read_text()
