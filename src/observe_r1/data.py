"""One ingest path for training, the ladder and evaluation: files as published → validated items → batches.

    items, report = load_items("MATH-V/data/test.jsonl")              # refs only: no image is decoded here
    dataset, report = load_grpo_dataset("ladder/train.jsonl")          # TRL layout; images decoded per batch

Files: JSONL, JSON (a list of rows, or an object keyed by id as MathVista and LogicVista publish it), Parquet
(images as bytes: ``decoded_image``, ``{"bytes": …}``), a ``datasets`` directory saved with ``save_to_disk``, or
a hub dataset id (needs hub access). Rows are mapped by :mod:`observe_r1.layouts` (detected from the columns).

Images stay references (an absolute path or encoded bytes) until a batch needs them, so memory does not grow
with the dataset. A relative path is looked up under ``image_root`` (if given), then the file's folder and its
parents, each as is and under ``images/``; when it is nowhere, the error lists the places tried.

A bad row (missing or unreadable image, unreadable options, an empty question) raises :class:`DataError` naming
file, row and field, or, with ``skip_bad_rows=True``, is dropped and counted in the returned :class:`LoadReport`.
A row whose gold answer no rule can score (:func:`observe_r1.rewards.unscoreable`: empty, unparseable) is an error,
dropped and counted, or kept and listed, as the caller asks (``unscoreable=``): ``eval`` keeps and lists it,
``train`` drops and counts it, ``--strict`` makes it an error. Row order is kept: the ladder is consumed in file
order.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from observe_r1.layouts import IMAGE_FIELDS, PARSERS, RowError, detect_layout, parse_row
from observe_r1.prompts import SYSTEM_PROMPT, build_messages
from observe_r1.rewards import unscoreable as unscoreable_reason
from observe_r1.rewards import unscoreable_kind

# Decompression-bomb guard: refuse images above this many pixels before decoding them.
Image.MAX_IMAGE_PIXELS = 64_000_000
PARENT_LEVELS = 3  # how far up from the data file relative image paths are looked for


class DataError(ValueError):
    """A data file or one of its rows can't be used; the message names the file, the row and the field."""


@dataclass
class LoadReport:
    """What loading kept and skipped, with a reason per skipped row."""

    path: str
    layout: str = ""
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    unscoreable: dict[str, str] = field(default_factory=dict)  # id -> why its gold can't be scored (kept or dropped)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} × {r}" for r, n in self.skipped.most_common()) or "none"
        text = (
            f"{self.path} ({self.layout} layout): kept {self.kept} rows, "
            f"skipped {sum(self.skipped.values())} ({reasons})"
        )
        if self.unscoreable:
            text += f"; {len(self.unscoreable)} with an unscoreable gold (ids {list(self.unscoreable)[:5]})"
        return text


# ------------------------------------------------------------------------------------------------ raw rows
def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} (line {line}); "
            f"convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _image_columns_undecoded(dataset):
    """A ``datasets`` table whose image columns yield ``{"bytes", "path"}`` instead of decoded images."""
    from datasets import Image as ImageFeature
    from datasets import List, Sequence

    for name, feature in dataset.features.items():
        if isinstance(feature, ImageFeature):
            dataset = dataset.cast_column(name, ImageFeature(decode=False))
        elif isinstance(feature, List | Sequence) and isinstance(feature.feature, ImageFeature):
            dataset = dataset.cast_column(name, List(ImageFeature(decode=False)))
    return dataset


def read_rows(path: str | Path) -> list[dict]:
    """Raw rows of a file, a ``datasets`` directory or a hub dataset id, in file order.

    Rows of a JSON object keyed by id carry their key as ``_key``. Image columns are not decoded.
    """
    name, path = str(path), Path(path)
    if not path.exists():
        if "/" in name and not path.suffix and not name.startswith((".", "/")):  # looks like a hub dataset id
            from datasets import load_dataset

            return list(_image_columns_undecoded(load_dataset(name, split="train")))
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        from datasets import load_from_disk

        try:
            dataset = load_from_disk(str(path))
        except FileNotFoundError as err:
            raise DataError(f"{path}: not a datasets directory saved with save_to_disk ({err})") from None
        if hasattr(dataset, "keys"):  # a DatasetDict: take the train split
            dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        return list(_image_columns_undecoded(dataset))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises several unrelated types for a damaged file
            raise DataError(f"{path}: unreadable Parquet ({type(err).__name__}: {err})") from None
    text = _read_text(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        if isinstance(data, dict):  # {"id": row, ...}
            if not all(isinstance(v, dict) for v in data.values()):
                raise DataError(f"{path}: a JSON object must map ids to rows (objects)")
            return [{"_key": key, **row} for key, row in data.items()]
        if not isinstance(data, list) or not all(isinstance(v, dict) for v in data):
            raise DataError(f"{path}: expected a JSON list of rows or an object of rows keyed by id")
        return data
    rows = []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {i + 1}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {i + 1}: a row must be a JSON object")
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------- images
def search_roots(path: str | Path, image_root: str | Path | None = None) -> list[Path]:
    """Folders where relative image paths of ``path`` are looked for, in order."""
    path = Path(path).resolve()
    folder = path if path.is_dir() else path.parent
    roots = [Path(image_root).resolve()] if image_root else []
    roots += [folder, *list(folder.parents)[:PARENT_LEVELS]]
    return roots


class ImageResolver:
    """Turns image references into an absolute path or bytes, without decoding anything."""

    def __init__(self, roots: list[Path]):
        self.roots = roots
        self._last: tuple[Path, str] | None = None  # the (root, subfolder) that worked last: tried first

    def __call__(self, ref) -> str | bytes | Image.Image:
        if isinstance(ref, Image.Image):
            return ref
        if isinstance(ref, dict):
            if ref.get("bytes"):
                return bytes(ref["bytes"])
            ref = ref.get("path")
        if isinstance(ref, bytes | bytearray):
            return bytes(ref)
        if not ref:
            raise FileNotFoundError("empty image reference")
        rel = Path(str(ref).removeprefix("file://"))
        if rel.is_absolute():
            if rel.is_file():
                return str(rel)
            raise FileNotFoundError(f"image file not found: {rel}")
        candidates = [(root, sub) for root in self.roots for sub in ("", "images")]
        if self._last in candidates:
            candidates.insert(0, self._last)
        for root, sub in candidates:
            candidate = root / sub / rel
            if candidate.is_file():
                self._last = (root, sub)
                return str(candidate)
        tried = ", ".join(str(root / sub / rel) for root, sub in dict.fromkeys(candidates))
        raise FileNotFoundError(f"image file not found: {rel} (looked in {tried}; pass --image-root DIR)")


def _open_checked(ref) -> Image.Image:
    """Open a resolved reference, reading only the header: raise if it is unreadable or a decompression bomb."""
    if isinstance(ref, Image.Image):
        return ref
    image = Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref)
    width, height = image.size
    if width * height > Image.MAX_IMAGE_PIXELS:
        image.close()
        raise ValueError(f"{width}x{height} pixels exceeds the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}")
    return image


def check_image(ref) -> None:
    """Read the header only: raise if the image is unreadable or a decompression bomb."""
    if not isinstance(ref, Image.Image):
        _open_checked(ref).close()


def open_image(ref) -> Image.Image:
    """Decode a resolved reference (absolute path, bytes or PIL image) as RGB, opening the file once."""
    image = _open_checked(ref)
    image.load()
    return image.convert("RGB")


def with_images(item: dict) -> dict:
    """The item with its images decoded (call per batch, not per dataset)."""
    return {**item, "images": [open_image(ref) for ref in item["images"]]}


# -------------------------------------------------------------------------------------------------- items
def load_items(
    path: str | Path,
    *,
    layout: str | None = None,
    image_root: str | Path | None = None,
    images: str = "check",
    unscoreable: str = "error",
    skip_bad_rows: bool = False,
) -> tuple[list[dict], LoadReport]:
    """Items of a data file in file order (see :mod:`observe_r1.layouts` for the fields).

    ``images``: ``check`` resolves every reference and reads its header (not its pixels); ``resolve`` only
    finds the files; ``ignore`` leaves references as they are (scoring saved responses needs no image).
    ``unscoreable``: what to do with a row whose gold no rule can score — ``error`` (a :class:`DataError`, or
    skipped with ``skip_bad_rows``), ``drop`` (dropped, counted in ``report.skipped`` and listed in
    ``report.unscoreable``) or ``keep`` (kept and listed in ``report.unscoreable``).
    """
    if unscoreable not in ("error", "drop", "keep"):
        raise ValueError(f"unscoreable must be 'error', 'drop' or 'keep', not {unscoreable!r}")
    path = Path(path)
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    if layout is None:
        layout = detect_layout(set(rows[0]))
        if layout is None:
            raise DataError(f"{path}: unknown layout with columns {sorted(set(rows[0]) - {'_key'})}; expected one "
                            f"of {list(PARSERS)} (see observe_r1.layouts), or force one with --layout")  # fmt: skip
    elif layout not in PARSERS:
        raise DataError(f"unknown layout {layout!r}; choose one of {list(PARSERS)}")
    resolve = ImageResolver(search_roots(path, image_root))
    report = LoadReport(str(path), layout)
    items, seen = [], set()
    for i, row in enumerate(rows):
        where = f"row {i}" + (f" (id {row['_key']!r})" if "_key" in row else "")
        try:
            item = parse_row(row, layout)
            item["id"] = item["id"] or f"{path.stem}-{i}"
            if reason := unscoreable_reason(item["answer"]):
                if unscoreable == "error":
                    raise RowError("answer", f"{reason} (unscoreable gold)")
                report.unscoreable[item["id"]] = reason
                if unscoreable == "drop":
                    report.skipped[f"answer: {unscoreable_kind(reason)}"] += 1
                    continue
            if images != "ignore":
                field_name = "decoded_image" if "decoded_image" in row else IMAGE_FIELDS[layout]
                item["images"] = [_resolved(resolve, ref, images == "check", field_name) for ref in item["images"]]
        except RowError as err:
            fieldname, reason = err.args
            if not skip_bad_rows:
                hint = ("without --strict such rows are counted instead" if reason.endswith("(unscoreable gold)")
                        else "pass --skip-bad-rows to skip and count such rows")  # fmt: skip
                raise DataError(f"{path}: {where}: field '{fieldname}': {reason} ({hint})") from None
            report.skipped[f"{fieldname}: {reason.split(' (')[0].split(':')[0]}"] += 1
            continue
        if item["id"] in seen:
            raise DataError(f"{path}: {where}: field 'id': duplicate id {item['id']!r}")
        seen.add(item["id"])
        item["row"] = i
        items.append(item)
    report.kept = len(items)
    if not items:
        raise DataError(f"{path}: no usable rows ({report})")
    return items, report


def _resolved(resolve: ImageResolver, ref, check: bool, field_name: str):
    try:
        found = resolve(ref)
    except FileNotFoundError as err:
        raise RowError(field_name, str(err)) from None
    if check:
        try:
            check_image(found)
        except (OSError, Image.DecompressionBombError, ValueError) as err:
            raise RowError(field_name, f"unreadable image ({type(err).__name__}: {err})") from None
    return found


# ----------------------------------------------------------------------------------------- TRL datasets
def _image_cell(ref) -> dict | Image.Image:
    if isinstance(ref, Image.Image):
        return ref
    return {"bytes": ref, "path": None} if isinstance(ref, bytes) else {"bytes": None, "path": ref}


def ladder_level(item: dict) -> float:
    """The ladder level of a training position: the level whose stretch the ladder laid it out in
    (``stretch_level``), else its own ``difficulty``, else -1 (not a ladder row).

    >>> ladder_level({"difficulty": 0.5, "stretch_level": 0.25}), ladder_level({"difficulty": 0.5}), ladder_level({})
    (0.25, 0.5, -1.0)
    """
    for key in ("stretch_level", "difficulty"):
        if item.get(key) is not None:
            return float(item[key])
    return -1.0


def to_grpo_dataset(items: list[dict], system_prompt: str | None = SYSTEM_PROMPT):
    """A ``datasets.Dataset`` in TRL's VLM layout: conversational ``prompt``, ``images`` (decoded on access,
    batch by batch), ``answer``, ``choices``, ``precision``, ``id``, ``row``, ``difficulty``, ``ladder_level``
    (:func:`ladder_level`)."""
    from datasets import Dataset, List, Value
    from datasets import Image as ImageFeature

    rows = [
        {
            "prompt": build_messages(item["problem"], len(item["images"]), system_prompt),
            "images": [_image_cell(ref) for ref in item["images"]],
            "answer": item["answer"],
            "choices": list(item.get("choices") or []),
            "precision": item.get("precision"),
            "id": item["id"],
            "row": position,
            "difficulty": float(item["difficulty"]) if item.get("difficulty") is not None else -1.0,
            "ladder_level": ladder_level(item),
        }
        for position, item in enumerate(items)
    ]
    dataset = Dataset.from_list(rows)
    dataset = dataset.cast_column("images", List(ImageFeature()))
    dataset = dataset.cast_column("choices", List(Value("string")))
    return dataset.cast_column("precision", Value("int32"))


def load_grpo_dataset(
    path: str | Path,
    *,
    skip_bad_rows: bool = False,
    strict: bool = False,
    system_prompt: str | None = SYSTEM_PROMPT,
    image_root: str | Path | None = None,
    layout: str | None = None,
):
    """:func:`load_items` then :func:`to_grpo_dataset`; returns ``(dataset, report)``.

    Rows with an unscoreable gold can't be rewarded: they are dropped, counted and warned about (an error with
    ``strict``)."""
    items, report = load_items(path, layout=layout, image_root=image_root, skip_bad_rows=skip_bad_rows,
                               unscoreable="error" if strict else "drop")  # fmt: skip
    if report.unscoreable:
        warnings.warn(f"{path}: dropped {len(report.unscoreable)} rows whose gold answer can't be scored "
                      f"(ids {list(report.unscoreable)[:5]}); --strict makes this an error", stacklevel=2)  # fmt: skip
    return to_grpo_dataset(items, system_prompt), report
