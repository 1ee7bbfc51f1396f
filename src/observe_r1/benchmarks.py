"""Benchmark loaders: public layouts of visual-math benchmarks → items ``{id, problem, answer, images, category}``.

Layouts (detected from the columns, or forced with ``layout=``):

* ``canonical`` — ``problem``, ``answer``, ``images`` (observe-r1's JSONL; always accepted);
* ``mathvista`` — ``pid``, ``question``, ``choices``, ``answer``, ``answer_type``, ``precision``, ``image`` or
  ``decoded_image``, ``metadata`` (category from ``metadata.category``);
* ``mathverse`` — ``sample_index``, ``question`` (options inline), ``answer``, ``image``, ``problem_version``;
* ``mathvision`` — ``id``, ``question``, ``options``, ``answer``, ``image``/``decoded_image``, ``subject``;
* ``wemath`` — ``ID``, ``question``, ``option`` ("A. …; B. …"), ``answer``, ``image_path``;
* ``logicvista`` — ``question`` (options inline), ``answer`` (one or more letters), ``imagename``, ``skill``;
* ``mmmu`` — ``id``, ``question``, ``options`` (a list or its string), ``answer``, ``image_1``…``image_7``.

Multiple-choice golds become option letters; choices are rendered as ``(A) …`` lines after the question.
"""

from __future__ import annotations

import ast
from pathlib import Path

from observe_r1.data import DataError, open_image, read_rows

LETTERS = "ABCDEFGHIJ"

SIGNATURES = [  # first match wins
    ("mathvista", {"pid", "question", "answer_type"}),
    ("mathverse", {"sample_index", "problem_version"}),
    ("wemath", {"ID", "option"}),
    ("logicvista", {"imagename", "skill"}),
    ("mmmu", {"image_1", "options"}),
    ("mathvision", {"question", "options"}),
    ("canonical", {"problem", "answer"}),
]


def detect_layout(columns: set[str]) -> str:
    for name, required in SIGNATURES:
        if required <= columns:
            return name
    raise DataError(f"unknown benchmark layout with columns {sorted(columns)}; expected one of "
                    f"{[name for name, _ in SIGNATURES]} (see observe_r1.benchmarks)")  # fmt: skip


def render_choices(question: str, choices: list[str]) -> str:
    return question + "\nChoices:\n" + "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        return list(ast.literal_eval(value)) if value.startswith("[") else []
    return list(value)


def _choice_letter(answer, choices: list[str]) -> str:
    answer = str(answer).strip()
    if answer in choices:
        return LETTERS[choices.index(answer)]
    return answer.strip("()")  # already a letter


def _mathvista(row):
    choices = _as_list(row.get("choices"))
    problem = render_choices(row["question"], choices) if choices else row["question"]
    answer = _choice_letter(row["answer"], choices) if choices else str(row["answer"])
    category = (row.get("metadata") or {}).get("category", "all") if isinstance(row.get("metadata"), dict) else "all"
    precision = row.get("precision") if row.get("answer_type") == "float" else None
    image = row.get("decoded_image") or row.get("image")
    return str(row["pid"]), problem, answer, [image], category, precision


def _mathverse(row):
    return str(row["sample_index"]), row["question"], str(row["answer"]), [row["image"]], row["problem_version"], None


def _mathvision(row):
    choices = _as_list(row.get("options"))
    problem = render_choices(row["question"], choices) if choices else row["question"]
    image = row.get("decoded_image") or row.get("image")
    return str(row["id"]), problem, str(row["answer"]), [image], str(row.get("subject", "all")), None


def _wemath(row):
    problem = f"{row['question']}\nChoices:\n" + row["option"].replace("; ", "\n")
    return str(row["ID"]), problem, str(row["answer"]).strip(), [row["image_path"]], row.get("key", "all"), None


def _logicvista(row):
    letters = sorted({ch for ch in str(row["answer"]) if ch in LETTERS})
    row_id = str(row.get("id", row["imagename"]))
    return row_id, row["question"], "".join(letters), [row["imagename"]], str(row.get("skill", "all")), None


def _mmmu(row):
    choices = _as_list(row["options"])
    problem = render_choices(row["question"], choices) if choices else row["question"]
    images = [row[f"image_{i}"] for i in range(1, 8) if row.get(f"image_{i}")]
    return str(row["id"]), problem, str(row["answer"]), images, str(row.get("subfield", "all")), None


def _canonical(row):
    images = row.get("images", [])
    images = images if isinstance(images, list) else [images]
    category = str(row.get("category", row.get("family", "all")))
    return str(row.get("id", "")), row["problem"], str(row["answer"]), images, category, row.get("precision")


PARSERS = {"mathvista": _mathvista, "mathverse": _mathverse, "mathvision": _mathvision, "wemath": _wemath,
           "logicvista": _logicvista, "mmmu": _mmmu, "canonical": _canonical}  # fmt: skip


def load_benchmark(path: str | Path, *, layout: str | None = None) -> list[dict]:
    """Items of a benchmark file or ``datasets`` directory; malformed rows raise naming file, row and field."""
    path = Path(path)
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: benchmark is empty")
    layout = layout or detect_layout(set(rows[0]))
    if layout not in PARSERS:
        raise DataError(f"unknown layout {layout!r}; choose one of {sorted(PARSERS)}")
    base = path if path.is_dir() else path.parent
    items = []
    for i, row in enumerate(rows):
        try:
            item_id, problem, answer, image_refs, category, precision = PARSERS[layout](row)
        except KeyError as err:
            raise DataError(f"{path}: row {i}: field {err.args[0]!r}: missing ({layout} layout)") from None
        if not str(answer).strip():
            raise DataError(f"{path}: row {i}: field 'answer': empty")
        try:
            images = [open_image(ref, base) for ref in image_refs if ref is not None]
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: row {i}: field 'images': {err}") from None
        items.append({"id": item_id or f"{path.stem}-{i}", "problem": problem, "answer": str(answer).strip(),
                      "images": images, "category": category, "precision": precision})  # fmt: skip
    return items
