"""Run the NeuraLadder stages in order, record them in ``stats.json``; shard, merge, mix, stats.

Layout of a ladder directory: ``images/``, ``rating.jsonl`` (journal), ``responses.jsonl`` (rating samples),
``ladder.jsonl`` (rated items sorted easy → hard, after pruning), ``review.jsonl`` (d = 1 items),
``stats.json``, ``stats.png``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.ladder.order import level, mix, prune, review_candidates, sort_items
from observe_r1.ladder.stages import easy_filter, ingest, rate, stable_hash, verifiable_filter
from observe_r1.plots import pyplot


def parse_shard(shard: str | None) -> tuple[int, int]:
    """A shard spec ``i/n`` as ``(i, n)``; no shard is ``(0, 1)``."""
    if not shard:
        return 0, 1
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like 3/16 (index/count); got {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: index must be in [0, {count})")
    return index, count


def _record(stats: dict, name: str, n_in: int, kept: list, drops: Counter) -> None:
    stats["stages"].append({"stage": name, "in": n_in, "out": len(kept), "drops": dict(drops)})


def build(
    sources: list[str],
    generator,
    out: str | Path,
    *,
    k: int = 8,
    temperature: float = 1.0,
    shard: str | None = None,
    use_easy_filter: bool = True,
    prune_percentile: float = 25.0,
    skip_bad_rows: bool = False,
    strict: bool = False,
    image_root: str | Path | None = None,
    seed: int = 0,
) -> dict:
    """Build (or resume building) a ladder in ``out``; returns the stats written to ``out/stats.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index, count = parse_shard(shard)
    stats = {"sources": [str(s) for s in sources], "k": k, "shard": [index, count], "stages": []}
    items, drops = ingest(sources, out, skip_bad_rows=skip_bad_rows, image_root=image_root)
    _record(stats, "ingest", len(items) + sum(drops.values()), items, drops)
    if count > 1:
        n = len(items)
        items = [it for it in items if stable_hash(it["id"]) % count == index]
        _record(stats, f"shard {index}/{count}", n, items, Counter({"other shards": n - len(items)}))
    n = len(items)
    items, drops = verifiable_filter(items, strict=strict)
    _record(stats, "verifiable_filter", n, items, drops)
    if use_easy_filter:
        n = len(items)
        items, drops = easy_filter(items, generator, out)
        _record(stats, "easy_filter", n, items, drops)
    with tqdm(total=len(items), desc=f"rating (k={k})", unit="item") as bar:
        items = rate(items, generator, out, k=k, temperature=temperature, seed=seed, progress=bar.update)
    _record(stats, "rate", len(items), items, Counter())
    n = len(items)
    items, dropped = prune(items, percentile=prune_percentile)
    stage = f"prune (d=0, complexity < p{prune_percentile:g})"
    _record(stats, stage, n, items, Counter({"easy and short": len(dropped)}))
    items = sort_items(items)
    write_jsonl(out / "ladder.jsonl", items)
    write_jsonl(out / "review.jsonl", review_candidates(items))
    stats["levels"] = level_table(items, k)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def level_table(items: list[dict], k: int) -> list[dict]:
    """Items, mean complexity and share per difficulty level ``c/k``, easy to hard."""
    rows = []
    for c in range(k + 1):
        wanted = Fraction(c, k)
        members = [it for it in items if level(it["difficulty"]) == wanted]
        mean = sum(it["complexity"] for it in members) / len(members) if members else 0.0
        rows.append({"difficulty": float(wanted), "count": len(members), "mean_complexity": round(mean, 2)})
    return rows


def merge(shard_dirs: list[str | Path], out: str | Path) -> Path:
    """Join shard outputs; refuses missing, duplicated or overlapping shards."""
    shards = [(Path(d), json.loads((Path(d) / "stats.json").read_text())) for d in shard_dirs]
    counts = {tuple(s["shard"])[1] for _, s in shards}
    if len(counts) != 1:
        raise ValueError(f"shards come from different --shard counts: {sorted(counts)}")
    count = counts.pop()
    indices = sorted(s["shard"][0] for _, s in shards)
    missing = sorted(set(range(count)) - set(indices))
    duplicated = sorted(i for i in set(indices) if indices.count(i) > 1)
    if missing or duplicated:
        raise ValueError(f"cannot merge: missing shards {missing}, duplicated shards {duplicated} (of {count})")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    items, seen = [], set()
    for directory, _ in shards:
        for item in read_jsonl(directory / "ladder.jsonl"):
            if item["id"] in seen:
                raise ValueError(f"cannot merge: id {item['id']!r} appears in more than one shard")
            seen.add(item["id"])
            for rel in item["images"]:
                target = out / rel
                if not target.exists():
                    target.write_bytes((directory / rel).read_bytes())
            items.append(item)
    items = sort_items(items)
    k = shards[0][1]["k"]
    write_jsonl(out / "ladder.jsonl", items)
    write_jsonl(out / "review.jsonl", review_candidates(items))
    stats = {"merged_from": [str(d) for d, _ in shards], "k": k, "shard": [0, 1],
             "stages": [st for _, s in shards for st in s["stages"]], "levels": level_table(items, k)}  # fmt: skip
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return out


def write_mix(
    ladder_dir: str | Path,
    out_file: str | Path,
    *,
    size: int | None = None,
    seed: int = 0,
    max_difficulty: float = 1.0,
) -> Path:
    """The training sequence as canonical JSONL, image paths relative to ``out_file``.

    ``max_difficulty < 1`` leaves out the levels above it (items the rating model almost never solved).
    """
    ladder_dir, out_file = Path(ladder_dir), Path(out_file)
    items = [it for it in read_jsonl(ladder_dir / "ladder.jsonl") if it["difficulty"] <= max_difficulty + 1e-9]
    sequence = mix(items, size=size, seed=seed)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(ladder_dir.resolve(), out_file.parent.resolve())
    rows = [{**it, "images": [os.path.normpath(os.path.join(rel, p)) for p in it["images"]]} for it in sequence]
    write_jsonl(out_file, rows)
    return out_file


def plot_stats(ladder_dir: str | Path) -> Path:
    """Histogram of items per difficulty level with mean complexity, like the paper's figure."""
    plt = pyplot()

    ladder_dir = Path(ladder_dir)
    levels = json.loads((ladder_dir / "stats.json").read_text())["levels"]
    total = sum(row["count"] for row in levels) or 1
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    labels = [str(level(row["difficulty"])) for row in levels]
    ax.bar(labels, [100 * row["count"] / total for row in levels], color="#4c72b0")
    ax.set_xlabel("difficulty d = 1 − c/k")
    ax.set_ylabel("% of items")
    twin = ax.twinx()
    twin.plot(labels, [row["mean_complexity"] for row in levels], color="#dd8452", marker="o")
    twin.set_ylabel("mean complexity (tokens)")
    ax.set_title("NeuraLadder levels")
    fig.tight_layout()
    path = ladder_dir / "stats.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_stats(ladder_dir: str | Path) -> str:
    """The stage counts and level table of a ladder directory, as text."""
    stats = json.loads((Path(ladder_dir) / "stats.json").read_text())
    lines = ["stage                                   in     out  drops"]
    for st in stats["stages"]:
        drops = ", ".join(f"{r}: {n}" for r, n in st["drops"].items() if n) or "-"
        lines.append(f"{st['stage']:<38} {st['in']:>5} {st['out']:>7}  {drops}")
    lines += ["", "difficulty  count  mean complexity"]
    for row in stats["levels"]:
        d = str(level(row["difficulty"]))
        lines.append(f"{d:>10} {row['count']:>6} {row['mean_complexity']:>16}")
    return "\n".join(lines)
