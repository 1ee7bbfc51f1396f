"""Scoring speed with pathological answers mixed in (issue #31): ``observe-r1 eval --responses`` on the full MATH-V
test file, once with clean responses and once with 1 % of them replaced by answers that hang or blow up a parser
(towers of powers, huge factorials, deep nesting, 100 kB strings, Python-looking text).

    .venv/bin/python bench/untrusted_answers.py --benchmark MATH-V/data/test.jsonl     # the full published file

Clean responses: the gold for half of the rows (seeded), a wrong number for the rest. Reports seconds per 1,000 rows
for both runs, their ratio, and how many rows ran into the time bound; writes ``OUT/untrusted_answers.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHOLOGICAL = [
    "9^{9^{9}}", "2^{2^{2^{2^{2^{2}}}}}", "(10^{10^{10}})!", "10!!!!", "(" * 500 + "1" + ")" * 500,
    "\\frac{" * 200 + "1" + "}{2}" * 200, "1" * 100_000, "x" * 100_000, "().__class__.__base__.__subclasses__()",
    "__import__('os').system('true')", "\\sqrt{" * 300 + "2" + "}" * 300, "\x00\u202e" * 1000,
]  # fmt: skip


def responses(rows: list[dict], pathological: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for row in rows:  # the same draws per row in both runs: only the replaced rows differ
        right, replace, which = rng.random(), rng.random(), rng.randrange(len(PATHOLOGICAL))
        answer = row["answer"] if right < 0.5 else "12345"
        if replace < pathological:
            answer = PATHOLOGICAL[which]
        out.append({"id": str(row["id"]), "response": f"<think>…</think> <answer>{answer}</answer>"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, required=True, help="MATH-V's full test.jsonl")
    parser.add_argument("--fraction", type=float, default=0.01, help="share of pathological responses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "untrusted_answers")
    args = parser.parse_args()

    from observe_r1.eval import score_responses
    from observe_r1.jsonl import read_jsonl, write_jsonl

    rows = list(read_jsonl(args.benchmark))
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="untrusted-"))
    report = {"benchmark": str(args.benchmark), "rows": len(rows), "fraction": args.fraction, "runs": {}}
    for name, fraction in (("clean", 0.0), ("pathological", args.fraction)):
        write_jsonl(work / f"{name}.jsonl", responses(rows, fraction, args.seed))
        start = time.perf_counter()
        results = score_responses(args.benchmark, work / f"{name}.jsonl", work / name)
        seconds = time.perf_counter() - start
        mixed = sum(1 for r in read_jsonl(work / f"{name}.jsonl") if any(p in r["response"] for p in PATHOLOGICAL))
        per_1000 = round(seconds / len(rows) * 1e3, 2)
        report["runs"][name] = {"seconds": round(seconds, 1), "seconds_per_1000_rows": per_1000,
                                "pathological_rows": mixed, "n_timeouts": results["n_timeouts"],
                                "accuracy": results["official"]["sample_0"]["accuracy"]}  # fmt: skip
        print(name, report["runs"][name], flush=True)
    runs = report["runs"]
    report["ratio"] = round(runs["pathological"]["seconds"] / runs["clean"]["seconds"], 2)
    print(f"ratio pathological / clean: {report['ratio']}")
    (args.out / "untrusted_answers.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
