"""Peak memory (RSS) of loading, evaluating and training on a large benchmark file, each in a fresh process.

    .venv/bin/python bench/memory.py --benchmark MATH-V/data/test.jsonl [--out bench/results/memory.json]

``--benchmark`` is a file as published, e.g. MATH-V's ``data/test.jsonl`` (3,040 rows; clone
github.com/mathllm/MATH-V so that its ``images/`` folder sits beside ``data/``). Measured with ``/usr/bin/time -v``
(maximum resident set size of the whole process, imports included):

* ``load``: ``load_items`` over every row (images resolved and their headers read, no pixels decoded);
* ``train dataset``: ``load_grpo_dataset`` (the TRL table: image paths, decoded on access);
* ``eval --limit 32``: ``observe-r1 eval`` with the tiny model, 16 new tokens, batches of 8;
* ``train, 1 step``: ``observe-r1 train`` with the tiny model, 2 prompts × 4 samples, 16 new tokens, at the 3B
  recipe's image budget (``max_pixels`` 2,560,000).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in GB, wall seconds) of a command; raises with its output if it fails."""
    start = time.time()
    result = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return kb / 1024**2, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--out", default="bench/results/memory.json")
    args = parser.parse_args()
    benchmark = str(Path(args.benchmark).resolve())
    py = str(BIN / "python")
    rows = sum(1 for line in Path(benchmark).read_text().splitlines() if line.strip())
    results = {"benchmark": Path(benchmark).name, "rows": rows, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny"
        subprocess.run([str(BIN / "observe-r1"), "tiny-model", "--out", str(model)], check=True, capture_output=True)
        runs = {
            "baseline (python + torch + transformers imports)": [py, "-c", "import torch, transformers, observe_r1"],
            "load": [py, "-c", f"from observe_r1.data import load_items; print(len(load_items({benchmark!r})[0]))"],
            "train dataset": [
                py,
                "-c",
                f"from observe_r1.data import load_grpo_dataset; print(load_grpo_dataset({benchmark!r})[0])",
            ],  # fmt: skip
            "eval --limit 32": [
                str(BIN / "observe-r1"),
                "eval",
                "--model",
                str(model),
                "--benchmark",
                benchmark,
                "--out",
                f"{tmp}/eval",
                "--limit",
                "32",
                "--max-new-tokens",
                "16",
                "--batch-size",
                "8",
            ],  # fmt: skip
            "train, 1 step": [
                str(BIN / "observe-r1"),
                "train",
                "--config",
                str(ROOT / "recipes/tiny_cpu.yaml"),
                "--model_name_or_path",
                str(model),
                "--dataset_path",
                benchmark,
                "--output_dir",
                f"{tmp}/run",
                "--max_steps",
                "1",
                "--save_strategy",
                "no",
                "--report_to",
                "none",
                "--max_completion_length",
                "16",
                "--max_pixels",
                "2560000",
            ],  # fmt: skip
        }
        for name, cmd in runs.items():
            gb, seconds = peak_rss(cmd)
            results["runs"][name] = {"peak_rss_gb": round(gb, 3), "wall_s": round(seconds, 1)}
            print(f"{name:50s} peak RSS {gb:6.2f} GB   {seconds:6.1f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
