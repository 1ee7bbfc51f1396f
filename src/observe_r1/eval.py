"""``observe-r1 eval``: generate on a benchmark (or take saved responses), score with the training rewards, write
figures people can read.

    observe-r1 eval --model runs/r1/final --benchmark MathVista/data/testmini.json --out evals/r1
    observe-r1 eval --model M --benchmark MATH-V/data/test.jsonl --samples 4 --temperature 0.6 --out evals/m
    observe-r1 eval --benchmark MathVista/data/testmini.json --responses vllm_out.jsonl --out evals/api
    observe-r1 compare evals/base evals/r1 --out evals/compare

Benchmarks are read through the same ingest path as training data (``observe_r1.data.load_items``): every
published layout, options carried with each item so that an answer given as the option's text counts like its
letter, images decoded batch by batch.

Writes ``results.json`` (``official``: the benchmark's own figures, computed as its authors' code computes them,
see :mod:`observe_r1.official`; accuracy under observe-r1's training reward, format_rate, per-category accuracy,
mean tokens of correct and incorrect responses, mean observe/think lengths; ``n_unscoreable`` and
``unscoreable_ids``: rows whose gold no rule can score, scored as the authors' code scores them; ``n_timeouts``
and ``timeout_ids``: rows whose official reading ran past its time bound, scored wrong),
``predictions.jsonl`` (every response, its extracted answer, both verdicts; appended batch by batch so a killed
eval resumes), and ``summary.md`` (official figures first).

With a judge (``judge=``, :class:`observe_r1.judge.Judge`), MathVista, MathVerse and LogicVista responses are read
by the judge as those benchmarks' authors have them read (every response, or only those the rules cannot read;
which rows and whose prompts: :mod:`observe_r1.judge`); its answers are kept in ``judge_cache.jsonl``, each judged
row carries ``judge`` in ``predictions.jsonl``, ``results.json`` has a ``judge`` block (with the rule figure, the
judge figure and their agreement), and the rows whose verdicts differ are in ``judge_disagreements.jsonl``.
Without a judge, rows a judge read before go back to their rule verdicts.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from observe_r1.data import DataError, load_items, with_images
from observe_r1.jsonl import append_jsonl, read_jsonl, write_jsonl
from observe_r1.judge import DISAGREEMENTS_FILE, JUDGED, agreement_note, clear_judgements, judge_rows
from observe_r1.official import headline, official_results, official_verdicts
from observe_r1.plots import pyplot
from observe_r1.prompts import PLAIN_PROMPT, SYSTEM_PROMPT
from observe_r1.rewards import extract_answer, format_reward, score_completions

_LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LAST_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-J])\)?(?![A-Za-z])")


def fallback_answer(response: str, gold: str) -> str | None:
    """Answer of a response that doesn't use tags: the tag/``\\boxed`` answer, else its last option letter or
    number (the kind the gold answer is)."""
    answer = extract_answer(response)
    if answer is not None:
        return answer
    pattern = _LAST_LETTER if re.fullmatch(r"\(?[A-J]\)?", gold.strip()) else _LAST_NUMBER
    found = pattern.findall(response)
    return found[-1] if found else None


def _tag_length(response: str, tag: str) -> int | None:
    start, end = response.find(f"<{tag}>"), response.find(f"</{tag}>")
    return len(response[start + len(tag) + 2 : end].split()) if 0 <= start < end else None


def score_predictions(
    items: list[dict], responses: list[list[tuple[str, int | None]]], benchmark: str | None = None
) -> list[dict]:
    """One prediction row per (item, sample): extracted answer, verdicts (``correct``: the training reward;
    ``official``: the benchmark's own rule), format, token count."""
    rows, texts, golds, choices, precisions = [], [], [], [], []
    for item, samples in zip(items, responses, strict=True):
        for j, sample in enumerate(samples):
            text, tokens = sample
            answer = fallback_answer(text, item["answer"])
            rows.append({"id": item["id"], "sample": j, "category": item.get("category", "all"), "response": text,
                         "extracted": answer, "gold": item["answer"], "tokens": tokens,
                         "format": format_reward(text)})  # fmt: skip
            if getattr(sample, "usage", None):  # a server's prompt and completion token counts (observe_r1.serving)
                rows[-1]["usage"] = sample.usage
            texts.append(f"<answer>{answer}</answer>" if answer is not None else "")
            golds.append(item["answer"])
            choices.append(item.get("choices") or [])
            precisions.append(item.get("precision"))
    scores = score_completions(texts, golds, choices=choices, precisions=precisions)
    for row, score in zip(rows, scores, strict=True):
        row["correct"] = bool(score)
    _add_official(rows, {item["id"]: item for item in items}, benchmark)
    return rows


def _add_official(rows: list[dict], items_by_id: dict, benchmark: str | None) -> None:
    """Each row's official verdict, read under a time bound (a row past it is wrong and marked
    ``official_timeout``)."""
    verdicts, timed_out = official_verdicts(benchmark, rows, items_by_id)
    for row, verdict, late in zip(rows, verdicts, timed_out, strict=True):
        row["official"] = verdict
        if late:
            row["official_timeout"] = True


def aggregate(rows: list[dict]) -> dict:
    """Accuracy (overall, per category), format rate, response lengths; over every scored sample."""

    def mean(values):
        """Mean of the values that are not None; None if there are none."""
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
    image_root: str | Path | None = None,
    skip_bad_rows: bool = False,
    strict: bool = False,
    judge=None,
) -> dict:
    """Evaluate ``generator`` on ``benchmark`` into ``out``; resumes from ``out/predictions.jsonl``.

    Images are decoded batch by batch: memory does not grow with the benchmark. A row whose gold no rule can
    score is evaluated, scored as the benchmark's authors score it and listed (``strict``: an error instead).
    ``judge``: reads the answers the rules cannot (the server is checked before generating, so an unreachable
    one stops the eval at once).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items, report = load_items(benchmark, layout=layout, image_root=image_root, skip_bad_rows=skip_bad_rows,
                               unscoreable="error" if strict else "keep")  # fmt: skip
    items = items[:limit]
    predictions = out / "predictions.jsonl"
    done = {}
    for row in read_jsonl(predictions, missing_ok=True, skip_torn=True):
        done.setdefault(row["id"], []).append(row)
    done = {k: v for k, v in done.items() if len(v) == samples}
    write_jsonl(predictions, (r for v in done.values() for r in v))
    system_prompt = SYSTEM_PROMPT if prompt == "observe" else PLAIN_PROMPT
    todo = [it for it in items if it["id"] not in done]
    if judge is not None and report.layout in JUDGED and todo:
        judge.check(report.layout)
    with tqdm(total=len(items), initial=len(items) - len(todo), desc="eval", unit="item") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            decoded = [with_images(item) for item in batch]
            responses = generator.generate(decoded, n=samples, temperature=temperature, system_prompt=system_prompt)
            del decoded
            append_jsonl(predictions, score_predictions(batch, responses, report.layout))
            bar.update(len(batch))
    return _write_results(items, read_jsonl(predictions), out, benchmark, report, samples=samples,
                          temperature=temperature, judge=judge)  # fmt: skip


def score_responses(
    benchmark: str | Path,
    responses: str | Path,
    out: str | Path,
    *,
    layout: str | None = None,
    limit: int | None = None,
    skip_bad_rows: bool = False,
    strict: bool = False,
    judge=None,
) -> dict:
    """Score saved responses (lines ``{"id", "response"}``, several per id = samples in order) without a model
    and without opening any image; writes the same files as :func:`evaluate`.

    Responses for ids the benchmark lacks are an error (a wrong file); benchmark items without a response are
    left out and counted in ``results.json`` (``n_missing``). ``judge``: as for :func:`evaluate`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items, report = load_items(benchmark, layout=layout, images="ignore", skip_bad_rows=skip_bad_rows,
                               unscoreable="error" if strict else "keep")  # fmt: skip
    items = items[:limit]
    by_id: dict[str, list] = {}
    for i, row in enumerate(read_jsonl(responses)):
        if "id" not in row or not isinstance(row.get("response"), str):
            raise DataError(f"{responses}: line {i + 1}: needs 'id' and a string 'response'")
        by_id.setdefault(str(row["id"]), []).append((row["response"], row.get("tokens")))
    known = {it["id"] for it in items}
    unknown = [k for k in by_id if k not in known]
    if unknown and limit is None:
        raise DataError(f"{responses}: {len(unknown)} ids are not in {benchmark} (first: {unknown[:3]}); "
                        f"wrong benchmark file or layout?")  # fmt: skip
    scored = [it for it in items if it["id"] in by_id]
    if not scored:
        raise DataError(f"{responses}: no response matches an id of {benchmark}")
    rows = score_predictions(scored, [by_id[it["id"]] for it in scored], report.layout)
    write_jsonl(out / "predictions.jsonl", rows)
    samples = max(len(v) for v in by_id.values())
    return _write_results(scored, rows, out, benchmark, report, samples=samples, temperature=None,
                          n_missing=len(items) - len(scored), judge=judge)  # fmt: skip


def _replace_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite ``path`` whole through a temporary file: a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    write_jsonl(tmp, rows)
    os.replace(tmp, path)


def _judge_note(block: dict) -> str:
    """One sentence on what the judge read, for ``results.json``'s official block and ``summary.md``."""
    which = ("every response the authors' scorer asks about" if block.get("judge_rows") == "all"
             else "answers the rules could not read")  # fmt: skip
    return (f"{which} went to judge {block['model']!r} at {block['url']} ({block.get('prompts', 'observe-r1')} "
            f"prompts, {block['prompt_version']}): {block['rows_judged']} of {block['rows']} responses judged, "
            f"{block['changed_verdicts']} verdicts changed, {block['failures']} kept the rule reading after a "
            f"failed or unreadable answer")  # fmt: skip


def _write_results(items, rows, out: Path, benchmark, report, *, samples, temperature, judge=None, **extra) -> dict:
    all_rows = list(rows)
    order = {it["id"]: i for i, it in enumerate(items)}
    rows = sorted((r for r in all_rows if r["id"] in order), key=lambda r: (order[r["id"]], r["sample"]))
    by_id = {it["id"]: it for it in items}
    _add_official([row for row in rows if "official" not in row], by_id, report.layout)  # older predictions
    rewrite = clear_judgements(all_rows)  # the rule verdicts, whatever a judge said in an earlier run
    judged = judge_rows(rows, by_id, report.layout, judge, out) if judge is not None else None
    if rewrite or (judged and judged.get("rows_asked")):  # rows carry what the judge said (and go back without one)
        _replace_jsonl(out / "predictions.jsonl", all_rows)
    timeouts = sorted({row["id"] for row in rows if row.get("official_timeout")})
    unscoreable = [i for i in report.unscoreable if i in order]
    official = official_results(report.layout, items, rows)
    if official and judged and judged.get("rows_asked"):
        official["judge"] = _judge_note(judged)
        official["judge_agreement"] = agreement_note(judged["agreement"])
    if judge is None:  # no judge, no disagreements: a file from an earlier judged run would mislead
        (out / DISAGREEMENTS_FILE).unlink(missing_ok=True)
    results = {"benchmark": str(benchmark), "layout": report.layout, "samples": samples, "temperature": temperature,
               "official": official, **aggregate(rows),
               "n_unscoreable": len(unscoreable), "unscoreable_ids": unscoreable,
               "n_timeouts": len(timeouts), "timeout_ids": timeouts,
               "n_skipped_rows": sum(report.skipped.values()), **extra}  # fmt: skip
    if judged is not None:
        results["judge"] = judged
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "summary.md").write_text(summary_markdown(results))
    return results


def eval_line(results: dict, out) -> str:
    """The one line ``observe-r1 eval`` prints: the official figure first."""
    official = results.get("official")
    head = "  ".join(f"{results['layout']} {name} {value:.4f}" for name, value in headline(official or {}))
    line = f"accuracy {results['accuracy']:.3f}  format_rate {results['format_rate']:.3f}"
    if results.get("n_unscoreable"):
        line += f"  unscoreable {results['n_unscoreable']}"
    if results.get("n_timeouts"):
        line += f"  official reading timed out {results['n_timeouts']} (scored wrong)"
    judge = results.get("judge")
    if judge and "rows_asked" in judge:
        line += (f"  judge: {judge['rows_judged']} responses read, {judge['requests']} requests, "
                 f"{judge['cached']} cached, {judge['failures']} fell back")  # fmt: skip
        if judge["agreement"]["agreement"] is not None:
            line += f", agrees with the rules on {judge['agreement']['agreement']:.3f}"
    elif judge:
        line += "  judge not used (rules only for this benchmark)"
    return f"{head + '  |  ' if head else ''}{line}  -> {out}"


def _official_markdown(official: dict) -> list[str]:
    """The official block: headline figures, then every breakdown as a table."""
    fig = official["sample_0"]
    lines = [f"## Official {official['benchmark']} figures ({official['uses']} of {official['n_samples']})", ""]
    lines += [f"- **{name}: {value:.4f}**" for name, value in headline(official)]
    if official.get("judge"):
        lines += [f"- Read with an LLM judge: {official['judge']}."]
    if official.get("judge_agreement"):
        lines += [f"- {official['judge_agreement']}."]
    scalars = {k: v for k, v in fig.items() if not isinstance(v, dict)}
    counts = {k: v for k, v in fig.items() if isinstance(v, dict) and set(v) == {"count", "rate"}}
    lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in scalars.items()]
    if counts:
        lines += ["", "| dimension | count | rate |", "|---|---|---|"]
        lines += [f"| {k} | {v['count']} | {v['rate']:.4f} |" for k, v in counts.items()]
    for name, table in fig.items():
        if isinstance(table, dict) and name not in counts:
            lines += ["", f"| {name.removeprefix('per_')} | accuracy |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in table.items()]
    if "mean_over_samples" in official:
        mean = headline({**official, "sample_0": official["mean_over_samples"]})
        lines += ["", "Mean over samples: " + ", ".join(f"{name} {value:.4f}" for name, value in mean)]
    lines += ["", f"Rows whose gold can't be scored: {official['unscoreable_scored_as']}.", ""]
    return lines


def summary_markdown(results: dict) -> str:
    """``summary.md``: the official figures first, then the training reward's accuracy, format rate, lengths and
    the per-category table."""
    lines = [f"# Evaluation on `{results['benchmark']}`", ""]
    if results.get("official"):
        lines += _official_markdown(results["official"]) + ["## observe-r1 reward", ""]
    lines += [f"- items: {results['n_items']} × {results['samples']} sample(s), "
             + (f"temperature {results['temperature']}" if results["temperature"] is not None else "saved responses"),
             f"- **accuracy: {results['accuracy']:.3f}**", f"- format rate: {results['format_rate']:.3f}",
             f"- unscoreable golds: {results.get('n_unscoreable', 0)} {results.get('unscoreable_ids', [])[:10]}",
             f"- official readings past the time bound (scored wrong): {results.get('n_timeouts', 0)} "
             f"{results.get('timeout_ids', [])[:10]}",
             f"- mean tokens (correct / incorrect): {results['mean_tokens_correct']} / "
             f"{results['mean_tokens_incorrect']}",
             "", "| category | accuracy |", "|---|---|"]  # fmt: skip
    lines += [f"| {c} | {a:.3f} |" for c, a in results["per_category"].items()]
    return "\n".join(lines) + "\n"


def run_labels(run_dirs: list[str | Path]) -> list[str]:
    """Short, distinct labels for eval directories: the folder name, with parents added where names repeat.

    >>> run_labels(["demo/eval-before/greedy", "demo/eval-after/greedy", "evals/base"])
    ['eval-before/greedy', 'eval-after/greedy', 'base']
    """
    parts = [Path(d).parts for d in run_dirs]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-k:]) for p, k in zip(parts, depth, strict=True)]
        repeated = {label for label in labels if labels.count(label) > 1}
        grow = [i for i, label in enumerate(labels) if label in repeated and depth[i] < len(parts[i])]
        if not grow:
            return labels
        for i in grow:
            depth[i] += 1


def compare(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Side-by-side table (``compare.md``: the benchmarks' official figures first, then the reward's accuracy,
    format rate and lengths) and bar chart (``compare.png``) of several eval directories, labelled ``labels``
    (default: :func:`run_labels`)."""
    plt = pyplot()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = labels or run_labels(run_dirs)
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct; got {labels}")
    results = {
        label: json.loads((Path(d) / "results.json").read_text()) for label, d in zip(labels, run_dirs, strict=True)
    }
    keys = ["accuracy", "format_rate", "mean_tokens_correct", "mean_tokens_incorrect"]
    official = {name: dict(headline(r.get("official"))) for name, r in results.items()}
    columns = list(dict.fromkeys(f"official {k}" for figures in official.values() for k in figures))
    lines = ["| run | " + " | ".join(columns + keys) + " |", "|---" * (len(columns + keys) + 1) + "|"]
    for name, r in results.items():
        cells = [official[name].get(c.removeprefix("official ")) for c in columns] + [r[k] for k in keys]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" if v is not None else "-" for v in cells) + " |")
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
