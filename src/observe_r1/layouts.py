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
# An option label: a letter and a stop, at the start or after a separator, followed by some text (not at once by
# another separator: We-Math has corrupted texts such as "… to get Shape ;C.; B. …" where ";C.;" is not a label).
_OPTION_LABEL = re.compile(r"(?:^|(?<=[;；\s]))([A-J])\s*[.．:：、)]\s*(?=[^;；\s])")
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
        text += "\nChoices:\n" + "\n".join(
            f"({LETTERS[i]}) {str(c).strip()}" for i, c in enumerate(choices) if str(c).strip()
        )
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
    """We-Math's one-string options as texts indexed by letter (``texts[0]`` is A, ``texts[5]`` is F).

    Split on the letter labels themselves, not on ``;``: a ``;`` can sit inside an option text and separators
    go missing. Labels are read in order of appearance and must rise (A, B, C, F is fine); a letter that does not
    rise is part of a text. Letters skipped by the options (D and E in A, B, C, F) get an empty text, which
    :func:`render_problem` leaves out, so that every option keeps its published letter.

    >>> split_options("A. 300, 400;B．30; C. 3000; E. No correct answer")
    ['300, 400', '30', '3000', '', 'No correct answer']
    >>> split_options("A. 45° B. 60° ;C. 120°; D. No correct answer")
    ['45°', '60°', '120°', 'No correct answer']
    >>> split_options("A. Shape A to get Shape ;C.; B. Shape A then ;C.; C. No")
    ['Shape A to get Shape ;C.', 'Shape A then ;C.', 'No']
    """
    text = option.strip()
    labels = []
    for match in _OPTION_LABEL.finditer(text):
        if not labels or match.group(1) > labels[-1].group(1):
            labels.append(match)
    if not labels or labels[0].start() != 0:
        raise RowError("option", f"can't read an option letter at the start of {text[:40]!r}")
    texts = [""] * (LETTERS.index(labels[-1].group(1)) + 1)
    for match, following in zip(labels, labels[1:] + [None], strict=True):
        body = text[match.end() : following.start() if following else len(text)]
        texts[LETTERS.index(match.group(1))] = body.strip().rstrip(";；").strip()
    return texts


def letter_answer(answer, choices: list[str], *, gold_is_text: bool = False) -> str:
    """A multiple-choice gold as a letter: the letter itself, ``(B)``, or an option's text.

    A gold that is both a letter and an option's text (We-Math: options ``F; D; B; I`` with gold ``D``) is read
    as the layout publishes its golds: a letter, or the option's text where ``gold_is_text`` (MathVista).

    >>> letter_answer("D", ["F", "D", "B", "I"]), letter_answer("D", ["F", "D", "B", "I"], gold_is_text=True)
    ('D', 'B')
    """
    answer = str(answer).strip()
    is_letter = len(answer.strip("() .")) == 1 and answer.strip("() .").upper() in LETTERS[: len(choices)]
    if answer and answer in choices and not letter_only(choices) and (gold_is_text or not is_letter):
        return LETTERS[choices.index(answer)]
    letter = answer.strip("() .").upper()
    if len(letter) == 1 and letter in LETTERS[: max(len(choices), 1)]:
        if choices and not str(choices[LETTERS.index(letter)]).strip():
            raise RowError("answer", f"{answer!r} names an option the row does not have")
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
    answer = "" if answer is None else str(answer).strip()
    item = {"id": "" if row_id is None else str(row_id), "problem": problem, "answer": answer,
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
    answer = letter_answer(row["answer"], choices, gold_is_text=True) if choices else row["answer"]
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    image = row.get("decoded_image") or row.get("image")
    # its scorer groups accuracy by the metadata fields and by question and answer type (official.GROUPS)
    meta = {**metadata, "question_type": row.get("question_type"), "answer_type": answer_type}
    return _item(row.get("pid", row.get("_key")), row["question"], answer, [image] if image else [],
                 choices=choices, category=metadata.get("category"), hint=hint, answer_type=answer_type,
                 precision=int(precision) if answer_type == "float" and precision is not None else None,
                 unit=unit or None, meta=meta)  # fmt: skip


def _mathverse(row):
    image = row.get("image")
    return _item(row["sample_index"], row["question"], row["answer"], [image] if image else [],
                 category=row.get("problem_version"),
                 meta={"problem_version": row.get("problem_version")})  # fmt: skip


def _mathvision(row):
    choices = parse_list(row.get("options"), "options")
    published = list(choices)  # MATH-V's own scorer compares answers with these texts
    if choices and all(_PLACEHOLDER.fullmatch(c.strip()) for c in choices):  # ['<image2>', …]: option pictures
        choices = list(LETTERS[: len(choices)])  # are drawn inside the row's one image, like letter-only options
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    image = row.get("decoded_image") or row.get("image")
    return _item(row.get("id", row.get("_key")), row["question"], answer, [image] if image else [],
                 choices=choices, category=row.get("subject"), level=row.get("level"),
                 meta={"subject": row.get("subject"), "level": row.get("level"), "options": published})  # fmt: skip


def _wemath(row):
    """One We-Math row: a sub-question or the composite question of a problem (``ID``) with several rows.

    The row's id is its ``question number`` (unique); ``ID`` (the problem) and ``key`` (``2steps_1`` …
    ``3steps_multi``, which sub-question this row is) are kept for the four-dimensional metric."""
    choices = split_options(str(row["option"])) if str(row.get("option") or "").strip() else []
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    problem_id = row.get("ID", row.get("_key"))
    row_id = row["question number"] if row.get("question number") is not None else problem_id
    steps = str(problem_id).split("_")[0] if "_" in str(problem_id) else None
    return _item(row_id, row["question"], answer, [row["image_path"]], choices=choices,
                 category=steps or row.get("knowledge concept"), concept=row.get("knowledge concept"),
                 meta={"ID": problem_id, "key": row.get("key")})  # fmt: skip


def _logicvista(row):
    raw = str(row["answer"]).strip()
    is_letters = bool(re.fullmatch(r"[A-Ja-j](?:\s*[,;&]?\s*(?:and\s+)?[A-Ja-j])*", raw))
    answer = letter_set(raw) if is_letters else raw  # a few answers are option numbers ("3" of 1-5)
    hint = "Answer with the letter(s) of the correct option(s)." if is_letters else None
    meta = {k: row.get(k) for k in ("skill", "broad_capability", "specific_capability") if k in row}
    return _item(row.get("id", row.get("_key", row["imagename"])), row["question"], answer, [row["imagename"]],
                 category=row.get("skill"), hint=hint, meta=meta)  # fmt: skip


def _mmmu(row):
    choices = parse_list(row["options"], "options")
    images = [row[f"image_{i}"] for i in range(1, 8) if row.get(f"image_{i}")]
    answer = letter_answer(row["answer"], choices) if choices else row["answer"]
    return _item(row["id"], row["question"], answer, images, choices=choices,
                 category=row.get("subfield"), meta={"subfield": row.get("subfield")})  # fmt: skip


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


CANONICAL_EXTRAS = ("difficulty", "complexity", "source", "family", "level", "stretch_level")


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
    """One raw row as an item; raises :class:`RowError` ``(field, reason)`` when it can't be used.

    A gold answer that no rule can score (empty, unparseable) is not decided here: see
    :func:`observe_r1.rewards.unscoreable`."""
    try:
        item = PARSERS[layout](row)
    except KeyError as err:
        raise RowError(str(err.args[0]), f"missing ({layout} layout)") from None
    if not item["problem"].strip():
        raise RowError("question", "empty question")
    return item
