"""Each benchmark's own figure, computed the way its authors' published evaluation code computes it.

``eval`` scores every response with observe-r1's training reward (``correct``: exact, strict) *and* with the
benchmark's official rule (``official``), then reports the figure a paper's column holds:

===========  =============================================================================================
mathvista    accuracy, and per question type, answer type, language, source, category, task, context, grade,
             skill (an item with several skills counts under each), as MathVista's ``calculate_score`` does.
             Rule: a letter or ``(x)`` picks that option, any other text the option closest by edit distance;
             integers ``str(int(float(x)))``; floats rounded to ``precision``; then string equality.
mathvision   accuracy, per subject, per level. Rule: MATH-V's rule-based answer reading (a final option letter,
             the last ``\\boxed{}``, LaTeX and units stripped), then equal to the gold letter or the gold option's
             published text: as text, or as values at two decimals after LaTeX parsing (``12.57`` = ``4\\pi``).
wemath       the four-dimensional score over each problem's sub-questions (see :func:`wemath_figures`), and
             one-/two-/three-step accuracy. Rule: the first character after the last ``Answer`` (``> < : .``
             removed) is the letter, case-sensitive.
logicvista   accuracy, per skill and per capability (broad and specific). Rule: the letters read (one character
             as is, a–e or a digit; a longer answer's standalone letters) equal the gold's, case-insensitive.
mathverse    accuracy per problem version. Rule: observe-r1's reward (MathVerse's own scorer uses an LLM judge).
mmmu         accuracy per subject and per discipline. Rule: observe-r1's reward (letters; numbers; text).
===========  =============================================================================================

Figures are fractions in [0, 1]. With several samples per item the official figure uses sample 0 (a greedy run
has only that); ``mean_over_samples`` averages each figure over the samples.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from observe_r1.layouts import LETTERS
from observe_r1.mathpool import bounded_map

BENCHMARKS = ("mathvista", "mathvision", "wemath", "logicvista", "mathverse", "mmmu")

# How each benchmark's authors score a row whose gold is empty or unreadable (observe-r1 does the same).
UNSCOREABLE_SCORED_AS = {
    "mathvista": "wrong: no normalised answer equals an empty gold string",
    "mathvision": "wrong: MATH-V's comparison refuses a blank side; an unparseable gold matches only as text",
    "wemath": "wrong: no letter equals an empty gold",
    "logicvista": "right only for an empty answer (LogicVista's script compares the empty gold's letters, [''])",
    "mathverse": "wrong (observe-r1's reward: an unparseable gold never scores)",
    "mmmu": "wrong (observe-r1's reward: an unparseable gold never scores)",
}

MMMU_DISCIPLINES = {
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": ["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                            "Pharmacy", "Public_Health"],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": ["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                             "Energy_and_Power", "Materials", "Mechanical_Engineering"],
}  # fmt: skip
_MMMU_SUBJECT_DISCIPLINE = {s: d for d, subjects in MMMU_DISCIPLINES.items() for s in subjects}


# -------------------------------------------------------------------------------------------- per-row rules
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character).

    >>> edit_distance("kitten", "sitting")
    3
    """
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def gold_text(item: dict) -> str:
    """The gold as its authors publish it: the option's text for a letter gold with texted options."""
    answer, choices = item["answer"], item.get("choices") or []
    if len(answer) == 1 and answer in LETTERS and LETTERS.index(answer) < len(choices):
        return str(choices[LETTERS.index(answer)])
    return answer


def mathvista_correct(extracted: str | None, item: dict) -> bool:
    """MathVista's rule: normalise the extraction by the problem's type, then compare as strings with the gold.

    >>> item = {"answer": "B", "choices": ["2 cm", "5 cm"], "meta": {"question_type": "multi_choice"}}
    >>> mathvista_correct("(B)", item), mathvista_correct("5cm", item), mathvista_correct("A", item)
    (True, True, False)
    >>> item = {"answer": "1.2", "choices": [], "precision": 1, "meta": {"question_type": "free_form",
    ...         "answer_type": "float"}}
    >>> mathvista_correct("1.23", item), mathvista_correct("1.3", item)
    (True, False)
    """
    if extracted is None:
        return False
    meta = item.get("meta") or {}
    choices = [str(c) for c in item.get("choices") or []]
    if meta.get("question_type") == "multi_choice" and choices:
        text = extracted.strip()
        letter = re.findall(r"\(([a-zA-Z])\)", text)
        if letter:
            text = letter[0].upper()
        letters = list(LETTERS[: len(choices)])
        if text in letters:
            normalised = choices[letters.index(text)]
        else:
            distances = [edit_distance(text, c) for c in choices]
            normalised = choices[distances.index(min(distances))]
    elif meta.get("answer_type") == "integer":
        try:
            normalised = str(int(float(extracted)))
        except (ValueError, OverflowError):
            normalised = None
    elif meta.get("answer_type") == "float":
        try:
            normalised = str(round(float(extracted), int(item.get("precision") or 0)))
        except (ValueError, OverflowError):
            normalised = None
    else:
        normalised = str(extracted)
    return normalised == gold_text(item)


# ---- MATH-V: its answer reading (a rule-based re-extraction), then its comparison
def _latex_value(text: str) -> float | None:
    """The numeric value of a LaTeX expression as MATH-V computes it, without running any text as code.

    MATH-V parses with latex2sympy, prints the expression and evaluates the printed text with Python's ``math`` names
    and no builtins: a printed name that ``math`` lacks (``csc``, ``E``, ``Abs``, a free symbol ``x``) gives no value,
    one it has (``pi``, ``sqrt``, a free ``e``) gives ``math``'s. Here the same names decide, and sympy evaluates the
    expression numerically (30 digits). None when there is no finite value. MATH-V's parser (the original
    latex2sympy2) reads neither ``\\boxed``, ``^{\\circ}``, an escaped ``\\$``, the spacing ``\\!``, ``{,}``, ``\\(``
    nor a bare ``%`` (nor ``\\%`` after a space): text with them has no value (such golds match only as text); it
    reads a text wrapped in braces as its content, a digit before ``\\frac`` and space-separated digits as products
    (``2\\frac{1}{2}`` is 1, ``1 010`` is 10). Untrusted text: call it inside :func:`official_verdicts`' bound.

    >>> _latex_value("4\\\\pi"), _latex_value("\\\\frac{1}{2}"), _latex_value("\\\\csc 2"), _latex_value("x+1")
    (12.566370614359172, 0.5, None, None)
    """
    if any(token in text for token in _MATHV_UNREADABLE) or _UNREADABLE_PERCENT.search(text):
        return None
    while _ONE_GROUP.fullmatch(text) and _balanced(text[1:-1]):  # it reads "{12}" as 12
        text = text[1:-1]
    text = _MIXED_NUMBER.sub(r"\1 \\cdot \\frac", text)  # it reads 2\frac{1}{2} as 2 · 1/2
    text = _SPACED_DIGITS.sub(r"\1 \\cdot ", text)  # and "1 010" as 1 · 10
    try:
        import sympy
        from latex2sympy2_extended import latex2sympy

        expr = latex2sympy(text)
        if isinstance(expr, sympy.logic.boolalg.BooleanAtom):  # Python reads a printed True / False as 1 / 0
            return float(bool(expr))
        if any(name not in _MATH_NAMES for name in _NAME.findall(str(expr))):
            return None
        constants = {s: sympy.Float(_MATH_NAMES[s.name], 30) for s in expr.free_symbols}  # a free e, pi, tau
        value = complex(expr.doit().subs(constants).evalf(30))  # doit: latex2sympy keeps some parts unevaluated
    except Exception:  # noqa: BLE001 - the parser raises many unrelated types on text that is not maths
        return None
    if value.imag != 0 or not math.isfinite(value.real):
        return None
    return value.real


_MATH_NAMES = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
# What MATH-V's parser (the original latex2sympy2) can't read, where latex2sympy2_extended can: no value then.
# "\\!" and "{,}" are LaTeX spacing in thousands separators (row 2125's options: $1,\\!507,\\!509$).
_MATHV_UNREADABLE = ("\\boxed", "\\circ", "\\$", "\\!", "{,}", "\\(", '"')
_UNREADABLE_PERCENT = re.compile(r"(?<!\\)%|\s\\%")  # a bare %, or \% after a space
_ONE_GROUP = re.compile(r"\{.*\}", re.S)
_MIXED_NUMBER = re.compile(r"(\d)\s*\\frac")
_SPACED_DIGITS = re.compile(r"(\d)\s+(?=\d)")


def _balanced(text: str) -> bool:
    """Whether every brace of ``text`` closes in order (so ``{a}{b}`` is not one group around ``a}{b``)."""
    depth = 0
    for char in text:
        depth += (char == "{") - (char == "}")
        if depth < 0:
            return False
    return depth == 0


_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")  # identifiers of a printed sympy expression (digits in 1e-5 aside)


def _braced_single_chars(text: str, command: str) -> str:
    r"""``\sqrt2`` -> ``\sqrt{2}`` and ``\frac12`` -> ``\frac{1}{2}``: single-character arguments braced."""
    head, *rest = text.split(command)
    out = head
    for part in rest:
        out += command
        if not part or part[0] == "{":
            out += part
        elif command == "\\sqrt":
            out += "{" + part[0] + "}" + part[1:]
        elif len(part) < 2:
            return text
        elif part[1] == "{":
            out += "{" + part[0] + "}" + part[1:]
        else:
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
    return out


def _mathv_clean(text: str) -> str:
    """MATH-V's MATH-style clean-up of an answer: LaTeX decorations, units after ``\text{ ``, ``$`` and ``%``
    dropped, a lone ``=`` or ``\approx`` keeps its right side, ``0.5`` and ``a/b`` written as fractions."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")):  # fmt: skip
        text = text.replace(old, new)
    text = text.split("\\text{ ")[0].replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    for sign in ("=", "\\approx"):
        if len(text.split(sign)) == 2:
            text = text.split(sign)[1]
    if "sqrt" in text:
        text = _braced_single_chars(text, "\\sqrt")
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _braced_single_chars(text, "\\frac")
    if text == "0.5":
        return "\\frac{1}{2}"
    fraction = re.fullmatch(r"(-?\d+)/(-?\d+)", text)
    if fraction and text == f"{int(fraction.group(1))}/{int(fraction.group(2))}":
        return f"\\frac{{{int(fraction.group(1))}}}{{{int(fraction.group(2))}}}"
    return text


def _mathv_final(text: str) -> str:
    """MATH-V's final-answer reading: lower case, the last ``\boxed{…}`` content, the right side of the last
    ``=`` / ``\approx``, spacing, ``\text``, degree signs and a few units removed, then :func:`_mathv_clean`."""
    text = text.lower().replace("{}", "")
    boxed = re.findall(r"oxed{(.*)}", text, flags=re.S)
    answer = boxed[-1] if boxed else text
    close, open_ = answer.find("}"), answer.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        answer = answer.split("}")[0]
    answer = answer.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""),
                     ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""),
                     ("{km}", ""), ("km", "")):  # fmt: skip
        answer = answer.replace(old, new)
    return _mathv_clean(answer)


def _is_number(text: str) -> bool:
    """Whether Python reads ``text`` as a float (as MATH-V's check does: ``inf`` and ``1_000`` included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def mathvision_answer(response: str) -> str:
    """The answer MATH-V's evaluation reads from a response (here: the extracted answer): a closing/opening
    option letter, a number after the last ``is ``, the text after "the answer is"-style phrases, the last
    ``\boxed{}``; then :func:`_mathv_final` and option labels ``(a)`` / ``{a}`` unwrapped.

    >>> mathvision_answer("\\boxed{D}"), mathvision_answer("So the answer is 12.5."), mathvision_answer("(B)\\nok")
    ('d', '12.5', 'b')
    """
    answer = response.strip()
    for c in "ABCDE":
        if answer.endswith((f" {c}.", f" ({c}).")) or answer.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n")):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        for phrase in ("the final answer is", "the answer is", "the correct answer is", "the answer should be"):
            for spelling in (phrase, phrase.replace("the", "The")):
                found = spelling in answer
                answer = answer.split(spelling)[-1].strip()
                if found:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = _mathv_final(answer)
    for c in "abcde":
        answer = answer.replace(f"({c})", c).replace(f"{{{c}}}", c)
    return answer.rstrip(".").lstrip(":").strip()


def _mathv_tuple(text: str):
    """``(a,b)`` / ``[a,b]`` with each element's value at two decimals (``infty``, ``a``, ``-a`` kept); else the
    text as it is."""
    if len(text) < 2 or (text[0], text[-1]) not in (("(", ")"), ("[", "]")) or len(text[1:-1].split(",")) < 2:
        return text
    parts = []
    for part in text[1:-1].split(","):
        if "infty" in part or part in ("a", "-a"):
            parts.append(part)
            continue
        value = _latex_value(part)
        if value is None:
            return text
        parts.append(str(round(value, 2)))
    return text[0] + ",".join(parts) + text[-1]


def mathvision_equal(answer: str, gold: str) -> bool:
    """MATH-V's comparison: case-insensitive text, element-wise tuples, else equal values at two decimals.
    A blank side never matches; a gold that does not parse matches only as text.

    >>> mathvision_equal("12.57", "4\\\\pi"), mathvision_equal("\\\\frac{1}{2}", "0.5"), mathvision_equal("3", "4")
    (True, True, False)
    """
    answer, gold = answer.lower(), gold.lower()
    if not answer.replace(" ", "") or not gold.replace(" ", ""):
        return False
    if answer.strip() == gold.strip():
        return True
    answer, gold = _mathv_tuple(answer), _mathv_tuple(gold)
    if answer == gold:
        return True
    a, g = _latex_value(answer), _latex_value(gold)
    return a is not None and g is not None and round(a, 2) == round(g, 2)


def mathvision_correct(extracted: str | None, item: dict) -> bool:
    """MATH-V's rule: its answer reading, then equal to the gold letter *or* the gold option's published text."""
    if extracted is None:
        return False
    answer = mathvision_answer(extracted)
    options = (item.get("meta") or {}).get("options") or item.get("choices") or []
    gold = item["answer"]
    gold_option = options[LETTERS.index(gold)] if options and gold in LETTERS[: len(options)] else ""
    return mathvision_equal(answer, gold) or mathvision_equal(answer, gold_option)


# ---- We-Math and LogicVista: how their scripts read option letters
def wemath_letter(extracted: str | None) -> str | None:
    """We-Math's reading: the text after the last ``Answer``, without ``> < : .``; its first character if that is
    one of A–H (case-sensitive: ``(B)`` and ``b`` read as nothing).

    >>> wemath_letter("B"), wemath_letter("Answer: C. 120°"), wemath_letter("(B)"), wemath_letter("b")
    ('B', 'C', None, None)
    """
    text = extracted or ""
    if "Answer" in text:
        text = text[text.rindex("Answer") + len("Answer") :]
    text = re.sub(r"[><:.]", "", text.strip()).strip()
    return text[0] if text and text[0] in "ABCDEFGH" else None


def logicvista_letters(extracted: str | None) -> list[str]:
    """LogicVista's reading, lower-cased and sorted: an empty answer is ``[""]``; one character is itself when it is
    a digit or a letter a–e (other letters and symbols read as nothing); a longer answer goes to an LLM in the
    authors' script, here to its standalone option letters (A–J, either case) and digits (options numbered 1–4).

    >>> logicvista_letters("c and a"), logicvista_letters("F"), logicvista_letters(""), logicvista_letters("3")
    (['a', 'c'], ['zzzzz'], [''], ['3'])
    >>> logicvista_letters("(3)"), logicvista_letters("The answer is 2.")
    (['3'], ['2'])
    """
    text = (extracted or "").strip()
    if not text:
        return [""]
    if len(text) == 1:
        readable = text.isdigit() or text.lower() in "abcde"
        return [text.lower()] if readable else ["zzzzz"]
    letters = re.findall(r"(?<![A-Za-z0-9])\(?([A-Ja-j0-9])(?![A-Za-z0-9])", text)
    return sorted(letter.lower() for letter in letters) or ["zzzzz"]


def logicvista_correct(extracted: str | None, item: dict) -> bool:
    """LogicVista's rule: the letters read equal the gold's (``"A, C"``), as sorted lower-case lists."""
    return logicvista_letters(extracted) == sorted(g.lower() for g in item["answer"].split(", "))


def official_correct(benchmark: str, extracted: str | None, item: dict, reward_correct: bool) -> bool:
    """One response's verdict under ``benchmark``'s official rule (``reward_correct``: observe-r1's verdict, the
    rule where the authors score with an LLM judge: MathVerse, MMMU)."""
    if benchmark == "mathvista":
        return bool(item["answer"].strip()) and mathvista_correct(extracted, item)
    if benchmark == "mathvision":
        return mathvision_correct(extracted, item)
    if benchmark == "wemath":
        return bool(item["answer"]) and wemath_letter(extracted) == item["answer"]
    if benchmark == "logicvista":
        return logicvista_correct(extracted, item)
    return reward_correct and bool(item["answer"].strip())


def official_verdicts(benchmark: str, rows: list[dict], items_by_id: dict, *, timeout: float = 3.0,
                      workers: int = 2) -> tuple[list[bool], list[bool]]:  # fmt: skip
    """:func:`official_correct` for every prediction row (``extracted``, ``correct``, ``id``), each reading bounded
    like the training reward's: ``timeout`` seconds in a worker process. A row that runs past it, or whose reading
    raises, is wrong. Returns, per row, the verdict and whether its reading ran past the bound (per row, not per id:
    the other samples of an item keep their own)."""
    args = [(benchmark, row["extracted"], items_by_id[row["id"]], row["correct"]) for row in rows]
    results = bounded_map(official_correct, args, timeout=timeout, workers=workers)
    return [result is True for result in results], [result == "timeout" for result in results]


# ------------------------------------------------------------------------------------------------ figures
def _rate(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def _by(items: list[dict], verdicts: dict[str, bool], field: str, split: str | None = None) -> dict[str, float]:
    """Accuracy per value of ``meta[field]`` (an item with a list of values counts under each; with ``split``, a
    combined value also counts under each of its parts)."""
    groups = defaultdict(list)
    for item in items:
        value = (item.get("meta") or {}).get(field)
        values = list(value) if isinstance(value, list | tuple) else [value]
        if split:
            values = [part for v in values for part in str(v).split(split)]
        for v in values:
            if v is not None and v != "":
                groups[str(v)].append(verdicts[item["id"]])
    return {k: _rate(v) for k, v in sorted(groups.items())}


def wemath_figures(items: list[dict], verdicts: dict[str, bool]) -> dict:
    """We-Math's four dimensions over problems (rows sharing ``ID``; ``key`` ``*_multi`` is the composite).

    Per problem: IG = every sub-question right, composite wrong; IK = some sub-question wrong, composite wrong;
    CM (strict) = all right; RM (strict) = some sub-question wrong, composite right; CM (loose) = composite right
    and some sub-question right; RM (loose) = composite right, every sub-question wrong. Score =
    (problems − 0.5·IG − RM − IK) / problems. Rates: IK, IG and CM over all problems; RM over the problems whose
    composite is right (CM + RM). One-step accuracy is over the sub-question rows, two- and three-step over the
    composites of two- and three-step problems.

    >>> rows = [("p1", "2steps_1", True), ("p1", "2steps_2", True), ("p1", "2steps_multi", False),
    ...         ("p2", "2steps_1", False), ("p2", "2steps_2", True), ("p2", "2steps_multi", True)]
    >>> items = [{"id": str(i), "meta": {"ID": p, "key": k}} for i, (p, k, _) in enumerate(rows)]
    >>> f = wemath_figures(items, {str(i): ok for i, (_, _, ok) in enumerate(rows)})
    >>> f["IG"]["count"], f["RM_strict"]["count"], f["CM_loose"]["count"], f["score_strict"], f["score_loose"]
    (1, 1, 1, 0.25, 0.75)
    """
    problems: dict[str, dict] = defaultdict(lambda: {"subs": [], "composite": None})
    steps_rows: dict[str, list[bool]] = defaultdict(list)
    for item in items:
        meta = item.get("meta") or {}
        problem, key, ok = str(meta.get("ID")), str(meta.get("key") or ""), verdicts[item["id"]]
        if key.endswith("_multi"):
            problems[problem]["composite"] = ok
            steps_rows["three" if key.startswith("3") else "two"].append(ok)
        else:
            problems[problem]["subs"].append(ok)
            steps_rows["one"].append(ok)
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    complete = [p for p in problems.values() if p["composite"] is not None and p["subs"]]
    for p in complete:
        subs_all, subs_any, composite = all(p["subs"]), any(p["subs"]), p["composite"]
        if composite:
            counts["CM_strict" if subs_all else "RM_strict"] += 1
            counts["CM_loose" if subs_any else "RM_loose"] += 1
        else:
            counts["IG" if subs_all else "IK"] += 1
    n = len(complete)
    right_composite = counts["CM_strict"] + counts["RM_strict"]
    figures = {"n_problems": n, "n_incomplete_problems": len(problems) - n}
    figures["score_strict"] = (n - 0.5 * counts["IG"] - counts["RM_strict"] - counts["IK"]) / n if n else 0.0
    figures["score_loose"] = (n - 0.5 * counts["IG"] - counts["RM_loose"] - counts["IK"]) / n if n else 0.0
    for key, count in counts.items():
        denominator = right_composite if key.startswith("RM") else n
        figures[key] = {"count": count, "rate": count / denominator if denominator else 0.0}
    for steps in ("one", "two", "three"):
        figures[f"{steps}_step_accuracy"] = _rate(steps_rows[steps])
    figures["accuracy"] = _rate(list(verdicts.values()))
    return figures


def mmmu_figures(items: list[dict], verdicts: dict[str, bool]) -> dict:
    """Accuracy overall, per subject (from ids like ``validation_Art_Theory_3``) and per discipline."""
    subjects, disciplines = defaultdict(list), defaultdict(list)
    for item in items:
        subject = re.sub(r"^(?:dev|validation|test)_|_\d+$", "", item["id"])
        subjects[subject].append(verdicts[item["id"]])
        disciplines[_MMMU_SUBJECT_DISCIPLINE.get(subject, "other")].append(verdicts[item["id"]])
    return {"accuracy": _rate(list(verdicts.values())),
            "per_subject": {k: _rate(v) for k, v in sorted(subjects.items())},
            "per_discipline": {k: _rate(v) for k, v in sorted(disciplines.items())}}  # fmt: skip


GROUPS = {
    "mathvista": {"per_question_type": "question_type", "per_answer_type": "answer_type", "per_language": "language",
                  "per_source": "source", "per_category": "category", "per_task": "task", "per_context": "context",
                  "per_grade": "grade", "per_skill": "skills"},
    "mathvision": {"per_subject": "subject", "per_level": "level"},
    # LogicVista's script finds a capability name inside the row's value: "diagram and ocr" counts under both
    "logicvista": {"per_skill": "skill", "per_capability": ("broad_capability", " and "),
                   "per_specific_capability": "specific_capability"},
    "mathverse": {"per_problem_version": "problem_version"},
}  # fmt: skip


def figures(benchmark: str, items: list[dict], verdicts: dict[str, bool]) -> dict:
    """The benchmark's official figures for one verdict per item (``verdicts``: id -> official verdict)."""
    if benchmark == "wemath":
        return wemath_figures(items, verdicts)
    if benchmark == "mmmu":
        return mmmu_figures(items, verdicts)
    out = {"accuracy": _rate([verdicts[it["id"]] for it in items])}
    for name, spec in GROUPS.get(benchmark, {}).items():
        out[name] = _by(items, verdicts, *(spec if isinstance(spec, tuple) else (spec,)))
    return out


def _mean(values: list):
    """Element-wise mean of figure trees of the same shape (numbers averaged, dicts recursed)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values if k in v]) for k in first}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return sum(values) / len(values)
    return first


def official_results(benchmark: str | None, items: list[dict], rows: list[dict]) -> dict | None:
    """``results.json``'s ``official`` block from prediction rows (``id``, ``sample``, ``official``)."""
    if benchmark not in BENCHMARKS:
        return None
    by_sample: dict[int, dict[str, bool]] = defaultdict(dict)
    for row in rows:
        by_sample[row["sample"]][row["id"]] = row["official"]
    scored = [it for it in items if it["id"] in by_sample[0]]
    per_sample = [figures(benchmark, [it for it in scored if it["id"] in by_sample[s]], by_sample[s])
                  for s in sorted(by_sample)]  # fmt: skip
    out = {"benchmark": benchmark, "uses": "sample 0", "n_samples": len(per_sample), "sample_0": per_sample[0],
           "unscoreable_scored_as": UNSCOREABLE_SCORED_AS[benchmark]}  # fmt: skip
    if len(per_sample) > 1:
        out["mean_over_samples"] = _mean(per_sample)
    return out


def headline(official: dict) -> list[tuple[str, float]]:
    """The figures a paper's column holds, as ``(name, value)`` pairs for summaries (none for an empty block)."""
    if not official:
        return []
    fig = official["sample_0"]
    if official["benchmark"] == "wemath":
        return [("score (strict)", fig["score_strict"]), ("score (loose)", fig["score_loose"])]
    return [("accuracy", fig["accuracy"])]
