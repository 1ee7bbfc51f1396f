"""Rule rewards of Observe-R1 (docs/method.md §3): the observe/think/answer format and answer accuracy.

String-level cores (``format_reward``, ``extract_answer``, ``accuracy_reward``) plus TRL-signature adapters
(``FormatReward``, ``AccuracyReward``) and a parallel, time-bounded batch scorer (``score_completions``) used by
the trainer, the ladder builder and the evaluator.

    >>> format_reward("<observe>a red square</observe> <think>one shape</think> <answer>1</answer>")
    1.0
    >>> accuracy_reward("<observe>x</observe><think>y</think><answer>(B) 5 cm</answer>", "B")
    1.0

Letters, plain integers and short text are decided in the calling thread; everything that needs sympy goes to
the time-bounded worker processes of :mod:`observe_r1.mathpool` (a timeout scores 0 and is counted).
"""

from __future__ import annotations

import re

from observe_r1.layouts import LETTERS
from observe_r1.mathpool import INTEGER, MAX_ANSWER_CHARS, REWARD_STATS, gold_parses, math_equal_many

TAGS = ("<observe>", "</observe>", "<think>", "</think>", "<answer>", "</answer>")


# ---------------------------------------------------------------------------------------------- format (§3)
def format_reward(completion: str) -> float:
    """1.0 if ``completion`` is ``<observe>X</observe> <think>Y</think> <answer>Z</answer>`` or
    ``<think>Y1 <observe>X</observe> Y2</think> <answer>Z</answer>``, else 0.0.

    Each of the six lower-case tags appears exactly once, X, Z and the think reasoning (Y, or Y1+Y2) are not blank,
    and only whitespace separates the blocks or surrounds the whole. Linear time: ``str.count``/``find`` only.
    """
    text = completion.strip()
    if any(text.count(tag) != 1 for tag in TAGS):
        return 0.0
    o0, o1, t0, t1, a0, a1 = (text.find(tag) for tag in TAGS)
    if not (text.endswith("</answer>") and t1 < a0 < a1 and text[t1 + 8 : a0].strip() == ""):
        return 0.0
    answer = text[a0 + 8 : a1]
    observe = text[o0 + 9 : o1]
    if o0 == 0:  # flat form: observe, then think
        ok = o1 < t0 and text[o1 + 10 : t0].strip() == "" and bool(text[t0 + 7 : t1].strip())
    elif t0 == 0:  # nested form: observe inside think, with reasoning beside it (§3; the reference skipped checks)
        ok = t0 < o0 < o1 < t1 and bool((text[7:o0] + text[o1 + 10 : t1]).strip())
    else:
        ok = False
    return 1.0 if ok and observe.strip() and answer.strip() else 0.0


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def extract_answer(completion: str) -> str | None:
    """Content of the single ``<answer>…</answer>`` (multi-line kept), else the last ``\\boxed{…}``, else None."""
    if completion.count("<answer>") == 1 and completion.count("</answer>") == 1:
        start, end = completion.find("<answer>") + 8, completion.find("</answer>")
        if start <= end:
            return completion[start:end].strip()
    boxed = _last_boxed(completion)
    return boxed.strip() if boxed is not None else None


# -------------------------------------------------------------------------------------------- accuracy (§3)
_LETTER_SET_GOLD = re.compile(r"[A-J](?:\s*,\s*[A-J])+")
_LETTER_GOLD = re.compile(r"\(?([A-J])\)?")
_LETTER_TOKEN = re.compile(r"(?<![A-Za-z0-9])\(?([A-J])(?![A-Za-z0-9])")
_TEXT_GOLD = re.compile(r"[A-Za-z][A-Za-z '\-]*[A-Za-z]")


def gold_kind(answer: str) -> str:
    """How a gold answer is compared: ``letter``, ``letters`` (a set, "A, C"), ``text`` (words), or ``math``."""
    answer = answer.strip()
    if _LETTER_SET_GOLD.fullmatch(answer):
        return "letters"
    if _LETTER_GOLD.fullmatch(answer):
        return "letter"
    if _TEXT_GOLD.fullmatch(answer):
        return "text"
    return "math"


def unscoreable(answer, *, max_text_words: int | None = None) -> str | None:
    """Why no rule can score against the gold ``answer`` (None if one can): empty, longer than
    ``MAX_ANSWER_CHARS``, maths that math-verify can't read, or (with ``max_text_words``, as the ladder's verifiable
    filter asks) free-form text of more words than that.

    The one rule for "unverifiable": the loaders (eval counts such rows, train drops them) and the ladder's
    verifiable filter all call it.

        >>> unscoreable(""), unscoreable("B"), unscoreable("A, C"), unscoreable("\\frac{3}{4}")
        ('empty answer', None, None, None)
        >>> unscoreable("the red one on the left", max_text_words=3)
        'free-form text answer (> 3 words)'
    """
    answer = "" if answer is None else str(answer).strip()
    if not answer:
        return "empty answer"
    if len(answer) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} characters"
    kind = gold_kind(answer)
    if kind == "text" and max_text_words is not None and len(answer.split()) > max_text_words:
        return f"free-form text answer (> {max_text_words} words)"
    if kind == "math" and not INTEGER.fullmatch(answer) and not gold_parses(answer):
        return f"answer {answer[:60]!r} can't be parsed as a number or LaTeX"
    return None


def unscoreable_kind(reason: str) -> str:
    """A reason given by :func:`unscoreable`, without the gold it may quote: what loaders and filters count.

    >>> unscoreable_kind("answer '\\frac{1}{2' can't be parsed as a number or LaTeX"), unscoreable_kind("empty answer")
    ("answer can't be parsed", 'empty answer')
    """
    return "answer can't be parsed" if reason.startswith("answer '") else reason


def _normalize_text(text: str) -> str:
    return " ".join(text.casefold().replace("\\text{", "").replace("}", "").split()).rstrip(".")


_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


def _letters_in(prediction: str, allowed: str) -> set[str]:
    return {letter for letter in _LETTER_TOKEN.findall(prediction) if letter in allowed}


_LEADING_LABEL = re.compile(r"\(?([A-J])\s*[).:：](?:\s|$)")


def _option_hits(prediction: str, choices, normalize) -> list[int]:
    """The options whose text the prediction is, under ``normalize``."""
    wanted = normalize(prediction)
    return [i for i, c in enumerate(choices) if normalize(str(c)) == wanted]


def decide_answer(prediction: str, gold: str, choices=(), precision: int | None = None) -> bool | tuple[str, str]:
    """Verdict on an extracted answer, or the ``(prediction, gold)`` pair that math-verify must compare.

    * letter sets (``"A, C"``, LogicVista): the set of standalone option letters must be equal;
    * a letter gold: an option's exact text counts as its letter; otherwise a leading label (``(B) 5 cm``), or
      the one standalone letter named (``I pick B``); otherwise the option text up to case and spacing; otherwise
      maths against the gold option's text (``5`` for option ``5``); options with the same text are one option;
    * ``precision`` (MathVista floats): both rounded to that many decimals;
    * short text: normalised string match; everything else: maths (math-verify, in a time-bounded worker).

        >>> decide_answer("Yes", "A", ["Yes", "No"]), decide_answer("(B) 5 cm", "B", ["4 cm", "5 cm"])
        (True, True)
        >>> decide_answer("C and A", "A, C"), decide_answer("1.24", "1.2", precision=1)
        (True, True)
    """
    gold, prediction = gold.strip(), prediction.strip()
    choices = list(choices or [])
    if gold_kind(gold) == "letters":
        wanted = set(re.findall(r"[A-J]", gold))
        allowed = LETTERS[: max(len(choices), LETTERS.index(max(wanted)) + 1, 6)]
        return _letters_in(prediction, allowed) == wanted
    kind = gold_kind(gold)
    if kind == "letter" or (choices and gold in LETTERS[: len(choices)]):
        letter = gold.strip("()")
        gold_text = str(choices[LETTERS.index(letter)]) if LETTERS.index(letter) < len(choices) else None

        def is_gold(index: int) -> bool:  # duplicated option texts count as the same option
            """Whether option ``index`` is the gold option (or has the gold option's text)."""
            return LETTERS[index] == letter or (
                gold_text is not None and index < len(choices) and _normalize_text(str(choices[index])) ==
                _normalize_text(gold_text)
            )  # fmt: skip

        allowed = LETTERS[: max(len(choices), LETTERS.index(letter) + 1, 6)]
        bare = _LETTER_GOLD.fullmatch(prediction)  # "D" or "(D)" is a letter, even where an option's text is "D"
        if bare and bare.group(1) in allowed:
            return is_gold(LETTERS.index(bare.group(1)))
        hits = _option_hits(prediction, choices, str.strip)  # exactly an option's text ("(b)" among "(a)".."(e)")
        if hits:
            return all(is_gold(i) for i in hits)
        label = _LEADING_LABEL.match(prediction)  # "(B) sample A": the label decides, not the A in the text
        if label and label.group(1) in allowed:
            return is_gold(LETTERS.index(label.group(1)))
        named = _letters_in(prediction, allowed)
        if len(named) == 1:
            return is_gold(LETTERS.index(named.pop()))
        hits = _option_hits(prediction, choices, _normalize_text)  # the text up to case, spaces, a final stop
        if hits:
            return all(is_gold(i) for i in hits)
        if gold_text is not None and gold_kind(gold_text) == "math" and not named:
            return (prediction, gold_text)
        return False
    if precision is not None and _FLOAT.fullmatch(prediction) and _FLOAT.fullmatch(gold):
        return round(float(prediction), int(precision)) == round(float(gold), int(precision))
    if kind == "text":
        return _normalize_text(prediction) == _normalize_text(gold)
    return (prediction, gold)  # even an identical string goes to math-verify: an unparseable gold must never score 1


def score_completions(
    completions: list[str],
    answers: list[str],
    *,
    choices: list | None = None,
    precisions: list | None = None,
    workers: int = 2,
    timeout: float = 3.0,
) -> list[float]:
    """Accuracy rewards (1.0 / 0.0) for many completions: math comparisons in parallel worker processes.

    ``choices`` and ``precisions`` (one entry per completion, or None) carry each item's options and float
    precision (see :func:`decide_answer`). A comparison running past ``timeout`` seconds scores 0.0 and is
    counted in ``REWARD_STATS["timeout"]``; an unparseable gold answer scores 0.0 (never 1.0) and is counted in
    ``REWARD_STATS["unparseable_gold"]``.
    """
    assert len(completions) == len(answers), f"{len(completions)} completions vs {len(answers)} answers"
    choices = choices if choices is not None else [()] * len(answers)
    precisions = precisions if precisions is not None else [None] * len(answers)
    scores = [0.0] * len(completions)
    math_items = []
    for i, (completion, gold) in enumerate(zip(completions, answers, strict=True)):
        prediction = extract_answer(completion)
        if prediction is None:
            continue
        verdict = decide_answer(prediction, str(gold), choices[i], precisions[i])
        if isinstance(verdict, tuple):
            math_items.append((i, *verdict))
        else:
            scores[i] = float(verdict)
    results = math_equal_many([(p, g) for _, p, g in math_items], timeout=timeout, workers=workers)
    for (i, _, _), result in zip(math_items, results, strict=True):
        if result is None:
            REWARD_STATS["unparseable_gold"] += 1
        scores[i] = float(bool(result))
    return scores


def accuracy_reward(completion: str, answer: str, choices=(), precision: int | None = None) -> float:
    """1.0 if the extracted answer matches ``answer`` (letters by letter, math by equivalence, text normalised).

    Thread-safe and time-bounded (3 s per comparison); see :func:`score_completions` for the batch path.
    """
    return score_completions([completion], [answer], choices=[choices], precisions=[precision], workers=1)[0]


# ------------------------------------------------------------------------------------------- TRL adapters
def completion_text(completion) -> str:
    """A TRL completion is a string or a list of chat messages; return its text."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] if isinstance(m["content"], str) else "" for m in completion)


class FormatReward:
    """TRL reward function ``(completions, **kwargs) -> list[float]`` for :func:`format_reward`."""

    __name__ = "format"

    def __call__(self, completions, **kwargs) -> list[float]:
        return [format_reward(completion_text(c)) for c in completions]


class AccuracyReward:
    """TRL reward function ``(completions, answer, **kwargs) -> list[float]`` for the accuracy reward.

    A class rather than a closure so that it pickles (TRL may send reward functions to other processes).
    """

    __name__ = "accuracy"

    def __init__(self, workers: int = 2, timeout: float = 3.0) -> None:
        self.workers, self.timeout = workers, timeout

    def __call__(self, completions, answer, choices=None, precision=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        return score_completions(texts, [str(a) for a in answer], choices=choices, precisions=precision,
                                 workers=self.workers, timeout=self.timeout)  # fmt: skip
