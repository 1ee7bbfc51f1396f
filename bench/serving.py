"""Generation through a local OpenAI-compatible server against in-process Hugging Face generation (issue #41), on
the tiny model, greedy, the same records through both.

    OMP_NUM_THREADS=1 .venv/bin/python bench/serving.py                 # 32 records, 64 new tokens at most
    .venv/bin/python bench/serving.py --records 64 --new-tokens 128

The server is ``python -m observe_r1.serving MODEL`` (``transformers serve`` with observe-r1's processor and no
response template) in its own process; the client is ``observe_r1.serving.OpenAIGenerator`` at each
``--concurrency``; in-process is ``HFGenerator`` at each ``--batch-size``. Each side gets one warm-up call first
(for the client it also runs the probe), then one timed call over every record. ``requests_per_s``: records (one
response each) per second; ``tokens_per_s``: completion tokens per second (the server's counts; ``HFGenerator``'s
own). Also counts the records whose greedy response is the same text both ways (a batch pads prompts of different
lengths on the left, which can flip a near-tie of the random model's logits; one record at a time pads nothing).
Writes ``OUT/serving.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from generation_engines import records  # bench/: synthetic prompts with images of a few sizes

ROOT = Path(__file__).resolve().parents[1]


def timed(generator, batch: list[dict]) -> tuple[dict, list[str]]:
    """One greedy call over ``batch``: rates and the texts."""
    start = time.perf_counter()
    responses = generator.generate(batch)
    seconds = time.perf_counter() - start
    tokens = sum(n for group in responses for _, n in group)
    figures = {"seconds": round(seconds, 3), "requests_per_s": round(len(batch) / seconds, 2),
               "tokens_per_s": round(tokens / seconds, 1), "completion_tokens": tokens}  # fmt: skip
    return figures, [group[0][0] for group in responses]


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "observe_r1.serving", str(model_dir), "--port", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 16], help="HFGenerator records per call")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    import torch

    from observe_r1.generation import HFGenerator
    from observe_r1.models import build_tiny_model, load_policy, load_processor
    from observe_r1.serving import OpenAIGenerator, ServerOptions

    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    model_dir = build_tiny_model(work / "tiny", size="tiny", seed=0)
    batch, warmup = records(args.records), records(args.records + 2)[-2:]  # warm-up prompts the timed call lacks
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
              "records": args.records, "max_new_tokens": args.new_tokens, "greedy": True}  # fmt: skip

    model, processor = load_policy(model_dir)
    references = {}
    for size in args.batch_size:
        local = HFGenerator(model, processor, batch_size=size, max_new_tokens=args.new_tokens)
        local.generate(warmup)
        report[f"in_process_hf_batch_{size}"], references[size] = timed(local, batch)
    del model, local

    process, url = start_server(model_dir, work / "serve.log")
    try:
        for concurrency in args.concurrency:
            options = ServerOptions(url, str(model_dir), concurrency=concurrency)
            client = OpenAIGenerator(load_processor(model_dir), options, model_name=str(model_dir),
                                     max_new_tokens=args.new_tokens)  # fmt: skip
            client.generate(warmup)  # and the probe
            figures, texts = timed(client, batch)
            figures["same_text_as_in_process"] = {
                f"batch_{size}": sum(a == b for a, b in zip(texts, reference, strict=True))
                for size, reference in references.items()
            }
            report[f"server_concurrency_{concurrency}"] = figures
    finally:
        process.terminate()
        process.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
