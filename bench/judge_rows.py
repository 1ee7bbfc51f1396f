"""What ``--judge-rows all`` costs against ``unreadable``, and how far the rule and judge readings agree, on
templated MathVista responses scored through ``observe-r1 eval --responses`` with a real judge server.

    OMP_NUM_THREADS=1 .venv/bin/python bench/judge_rows.py \\
        --benchmark ../shared/benchmarks/mathvista/full/testmini.json [--benchmark-repo MathVista] \\
        [--items 1000] [--out bench/results/judge_rows.json]

Responses: ``--items`` problems of MathVista testmini (seeded sample, no image opened), one response each in one
of six templates (tagged answer, ``\\boxed{}``, "the answer is X." prose, prose with other numbers after the
answer, a bare answer, a tagged sentence), answering the gold or a wrong answer (40 %); for multiple choice the
letter or the option's text. Two mixes of templates: ``prose-like`` (all six alike: a model that does not use our
tags) and ``tagged-like`` (85 % tagged: a model trained with observe-r1's format). Two judges:

- ``tiny``: the constant-reply Qwen2 LM of ``tests/test_judge.py`` (2 layers, hidden 64, replies ``1``) served by
  ``transformers serve`` on this machine: real HTTP and real generation, so its request counts and wall times are
  what the modes cost per request on a small judge; its verdicts mean nothing.
- ``reader``: a stand-in HTTP server that replies with the answer planted in the response it is shown, so
  verdicts are those of a judge that reads perfectly: its agreement figures say what the modes read differently.

Each (judge, prompts, rows) run starts from an empty eval folder (no cache). ``official`` prompts are the
authors' ``evaluation/prompts/ext_ans.py`` from ``--benchmark-repo`` (a checkout of lupantech/MathVista, read at
run time and never stored); without it, a stand-in prompt file of our own with a demo of the same length class.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from observe_r1.data import load_items
from observe_r1.eval import score_responses
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.judge import Judge

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = {
    "tagged": "<observe>The figure is read.</observe><think>Working through it.</think><answer>{a}</answer>",
    "boxed": "Reading the figure carefully, the result is \\boxed{{{a}}}.",
    "prose": "Counting what the figure shows, the answer is {a}.",
    "prose, numbers after": "The answer is {a}; I checked it against the 2 labels and the 10 grid lines.",
    "bare": "{a}",
    "tagged sentence": "<think>Step by step.</think><answer>The answer is {a}</answer>",
}


def planted_answer(item: dict, right: bool, rng: random.Random) -> str:
    """The answer a response gives: the gold or a wrong one, for multiple choice as a letter or the option's text."""
    meta, choices = item["meta"], [str(c) for c in item["choices"]]
    if meta["question_type"] == "multi_choice" and choices:
        index = "ABCDEFGHIJ".index(item["answer"])
        if not right:
            index = rng.choice([i for i in range(len(choices)) if i != index] or [index])
        return "ABCDEFGHIJ"[index] if rng.random() < 0.5 else choices[index]
    gold = item["answer"]
    if right:
        return gold
    if meta["answer_type"] == "integer":
        return str(int(float(gold)) + rng.choice([-2, -1, 1, 3]))
    if meta["answer_type"] == "float":
        places = item.get("precision") or 0
        return f"{float(gold) + rng.choice([-1, 1]) * 10**-places * rng.randint(1, 9):.{places}f}"
    return "[0, 0]" if meta["answer_type"] == "list" else "none of them"


# how often each template is drawn: a model answering in prose, and one trained with observe-r1's tags
MIXES = {
    "prose-like": dict.fromkeys(TEMPLATES, 1.0),
    "tagged-like": {"tagged": 0.85, "boxed": 0.05, "prose": 0.05, "prose, numbers after": 0.05},
}


def responses(items: list[dict], mix: dict, rng: random.Random) -> tuple[list[dict], dict]:
    """One templated response per item, and {(problem, response): planted answer} for the reader."""
    lines, planted = [], {}
    for item in items:
        right = rng.random() >= 0.4
        answer = planted_answer(item, right, rng)
        template = rng.choices(list(mix), weights=list(mix.values()))[0]
        text = TEMPLATES[template].format(a=answer)
        lines.append({"id": item["id"], "response": text, "template": template, "planted_right": right})
        planted[(item["problem"], text)] = answer
    return lines, planted


# ------------------------------------------------------------------------------------------------ judges
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reader_server(planted: dict) -> tuple[http.server.HTTPServer, str]:
    """A judge that replies with the answer planted in the response its request shows: the (problem, response)
    pair whose problem and response stand next to each other in the request, as both prompt sets lay them out."""
    by_response: dict[str, list] = {}
    for (problem, text), answer in planted.items():
        by_response.setdefault(text, []).append((problem, answer))

    def read(content: str) -> str:
        for text, pairs in by_response.items():
            if text in content:
                for problem, answer in pairs:
                    # official: problem, blank line, response; ours: "Question:", problem, "Response:", response
                    if f"{problem}\n\n{text}\n\n" in content or f"{problem}\n\nResponse:\n{text}\n\n" in content:
                        return answer
        return "OK"  # the probe

    class Reader(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = read(body["messages"][-1]["content"])
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}
            data = json.dumps({"id": "r", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [choice]}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reader)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def tiny_server(folder: Path) -> tuple[subprocess.Popen, str, str]:
    """``transformers serve`` of the tests' constant-reply LM; (process, url, model name)."""
    sys.path.insert(0, str(ROOT))
    from tests.test_judge import _constant_reply_lm

    model_dir = _constant_reply_lm(folder / "judge_lm")
    port = _free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                                "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                if reply.status == 200:
                    return process, f"http://127.0.0.1:{port}/v1", str(model_dir)
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"transformers serve did not start: see {folder / 'serve.log'}")
        time.sleep(0.25)


def stand_in_checkout(folder: Path) -> Path:
    """A MathVista-shaped checkout holding a prompt file of our own (a few-shot demo of our own words)."""
    demos = [
        f"Question: Example {i}?\n\nResponse: After looking, it is {i}.\n\nExtracted answer: {i}" for i in range(8)
    ]
    path = folder / "MathVista" / "evaluation" / "prompts" / "ext_ans.py"
    path.parent.mkdir(parents=True)
    text = "Copy the final answer of the response.\n\n" + "\n\n".join(demos)
    path.write_text(f"demo_prompt = {text!r}\n")
    return folder / "MathVista"


# ------------------------------------------------------------------------------------------------ runs
def run(benchmark: Path, responses_file: Path, out: Path, url: str, model: str, **options) -> dict:
    judge = Judge(url, model, concurrency=4, timeout=120, **options)
    start = time.perf_counter()
    results = score_responses(benchmark, responses_file, out, judge=judge)
    wall = time.perf_counter() - start
    block = results["judge"]
    verdicts = {(r["id"], r["sample"]): r["official"] for r in read_jsonl(out / "predictions.jsonl")}
    return {"wall_s": round(wall, 2), "requests": block["requests"], "rows": block["rows"],
            "rows_asked": block["rows_asked"], "failures": block["failures"],
            "requests_per_s": round(block["requests"] / wall, 1), "prompt_version": block["prompt_version"],
            "prompt_sha256": block["prompt_sha256"], "rule_accuracy": block["agreement"]["rule"]["accuracy"],
            "judge_accuracy": block["agreement"]["judge"]["accuracy"], "rows_read": block["agreement"]["rows_read"],
            "rows_differ": block["agreement"]["rows_differ"], "agreement": block["agreement"]["agreement"],
            "_verdicts": verdicts}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--benchmark", type=Path, default=ROOT.parent / "shared/benchmarks/mathvista/full/testmini.json"
    )
    parser.add_argument("--benchmark-repo", type=Path, help="a checkout of lupantech/MathVista (official prompts)")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/judge_rows.json")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    items = rng.sample(load_items(args.benchmark, images="ignore")[0], args.items)
    folder = Path(tempfile.mkdtemp(prefix="judge_rows_"))
    benchmark = folder / "testmini.json"  # the sampled rows, as published
    rows = json.loads(args.benchmark.read_text())
    benchmark.write_text(json.dumps({it["id"]: rows[it["id"]] for it in items}))
    repo = args.benchmark_repo or stand_in_checkout(folder)
    process, tiny_url, tiny_model = tiny_server(folder)
    runs, mixes = [], {}
    try:
        for mix, weights in MIXES.items():
            lines, planted = responses(items, weights, rng)
            answers = folder / f"{mix}.jsonl"
            write_jsonl(answers, lines)
            start = time.perf_counter()
            score_responses(benchmark, answers, folder / f"{mix}-rules")
            counts = {t: sum(line["template"] == t for line in lines) for t in TEMPLATES}
            mixes[mix] = {"responses_by_template": counts, "rules_only_wall_s": round(time.perf_counter() - start, 2),
                          "planted_right": sum(line["planted_right"] for line in lines) / len(lines)}  # fmt: skip
            reader, reader_url = reader_server(planted)
            for judge, url, model in (("tiny", tiny_url, tiny_model), ("reader", reader_url, "reader")):
                for prompts in ("observe-r1", "official"):
                    by_mode = {}
                    for mode in ("all", "unreadable"):
                        extra = {"benchmark_repo": repo} if prompts == "official" else {}
                        out = folder / f"{mix}-{judge}-{prompts}-{mode}"
                        by_mode[mode] = run(benchmark, answers, out, url, model, rows=mode, prompts=prompts, **extra)
                        print(mix, judge, prompts, mode, {k: v for k, v in by_mode[mode].items() if k != "_verdicts"})
                    full = by_mode["all"].pop("_verdicts")
                    part = by_mode["unreadable"].pop("_verdicts")
                    for mode, result in by_mode.items():
                        runs.append(
                            {"responses": mix, "judge": judge, "prompts": prompts, "judge_rows": mode, **result}
                        )
                    runs[-1]["verdicts_equal_to_all"] = round(sum(full[k] == part[k] for k in full) / len(full), 4)
            reader.shutdown()
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {"benchmark": str(args.benchmark), "items": args.items, "seed": args.seed, "mixes": mixes,
              "official_prompts": "authors' checkout" if args.benchmark_repo else "stand-in text of our own",
              "cpu": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": runs}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
