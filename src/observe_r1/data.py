"""Load training data into the TRL layout, validating every row at the edge.

Accepted inputs:

* canonical JSONL or Parquet: ``problem``, ``answer``, ``images`` (paths relative to the file, or bytes), optional
  ``id``, ``difficulty``, ``complexity``, ``source``; EasyR1's ``problem/answer/images`` is the same layout;
* the reference code's JSONL: ``message`` (a stringified chat list whose content holds ``{"type": "image",
  "image": path}`` and ``{"type": "text", "text": ...}`` entries) and ``answer``;
* a ``datasets`` directory saved with ``save_to_disk``, or a hub dataset id such as ``org/name`` (train split;
  needs hub access, which our CI machines do not have).

A bad row (missing or unreadable image, empty or unparseable answer, empty problem) raises :class:`DataError`
naming file, row and field, or, with ``skip_bad_rows=True``, is dropped and counted in the returned report.
Row order is kept: the ladder is consumed in file order (``curriculum: ordered``).
"""

from __future__ import annotations

import ast
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from observe_r1.prompts import SYSTEM_PROMPT, build_messages
from observe_r1.rewards import check_gold

# Decompression-bomb guard: refuse images above this many pixels before decoding them.
Image.MAX_IMAGE_PIXELS = 64_000_000


class DataError(ValueError):
    """A row of a data file can't be used; the message names the file, the row and the field."""


@dataclass
class LoadReport:
    """What loading kept and skipped, with a reason per skipped row."""

    path: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} × {r}" for r, n in self.skipped.most_common()) or "none"
        return f"{self.path}: kept {self.kept} rows, skipped {sum(self.skipped.values())} ({reasons})"


def read_rows(path: str | Path) -> list[dict]:
    """Raw rows of a JSONL, JSON, Parquet file or a ``datasets`` directory, in file order."""
    name, path = str(path), Path(path)
    if not path.exists():
        if "/" in name and not path.suffix and not name.startswith((".", "/")):  # looks like a hub dataset id
            from datasets import load_dataset

            return list(load_dataset(name, split="train"))
        raise FileNotFoundError(f"dataset {path} does not exist")
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        if hasattr(dataset, "keys"):  # a DatasetDict: take the train split
            dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        return list(dataset)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".json":
        return json.loads(path.read_text())
    rows = []
    with path.open() as f:
        for i, line in enumerate(f):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}: row {i}: not valid JSON ({err.msg})") from err
    return rows


def _from_reference_message(message: str | list) -> tuple[str, list]:
    """The question text and image entries of the reference code's stringified chat list."""
    chat = message
    if isinstance(message, str):
        try:
            chat = json.loads(message)
        except json.JSONDecodeError:
            chat = ast.literal_eval(message)
    texts, images = [], []
    for turn in chat:
        if turn.get("role") == "system":
            continue
        content = turn["content"]
        for part in [content] if isinstance(content, str) else content:
            if isinstance(part, str):
                texts.append(part)
            elif part.get("type") == "image":
                images.append(part.get("image"))
            elif part.get("type") == "text":
                texts.append(part["text"])
    return "\n".join(texts), images


def open_image(ref, base: Path) -> Image.Image:
    """Open a path (relative to ``base``), bytes, ``{"bytes"/"path"}`` dict or PIL image, as RGB."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, bytes | bytearray):
        image = Image.open(io.BytesIO(ref))
    else:
        path = Path(str(ref).removeprefix("file://"))
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        image = Image.open(path)
    width, height = image.size  # read from the header, before decoding
    if width * height > Image.MAX_IMAGE_PIXELS:
        raise ValueError(f"{width}x{height} pixels exceeds the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}")
    image.load()
    return image.convert("RGB")


def normalize_row(row: dict, base: Path) -> dict:
    """A raw row as ``{problem, answer, images: [PIL], ...}``; raises ``(field, reason)`` as a KeyError/ValueError."""
    if "message" in row and "problem" not in row:
        problem, image_refs = _from_reference_message(row["message"])
    else:
        problem = row.get("problem", row.get("question"))
        image_refs = row.get("images", row.get("image", []))
        image_refs = image_refs if isinstance(image_refs, list) else [image_refs]
    if not isinstance(problem, str) or not problem.strip():
        raise DataError("problem", "empty or missing problem")
    answer = row.get("answer")
    reason = check_gold(answer)
    if reason:
        raise DataError("answer", reason)
    images = []
    for ref in image_refs:
        try:
            images.append(open_image(ref, base))
        except FileNotFoundError as err:
            raise DataError("images", str(err)) from err
        except (OSError, Image.DecompressionBombError, ValueError) as err:
            raise DataError("images", f"unreadable image ({type(err).__name__}: {err})") from err
    extras = {k: row[k] for k in ("id", "difficulty", "complexity", "source", "family", "level") if k in row}
    return {"problem": problem.strip(), "answer": str(answer).strip(), "images": images, **extras}


def load_records(path: str | Path, *, skip_bad_rows: bool = False) -> tuple[list[dict], LoadReport]:
    """Validated rows of ``path`` in file order, with stable ids (``<file stem>-<row>`` when absent)."""
    path = Path(path)
    base = path if path.is_dir() else path.parent
    report = LoadReport(str(path))
    records = []
    for i, row in enumerate(read_rows(path)):
        try:
            record = normalize_row(row, base)
        except DataError as err:
            fieldname, reason = err.args if len(err.args) == 2 else ("row", err.args[0])
            if not skip_bad_rows:
                raise DataError(
                    f"{path}: row {i}: field '{fieldname}': {reason} (pass --skip_bad_rows to skip such rows)"
                ) from err
            report.skipped[f"{fieldname}: {reason.split(':')[0]}"] += 1
            continue
        record.setdefault("id", f"{path.stem}-{i}")
        record["id"] = str(record["id"])
        records.append(record)
    report.kept = len(records)
    if not records:
        raise DataError(f"{path}: no usable rows ({report})")
    return records, report


def to_grpo_dataset(records: list[dict], system_prompt: str | None = SYSTEM_PROMPT):
    """A ``datasets.Dataset`` in TRL's VLM layout: conversational ``prompt``, ``images``, ``answer``, ``id``."""
    from datasets import Dataset

    rows = []
    for row_index, record in enumerate(records):
        rows.append(
            {
                "prompt": build_messages(record["problem"], len(record["images"]), system_prompt),
                "images": record["images"],
                "answer": record["answer"],
                "id": record["id"],
                "row": row_index,
                "difficulty": float(record.get("difficulty", -1.0)),
            }
        )
    return Dataset.from_list(rows)


def load_grpo_dataset(path: str | Path, *, skip_bad_rows: bool = False, system_prompt: str | None = SYSTEM_PROMPT):
    records, report = load_records(path, skip_bad_rows=skip_bad_rows)
    return to_grpo_dataset(records, system_prompt), report
