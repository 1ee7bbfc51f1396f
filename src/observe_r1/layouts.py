"""Published benchmark layouts → observe-r1 items. Pure functions: no file or image is opened here.

Each parser maps one raw row (as its authors publish it) to an item:

* ``id``; ``problem`` — the question, with its options rendered and ``<imageN>`` placeholders removed (one image)
  or turned into ``(image N)`` (several), plus a short hint on the expected answer form where the benchmark has one;
* ``answer`` — an option letter for multiple choice, comma-joined letters for letter sets (``"A, C"``), else the
  gold text/number;
* ``choices`` — the option texts (``[]`` for free-form; letter-only options stay letters: they are drawn in the
  image), carried so that an answer given as the option's text scores like its letter;
* ``images`` — raw image references (paths relative to the file's folder or a parent, bytes, ``{"bytes", "path"}``);
* ``category``, ``precision`` (decimals of a float answer), ``unit``, ``answer_type``.

Layouts (detected from the columns, or forced):

=============  ==========================================================================================
canonical      observe-r1's own JSONL: ``problem``, ``answer``, ``images`` (+ optional ``choices``, …)
reference      the Observe-R1 reference code's JSONL: ``message`` (a stringified chat list) and ``answer``
mathvista      ``pid``, ``question``, ``choices`` (or null), ``answer`` (the choice *text*), ``answer_type``,
               ``precision``, ``unit``, ``image`` or ``decoded_image``, ``metadata.category``
mathverse      ``sample_index``, ``question`` (options inline), ``answer``, ``image``, ``problem_version``
mathvision     ``id``, ``question`` (with ``<image1>``), ``options`` ([], letters, or texts), ``answer``, ``image``
wemath         ``ID``, ``question``, ``option`` (one string ``"A. …;B. …; E. …"``), ``answer``, ``image_path``
logicvista     ``question`` (options inline or in the image), ``answer`` (``"A, C"``), ``imagename``, ``skill``
mmmu           ``id``, ``question`` (``<image 1>``), ``options`` (a list or its string), ``image_1`` … ``image_7``
=============  ==========================================================================================
"""

from __future__ import annotations

import ast
import json
import re

LETTERS = "ABCDEFGHIJ"

SIGNATURES = [  # first match wins
    ("mathvista", {"pid", "question", "answer_type"}),
    ("mathverse", {"sample_index", "problem_version"}),
    ("wemath", {"ID", "option"}),
    ("logicvista", {"imagename", "skill"}),
    ("mmmu", {"image_1", "options"}),
    ("mathvision", {"question", "options"}),
    ("reference", {"message", "answer"}),
    ("canonical", {"problem", "answer"}),
]

IMAGE_ONLY_QUESTION = "Answer the question shown in the image."
_PLACEHOLDER = re.compile(r"<\s*image\s*(\d+)\s*>", re.IGNORECASE)
_OPTION_START = re.compile(r"^\s*([A-J])\s*[.．:：、)]\s*", re.DOTALL)
_OPTION_SPLIT = re.compile(r"\s*;\s*(?=[A-J]\s*[.．:：、)])")
_LETTER_SET = re.compile(r"\b([A-J])\b")


class RowError(ValueError):
    """A row can't be turned into an item: ``args = (field, reason)``."""


def detect_layout(columns: set[str]) -> str | None:
    """The first layout whose required columns are all present, else None."""
    for name, required in SIGNATURES:
        if required <= columns:
            return name
    return None


def strip_placeholders(text: str, num_images: int) -> str:
    """Remove ``<image1>``-style placeholders (images come before the text), or name them when there are several.

    >>> strip_placeholders("Which kite?\\n<image1>", 1)
    'Which kite?'
    >>> strip_placeholders("Compare <image 1> and <image 2>.", 2)
    'Compare (image 1) and (image 2).'
    """
    if num_images > 1:
        text = _PLACEHOLDER.sub(lambda m: f"(image {m.group(1)})", text)
    else:
        text = _PLACEHOLDER.sub("", text)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def letter_only(choices: list[str]) -> bool:
    """True for options that are just their own letters (``["A", …, "E"]``): the option texts are in the image."""
    return bool(choices) and all(str(c).strip() == LETTERS[i] for i, c in enumerate(choices))


def render_problem(question: str, choices: list[str], hint: str | None = None) -> str:
    """The question, its options as ``(A) text`` lines (or a pointer to the image's options), then the hint.

    >>> print(render_problem("Which is larger?", ["2", "5"]))
    Which is larger?
    Choices:
    (A) 2
    (B) 5
    Answer with the letter of the correct option.
    """
    text = question.strip()
    if letter_only(choices):
        text += f"\nThe options {', '.join(LETTERS[: len(choices)])} are shown in the image."
        hint = hint or "Answer with the letter of the correct option."
    elif choices:
        text += "\nChoices:\n" + "\n".join(f"({LETTERS[i]}) {str(c).strip()}" for i, c in enumerate(choices))
        hint = hint or "Answer with the letter of the correct option."
    return f"{text}\n{hint}" if hint else text


def parse_list(value, field: str) -> list:
    """A list field that may arrive as a list, a JSON/Python list string, or null."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return []
        try:
            parsed = json.loads(value) if value.startswith("[") else None
        except json.JSONDecodeError:
            parsed = None
        if parsed is None:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise RowError(field, f"expected a list, got {value[:60]!r}") from None
        value = parsed
    if not isinstance(value, list | tuple):
        raise RowError(field, f"expected a list, got {type(value).__name__}")
    return [str(v) for v in value]


def split_options(option: str) -> list[str]:
    """We-Math's one-string options, ``"A. 300;B. 400; E. No correct answer"``, as texts in letter order.

    >>> split_options("A. 300, 400;B．30; C. 3000; E. No correct answer")
    Traceback (most recent call last):
    ...
    observe_r1.layouts.RowError: ('option', "options out of order: ['A', 'B', 'C', 'E']")
    >>> split_options("A. 300, 400;B．30; C. 3000")
    ['300, 400', '30', '3000']
    """
    parts = _OPTION_SPLIT.split(option.strip().rstrip(";"))
    letters, texts = [], []
    for part in parts:
        match = _OPTION_START.match(part)
        if not match:
            raise RowError("option", f"can't read an option letter in {part[:40]!r}")
        letters.append(match.group(1))
        texts.append(part[match.end() :].strip())
    if letters != list(LETTERS[: len(letters)]):
        raise RowError("option", f"options out of order: {letters}")
    return texts


def letter_answer(answer, choices: list[str]) -> str:
    """A multiple-choice gold as a letter: the letter itself, ``(B)``, or an option's text."""
    answer = str(answer).strip()
    if answer in choices and not letter_only(choices):
        return LETTERS[choices.index(answer)]
    letter = answer.strip("() .").upper()
    if len(letter) == 1 and letter in LETTERS[: max(len(choices), 1)]:
        return letter
    raise RowError("answer", f"{answer[:60]!r} is neither an option letter nor one of the choices")


def letter_set(answer) -> str:
    """LogicVista-style golds (``"A, C"``, ``"CA"``) as sorted comma-joined letters: ``"A, C"``."""
    letters = sorted(set(_LETTER_SET.findall(str(answer).upper())) or set(str(answer).strip().upper()))
    if not letters or any(ch not in LETTERS for ch in letters):
        raise RowError("answer", f"{str(answer)[:60]!r} is not a set of option letters")
    return ", ".join(letters)


def readable(value) -> str:
    """Category values that are lists (LogicVista ``skill``) joined with commas; None → ``all``."""
    if value is None or value == "" or value == []:
        return "all"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _item(row_id, question, answer, images, *, choices=(), category="all", hint=None, render=True, **extra) -> dict:
    """The item of one row; ``render=False`` keeps the question as written (canonical rows are already rendered)."""
    choices = list(choices)
    question = strip_placeholders(str(question or ""), len(images))
    if not question and images:  # the whole question is in the image (MATH-V has such rows)
        question = IMAGE_ONLY_QUESTION
    problem = render_problem(question, choices, hint) if render else question
    item = {"id": "" if row_id is None else str(row_id), "problem": problem, "answer": str(answer).strip(),
            "choices": choices, "images": images, "category": readable(category), "precision": None, "unit": None,
            "answer_type": None}  # fmt: skip
    item.update({k: v for k, v in extra.items() if v is not None})
    return item


def _mathvista(row):
    choices = parse_list(row.get("choices"), "choices")
    answer_type, precision, unit = row.get("answer_type"), row.get("precision"), row.get("unit")
    hint = None
    if not choices:
        if answer_type == "integer":
            hint = "Answer with an integer"
        elif answer_type == "float" and precision is not None:
            hint = f"Answer with a number with {int(precision)} decimal place{'s' if int(precision) != 1 else ''}"
        elif answer_type == "list":
            hint = "Answer with a Python list"
        if hint:
            hint += f" (unit: {unit})." if unit else "."
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    image = row.get("decoded_image") or row.get("image")
    return _item(row.get("pid", row.get("_key")), row["question"], answer, [image] if image else [],
                 choices=choices, category=metadata.get("category"), hint=hint, answer_type=answer_type,
                 precision=int(precision) if answer_type == "float" and precision is not None else None,
                 unit=unit or None)  # fmt: skip


def _mathverse(row):
    image = row.get("image")
    return _item(row["sample_index"], row["question"], row["answer"], [image] if image else [],
                 category=row.get("problem_version"))  # fmt: skip


def _mathvision(row):
    choices = parse_list(row.get("options"), "options")
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    image = row.get("decoded_image") or row.get("image")
    return _item(row.get("id", row.get("_key")), row["question"], answer, [image] if image else [],
                 choices=choices, category=row.get("subject"), level=row.get("level"))  # fmt: skip


def _wemath(row):
    choices = split_options(str(row["option"])) if str(row.get("option") or "").strip() else []
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    row_id = row["ID"] if "ID" in row else row.get("_key")
    steps = str(row_id).split("_")[0] if "_" in str(row_id) else None
    return _item(row_id, row["question"], answer, [row["image_path"]], choices=choices,
                 category=steps or row.get("knowledge concept"),
                 concept=row.get("knowledge concept"))  # fmt: skip


def _logicvista(row):
    raw = str(row["answer"]).strip()
    is_letters = bool(re.fullmatch(r"[A-Ja-j](?:\s*[,;&]?\s*(?:and\s+)?[A-Ja-j])*", raw))
    answer = letter_set(raw) if is_letters else raw  # a few answers are option numbers ("3" of 1-5)
    hint = "Answer with the letter(s) of the correct option(s)." if is_letters else None
    return _item(row.get("id", row.get("_key", row["imagename"])), row["question"], answer, [row["imagename"]],
                 category=row.get("skill"), hint=hint)  # fmt: skip


def _mmmu(row):
    choices = parse_list(row["options"], "options")
    images = [row[f"image_{i}"] for i in range(1, 8) if row.get(f"image_{i}")]
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    return _item(row["id"], row["question"], answer, images, choices=choices,
                 category=row.get("subfield"))  # fmt: skip


def _reference_message(message) -> tuple[str, list]:
    """The question text and image entries of the reference code's stringified chat list."""
    chat = message
    if isinstance(message, str):
        try:
            chat = json.loads(message)
        except json.JSONDecodeError:
            try:
                chat = ast.literal_eval(message)
            except (ValueError, SyntaxError):
                raise RowError("message", "not a chat list (JSON or Python literal)") from None
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


CANONICAL_EXTRAS = ("difficulty", "complexity", "source", "family", "level")


def _canonical(row):
    """observe-r1's layout; rows in the reference code's ``message`` form are accepted in the same file."""
    if "problem" not in row and "message" in row:
        problem, images = _reference_message(row["message"])
    else:
        problem, images = row["problem"], row.get("images", row.get("image", []))
    images = list(images) if isinstance(images, list | tuple) else [images]
    images = [im for im in images if im is not None]
    choices = parse_list(row.get("choices"), "choices")
    if not isinstance(problem, str) or not problem.strip():
        raise RowError("problem", "empty or missing problem")
    extras = {k: row.get(k) for k in ("precision", "unit", "answer_type", *CANONICAL_EXTRAS)}
    return _item(row.get("id", row.get("_key")), problem, row["answer"], images, choices=choices,
                 category=row.get("category", row.get("family")), render=False, **extras)  # fmt: skip


PARSERS = {"mathvista": _mathvista, "mathverse": _mathverse, "mathvision": _mathvision, "wemath": _wemath,
           "logicvista": _logicvista, "mmmu": _mmmu, "reference": _canonical, "canonical": _canonical}  # fmt: skip


# The column that holds a layout's images, for error messages.
IMAGE_FIELDS = {"mathvista": "image", "mathverse": "image", "mathvision": "image", "wemath": "image_path",
                "logicvista": "imagename", "mmmu": "image_N", "reference": "images",
                "canonical": "images"}  # fmt: skip


def parse_row(row: dict, layout: str) -> dict:
    """One raw row as an item; raises :class:`RowError` ``(field, reason)`` when it can't be used."""
    try:
        item = PARSERS[layout](row)
    except KeyError as err:
        raise RowError(str(err.args[0]), f"missing ({layout} layout)") from None
    if item["answer"] in ("", "None"):
        raise RowError("answer", "empty answer")
    if not item["problem"].strip():
        raise RowError("question", "empty question")
    return item
