"""NeuraLadder stages that read data or run a model: ingest, verifiable filter, easy filter, rating (§2.1-§2.3).

Every stage returns ``(kept, drops)`` where ``drops`` maps a reason to a count. Rating journals its results so a
killed build resumes without re-rating anything, and seeds each chunk of items so that a resumed build produces
exactly what an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections import Counter
from pathlib import Path

import torch
from PIL import Image

from observe_r1.data import DataError, load_items, with_images
from observe_r1.jsonl import append_jsonl, read_jsonl, write_jsonl
from observe_r1.rewards import score_completions, unscoreable, unscoreable_kind

ANSWER_ONLY_PROMPT = "Look at the image and give only the final answer, with no explanation."


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process and run (for shards and seeds)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


def ingest(
    sources: list[str | Path], out: Path, *, skip_bad_rows: bool = False, image_root: str | Path | None = None
) -> tuple[list[dict], Counter]:
    """Read every source through :func:`observe_r1.data.load_items` into items with images under ``out/images``.

    Ids are the row's id (or ``<stem>-<row>``) prefixed by the source stem, so they stay unique across sources.
    Options, float precision and categories travel with each item, and ``source_row`` (the row in its file).
    Image files are copied (bytes written) once, without decoding them. Golds are not judged here: rows whose
    gold no rule can score reach :func:`verifiable_filter`, which drops and counts them.
    """
    (out / "images").mkdir(parents=True, exist_ok=True)
    items, drops, seen = [], Counter(), set()
    for source in map(Path, sources):
        loaded, report = load_items(source, image_root=image_root, skip_bad_rows=skip_bad_rows, unscoreable="keep")
        for reason, n in report.skipped.items():
            drops[f"bad row ({reason})"] += n
        for record in loaded:
            item_id = f"{source.stem}/{record['id']}"
            if item_id in seen:
                raise DataError(f"{source}: row {record['row']}: field 'id': duplicate id {item_id!r}")
            seen.add(item_id)
            record["source_row"] = record.pop("row")
            items.append({**record, "id": item_id, "source": source.stem, "images": _store(record, item_id, out)})
    return items, drops


def _store(record: dict, item_id: str, out: Path) -> list[str]:
    paths = []
    for j, ref in enumerate(record["images"]):
        stem = f"images/{item_id.replace('/', '__')}_{j}"
        if isinstance(ref, Image.Image):
            rel = f"{stem}.png"
            if not (out / rel).exists():
                ref.save(out / rel)
        elif isinstance(ref, bytes):
            with Image.open(io.BytesIO(ref)) as image:
                rel = f"{stem}.{(image.format or 'png').lower()}"
            if not (out / rel).exists():
                (out / rel).write_bytes(ref)
        else:
            rel = f"{stem}{Path(ref).suffix.lower() or '.png'}"
            if not (out / rel).exists():
                shutil.copyfile(ref, out / rel)
        paths.append(rel)
    return paths


def load_images(item: dict, base: Path) -> dict:
    """The item with its images (paths under ``base``) decoded, for one generation batch."""
    return with_images({**item, "images": [str(base / p) for p in item["images"]]})


def verifiable_filter(
    items: list[dict], *, max_text_words: int = 3, strict: bool = False
) -> tuple[list[dict], Counter]:
    """Keep items whose gold a rule can check: option letters, numbers/LaTeX, and text of a few words (§2.1).

    The rule is :func:`observe_r1.rewards.unscoreable` (the one eval and train use), with free-form text of more
    than ``max_text_words`` words also refused. ``strict``: the first such item is an error instead of a drop.
    """
    kept, drops = [], Counter()
    for item in items:
        reason = unscoreable(item["answer"], max_text_words=max_text_words)
        if reason is None:
            kept.append(item)
        elif strict:
            where = f"{item.get('source', 'source')}: row {item.get('source_row', '?')} (id {item['id']!r})"
            raise DataError(f"{where}: field 'answer': {reason} (without --strict such items are dropped and counted)")
        else:
            drops[unscoreable_kind(reason)] += 1
    return kept, drops


def as_answer(response: str) -> str:
    """Score an answer-only response: treat the whole text as the answer unless it uses tags or \\boxed."""
    return response if "<answer>" in response or "\\boxed" in response else f"<answer>{response}</answer>"


def easy_filter(items: list[dict], generator, base: Path, *, batch_size: int = 64) -> tuple[list[dict], Counter]:
    """Drop items a model answers correctly at once, greedy, without reasoning (§2.2)."""
    kept, drops = [], Counter()
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        responses = generator.generate([load_images(it, base) for it in chunk], system_prompt=ANSWER_ONLY_PROMPT)
        scores = score_completions([as_answer(r[0][0]) for r in responses], [it["answer"] for it in chunk],
                                   choices=[it.get("choices") for it in chunk],
                                   precisions=[it.get("precision") for it in chunk])  # fmt: skip
        for item, score in zip(chunk, scores, strict=True):
            if score == 1.0:
                drops["answered correctly without reasoning"] += 1
            else:
                kept.append(item)
    return kept, drops


def read_journal(path: Path) -> dict[str, dict]:
    """Rows of a journal keyed by id; a line cut short by a crash is ignored (and rewritten on resume)."""
    return {row["id"]: row for row in read_jsonl(path, missing_ok=True, skip_torn=True)}


def rate(
    items: list[dict],
    generator,
    out: Path,
    *,
    k: int = 8,
    temperature: float = 1.0,
    chunk_size: int = 32,
    seed: int = 0,
    progress=None,
) -> list[dict]:
    """Sample ``k`` reasoning responses per item: difficulty ``1 − c/k``, complexity = mean response tokens (§2.3).

    Results are journaled chunk by chunk in ``out/rating.jsonl`` (responses in ``out/responses.jsonl``); chunks
    already journaled are not re-rated.
    """
    journal, side = out / "rating.jsonl", out / "responses.jsonl"
    done = read_journal(journal)
    _rewrite_complete(journal, done)
    for index in range(0, len(items), chunk_size):
        chunk = items[index : index + chunk_size]
        if all(it["id"] in done for it in chunk):
            if progress:
                progress(len(chunk))
            continue
        torch.manual_seed(seed * 1_000_003 + stable_hash(chunk[0]["id"]) % 1_000_000)
        responses = generator.generate([load_images(it, out) for it in chunk], n=k, temperature=temperature)
        texts = [text for group in responses for text, _ in group]
        answers = [it["answer"] for it in chunk for _ in range(k)]
        correct = score_completions(texts, answers, choices=[it.get("choices") for it in chunk for _ in range(k)],
                                    precisions=[it.get("precision") for it in chunk for _ in range(k)])  # fmt: skip
        rows, side_rows = [], []
        for i, (item, group) in enumerate(zip(chunk, responses, strict=True)):
            c = correct[i * k : (i + 1) * k]
            lengths = [n for _, n in group]
            rows.append({"id": item["id"], "difficulty": 1 - sum(c) / k, "complexity": sum(lengths) / k,
                         "correct": c, "lengths": lengths})  # fmt: skip
            side_rows.append({"id": item["id"], "responses": [t for t, _ in group]})
            if any(getattr(r, "usage", None) for r in group):  # a server's token counts (observe_r1.serving)
                side_rows[-1]["usage"] = [getattr(r, "usage", None) for r in group]
        append_jsonl(side, side_rows)
        append_jsonl(journal, rows)  # the journal lines are the commit point of a chunk
        done.update((r["id"], r) for r in rows)
        if progress:
            progress(len(chunk))
    return [{**it, "difficulty": done[it["id"]]["difficulty"], "complexity": done[it["id"]]["complexity"]}
            for it in items]  # fmt: skip


def _rewrite_complete(journal: Path, done: dict) -> None:
    if journal.exists():
        write_jsonl(journal, done.values())
