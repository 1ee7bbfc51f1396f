"""JSON Lines files: the format of every dataset, journal, log and prediction file observe-r1 writes."""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: str | Path, *, missing_ok: bool = False, skip_torn: bool = False) -> list[dict]:
    """Rows of ``path`` in order; ``missing_ok`` reads a missing file as empty, ``skip_torn`` drops lines that
    aren't valid JSON (the last line of a journal cut short by a crash)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if not skip_torn:
                raise
    return rows


def write_jsonl(path: str | Path, rows) -> None:
    """Write ``rows`` to ``path`` as JSON Lines, replacing the file."""
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(path: str | Path, rows) -> None:
    """Append rows with one write, so a crash leaves at most one torn line."""
    with Path(path).open("a") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))
