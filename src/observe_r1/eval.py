"""``observe-r1 eval``: generate on a benchmark, score with the training rewards, write figures people can read.

    observe-r1 eval --model runs/r1/final --benchmark mathvista_testmini.parquet --out evals/r1
    observe-r1 eval --model M --benchmark my_bench.jsonl --samples 4 --temperature 0.6 --out evals/m
    observe-r1 compare evals/base evals/r1 --out evals/compare

Writes ``results.json`` (accuracy, format_rate, per-category accuracy, mean tokens of correct and incorrect
responses, mean observe/think lengths), ``predictions.jsonl`` (every response, its extracted answer and verdict;
appended batch by batch so a killed eval resumes), and ``summary.md``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from observe_r1.benchmarks import load_benchmark
from observe_r1.jsonl import append_jsonl, read_jsonl, write_jsonl
from observe_r1.prompts import PLAIN_PROMPT, SYSTEM_PROMPT
from observe_r1.rewards import extract_answer, format_reward, score_completions

_LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LAST_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-F])\)?(?![A-Za-z])")


def fallback_answer(response: str, gold: str) -> str | None:
    """Answer of a response that doesn't use tags: the tag/``\\boxed`` answer, else its last option letter or
    number (the kind the gold answer is)."""
    answer = extract_answer(response)
    if answer is not None:
        return answer
    pattern = _LAST_LETTER if re.fullmatch(r"\(?[A-F]\)?", gold.strip()) else _LAST_NUMBER
    found = pattern.findall(response)
    return found[-1] if found else None


def _tag_length(response: str, tag: str) -> int | None:
    start, end = response.find(f"<{tag}>"), response.find(f"</{tag}>")
    return len(response[start + len(tag) + 2 : end].split()) if 0 <= start < end else None


def _within_precision(prediction: str, gold: str, precision: int | None) -> bool:
    try:
        return precision is not None and round(float(prediction), precision) == round(float(gold), precision)
    except ValueError:
        return False


def score_predictions(items: list[dict], responses: list[list[tuple[str, int]]]) -> list[dict]:
    """One prediction row per (item, sample): extracted answer, verdict, format, token count."""
    rows, texts, golds = [], [], []
    for item, samples in zip(items, responses, strict=True):
        for j, (text, tokens) in enumerate(samples):
            answer = fallback_answer(text, item["answer"])
            rows.append({"id": item["id"], "sample": j, "category": item.get("category", "all"), "response": text,
                         "extracted": answer, "gold": item["answer"], "tokens": tokens,
                         "format": format_reward(text), "precision": item.get("precision")})  # fmt: skip
            texts.append(f"<answer>{answer}</answer>" if answer is not None else "")
            golds.append(item["answer"])
    for row, score in zip(rows, score_completions(texts, golds), strict=True):
        row["correct"] = bool(score) or _within_precision(row["extracted"] or "", row["gold"], row.pop("precision"))
    return rows


def aggregate(rows: list[dict]) -> dict:
    """Accuracy (overall, per category), format rate, response lengths; over every scored sample."""

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    by_category = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row["correct"])
    return {
        "n_items": len({r["id"] for r in rows}),
        "n_samples": len(rows),
        "accuracy": mean([float(r["correct"]) for r in rows]) or 0.0,
        "format_rate": mean([r["format"] for r in rows]) or 0.0,
        "per_category": {c: sum(v) / len(v) for c, v in sorted(by_category.items())},
        "mean_tokens": mean([r["tokens"] for r in rows]),
        "mean_tokens_correct": mean([r["tokens"] for r in rows if r["correct"]]),
        "mean_tokens_incorrect": mean([r["tokens"] for r in rows if not r["correct"]]),
        "mean_observe_words": mean([_tag_length(r["response"], "observe") for r in rows]),
        "mean_think_words": mean([_tag_length(r["response"], "think") for r in rows]),
    }


def evaluate(
    generator,
    benchmark: str | Path,
    out: str | Path,
    *,
    samples: int = 1,
    temperature: float = 0.0,
    prompt: str = "observe",
    batch_size: int = 64,
    limit: int | None = None,
    layout: str | None = None,
) -> dict:
    """Evaluate ``generator`` on ``benchmark`` into ``out``; resumes from ``out/predictions.jsonl``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = load_benchmark(benchmark, layout=layout)[:limit]
    predictions = out / "predictions.jsonl"
    done = {}
    for row in read_jsonl(predictions, missing_ok=True, skip_torn=True):
        done.setdefault(row["id"], []).append(row)
    done = {k: v for k, v in done.items() if len(v) == samples}
    write_jsonl(predictions, (r for v in done.values() for r in v))
    system_prompt = SYSTEM_PROMPT if prompt == "observe" else PLAIN_PROMPT
    todo = [it for it in items if it["id"] not in done]
    with tqdm(total=len(items), initial=len(items) - len(todo), desc="eval", unit="item") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            responses = generator.generate(batch, n=samples, temperature=temperature, system_prompt=system_prompt)
            rows = score_predictions(batch, responses)
            append_jsonl(predictions, rows)
            bar.update(len(batch))
    rows = read_jsonl(predictions)
    order = {it["id"]: i for i, it in enumerate(items)}
    rows = sorted((r for r in rows if r["id"] in order), key=lambda r: (order[r["id"]], r["sample"]))
    results = {"benchmark": str(benchmark), "samples": samples, "temperature": temperature, **aggregate(rows)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "summary.md").write_text(summary_markdown(results))
    return results


def summary_markdown(results: dict) -> str:
    lines = [f"# Evaluation on `{results['benchmark']}`", "",
             f"- items: {results['n_items']} × {results['samples']} sample(s), temperature {results['temperature']}",
             f"- **accuracy: {results['accuracy']:.3f}**", f"- format rate: {results['format_rate']:.3f}",
             f"- mean tokens (correct / incorrect): {results['mean_tokens_correct']} / "
             f"{results['mean_tokens_incorrect']}",
             "", "| category | accuracy |", "|---|---|"]  # fmt: skip
    lines += [f"| {c} | {a:.3f} |" for c, a in results["per_category"].items()]
    return "\n".join(lines) + "\n"


def compare(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Side-by-side table (``compare.md``) and bar chart (``compare.png``) of several eval directories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {Path(d).name: json.loads((Path(d) / "results.json").read_text()) for d in run_dirs}
    keys = ["accuracy", "format_rate", "mean_tokens_correct", "mean_tokens_incorrect"]
    lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if r[k] is not None else "-" for k in keys) + " |")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(results)
    width = 0.38
    for i, key in enumerate(["accuracy", "format_rate"]):
        ax.bar([x + i * width for x in range(len(names))], [results[n][key] for n in names], width, label=key)
    ax.set_xticks([x + width / 2 for x in range(len(names))], names)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("observe-r1 eval")
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=100)
    plt.close(fig)
    return out
