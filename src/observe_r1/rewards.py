"""Rule rewards of Observe-R1 (METHOD.md §3): the observe/think/answer format and answer accuracy.

String-level cores (``format_reward``, ``extract_answer``, ``accuracy_reward``) plus TRL-signature adapters
(``FormatReward``, ``AccuracyReward``) and a parallel, time-bounded batch scorer (``score_completions``) used by
the trainer, the ladder builder and the evaluator.

    >>> format_reward("<observe>a red square</observe> <think>one shape</think> <answer>1</answer>")
    1.0
    >>> accuracy_reward("<observe>x</observe><think>y</think><answer>(B) 5 cm</answer>", "B")
    1.0

math-verify guards its own time with ``signal.alarm``, which raises off the main thread (TRL calls async reward
functions from another thread). We disable that and bound time ourselves: every comparison that needs sympy runs
in a worker process (whose main thread can take SIGALRM) with a per-item timeout, and a worker stuck where the
alarm can't reach is killed with its pool; such items score 0 and are counted in ``REWARD_STATS``. Letters,
plain integers and short text never leave the calling thread.
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing as mp
import re
import signal
import threading
from collections import Counter
from functools import lru_cache

# Counted "can't score" events, readable by the trainer's logger: unparseable_gold, timeout.
REWARD_STATS: Counter = Counter()

TAGS = ("<observe>", "</observe>", "<think>", "</think>", "<answer>", "</answer>")
MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers; also keeps sympy away from 100k-digit strings


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
LETTERS = "ABCDEFGHIJ"
_LETTER_SET_GOLD = re.compile(r"[A-J](?:\s*,\s*[A-J])+")
_LETTER_GOLD = re.compile(r"\(?([A-J])\)?")
_LETTER_TOKEN = re.compile(r"(?<![A-Za-z0-9])\(?([A-J])(?![A-Za-z0-9])")
_TEXT_GOLD = re.compile(r"[A-Za-z][A-Za-z '\-]*[A-Za-z]")
_INTEGER = re.compile(r"[+-]?\d{1,30}")


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


def read_option_letter(prediction: str) -> str | None:
    """The option letter a prediction names as a standalone token (``B``, ``(B) 5 cm``, ``B:``); None if 0 or 2+."""
    letters = _letters_in(prediction, "ABCDEF")
    return letters.pop() if len(letters) == 1 else None


def _normalize_text(text: str) -> str:
    return " ".join(text.casefold().replace("\\text{", "").replace("}", "").split()).rstrip(".")


def _wrap_latex(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


@lru_cache(maxsize=65536)
def _math_equal_unbounded(prediction: str, gold: str) -> bool | None:
    """math-verify equivalence, with its signal-based timeouts off; None if the gold answer can't be parsed.

    Runs in a worker process (see ``_MathPool``): nothing here bounds time.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call that we disabled its alarm
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    gold_parsed = parse(_wrap_latex(gold), extraction_config=config, parsing_timeout=None)
    # parse() falls back to the raw string when sympy can't read it: that is not a usable gold answer
    if not any(not isinstance(x, str) for x in gold_parsed):
        return None
    pred_parsed = parse(_wrap_latex(prediction), extraction_config=config, parsing_timeout=None)
    return bool(pred_parsed) and verify(gold_parsed, pred_parsed, timeout_seconds=None)


class _ItemTimeout(BaseException):
    """SIGALRM inside a worker; a BaseException so that a grader's ``except Exception`` can't swallow it."""


def _raise_item_timeout(signum, frame):
    raise _ItemTimeout


def _math_chunk(pairs: list[tuple[str, str]], timeout: float) -> list[bool | None | str]:
    """Runs in a worker process's main thread, where SIGALRM can bound each item."""
    signal.signal(signal.SIGALRM, _raise_item_timeout)
    out = []
    for pair in pairs:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            out.append(_math_equal_unbounded(*pair))
        except _ItemTimeout:
            out.append("timeout")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return out


class _MathPool:
    """Worker processes for math-verify; a worker that exceeds its per-item timeout is killed with its pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = None
        self._size = 0

    def _get(self, workers: int):
        with self._lock:
            if self._pool is None or self._size != workers:
                if self._pool is not None:
                    self._pool.terminate()
                # fork: workers need no imports of their own (spawn would re-import torch per worker).
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                self._pool, self._size = ctx.Pool(workers), workers
            return self._pool

    def _reset(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.terminate()
            self._pool = None

    def map(self, pairs: list[tuple[str, str]], workers: int, timeout: float) -> list[bool | None | str]:
        """Results per pair; the string ``"timeout"`` where an item ran past ``timeout`` seconds.

        Items travel in chunks (one message per chunk, not per item); inside a worker SIGALRM bounds each item.
        A chunk whose worker doesn't answer in ``timeout × len(chunk) + 5`` seconds (stuck in C code, where the
        alarm can't interrupt) is scored as timed out and the pool is replaced; the other chunks go on.
        """
        size = max(1, min(64, math.ceil(len(pairs) / (4 * workers))))
        chunks = [list(range(s, min(s + size, len(pairs)))) for s in range(0, len(pairs), size)]
        results: dict[int, bool | None | str] = {}
        while chunks:
            pool = self._get(workers)
            handles = [(c, pool.apply_async(_math_chunk, ([pairs[i] for i in c], timeout))) for c in chunks]
            chunks = []
            for k, (chunk, handle) in enumerate(handles):
                try:
                    results.update(zip(chunk, handle.get(timeout=timeout * len(chunk) + 5), strict=True))
                except (mp.TimeoutError, _ItemTimeout):
                    results.update((i, "timeout") for i in chunk)
                    for other, h in handles[k + 1 :]:
                        if h.ready() and h.successful():
                            results.update(zip(other, h.get(), strict=True))
                        else:
                            chunks.append(other)
                    self._reset()  # kills the stuck worker; unfinished chunks go to a fresh pool
                    break
        return [results[i] for i in range(len(pairs))]


_MATH_POOL = _MathPool()
atexit.register(_MATH_POOL._reset)


def math_equal(prediction: str, gold: str, *, timeout: float = 3.0, workers: int = 1) -> bool | None:
    """Equivalence of two math answers; integers compare in-process, the rest in a time-bounded worker."""
    return _math_equal_many([(prediction, gold)], timeout=timeout, workers=workers)[0]


def _math_equal_many(pairs: list[tuple[str, str]], *, timeout: float, workers: int) -> list[bool | None]:
    out: list = [None] * len(pairs)
    slow = []
    for i, (pred, gold) in enumerate(pairs):
        if _INTEGER.fullmatch(pred.strip()) and _INTEGER.fullmatch(gold.strip()):
            out[i] = int(pred) == int(gold)
        elif len(pred) > MAX_ANSWER_CHARS:
            out[i] = False
        else:
            slow.append(i)
    if slow:
        for i, result in zip(slow, _MATH_POOL.map([pairs[i] for i in slow], workers, timeout), strict=True):
            if result == "timeout":
                REWARD_STATS["timeout"] += 1
                result = False
            out[i] = result
    return out


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
            return LETTERS[index] == letter or (
                gold_text is not None and index < len(choices) and _normalize_text(str(choices[index])) ==
                _normalize_text(gold_text)
            )  # fmt: skip

        hits = _option_hits(prediction, choices, str.strip)  # exactly an option's text ("(b)" among "(a)".."(e)")
        if hits:
            return all(is_gold(i) for i in hits)
        allowed = LETTERS[: max(len(choices), LETTERS.index(letter) + 1, 6)]
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
    results = _math_equal_many([(p, g) for _, p, g in math_items], timeout=timeout, workers=workers)
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


def check_gold(answer: object) -> str | None:
    """Why a gold answer can't be used for training (None if it can): empty, too long, or unparseable maths."""
    if answer is None or not str(answer).strip():
        return "empty answer"
    answer = str(answer).strip()
    if len(answer) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} characters"
    if gold_kind(answer) == "math" and not _INTEGER.fullmatch(answer):
        if math_equal(answer, answer) is None:
            return f"answer {answer[:60]!r} can't be parsed as a number or LaTeX"
    return None


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
