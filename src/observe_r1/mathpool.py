"""Time-bounded maths equivalence: math-verify in worker processes, one SIGALRM-bounded item at a time.

math-verify guards its own time with ``signal.alarm``, which raises off the main thread (TRL calls async reward
functions from another thread). We disable that and bound time ourselves: every comparison that needs sympy runs
in a worker process (whose main thread can take SIGALRM) with a per-item timeout, and a worker stuck where the
alarm can't reach is killed with its pool; such items score 0 and are counted in ``REWARD_STATS``.
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

MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers; also keeps sympy away from 100k-digit strings
INTEGER = re.compile(r"[+-]?\d{1,30}")


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


def _bounded_chunk(func, args_list: list[tuple], timeout: float) -> list:
    """``func(*args)`` for each args, in a worker process's main thread, where SIGALRM can bound each call:
    ``"timeout"`` for a call that ran past ``timeout`` seconds, ``"error"`` for one that raised."""
    signal.signal(signal.SIGALRM, _raise_item_timeout)
    out = []
    for args in args_list:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            out.append(func(*args))
        except _ItemTimeout:
            out.append("timeout")
        except Exception:  # noqa: BLE001 - a reader that chokes on untrusted text gives no verdict, never a crash
            out.append("error")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return out


class _MathPool:
    """Worker processes for readers of untrusted text (math-verify, the benchmarks' official rules); a worker that
    exceeds its per-item timeout is killed with its pool."""

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

    def map(self, func, pairs: list[tuple], workers: int, timeout: float) -> list:
        """``func(*pair)`` per pair; the string ``"timeout"`` where an item ran past ``timeout`` seconds, ``"error"``
        where it raised.

        Items travel in chunks (one message per chunk, not per item); inside a worker SIGALRM bounds each item.
        A chunk whose worker doesn't answer in ``timeout × len(chunk) + 5`` seconds (stuck in C code, where the
        alarm can't interrupt) has its pool replaced and its items run again one by one, so that only the stuck
        item is scored as timed out; the other chunks go on.
        """
        size = max(1, min(64, math.ceil(len(pairs) / (4 * workers))))
        chunks = [list(range(s, min(s + size, len(pairs)))) for s in range(0, len(pairs), size)]
        results: dict[int, bool | None | str] = {}
        while chunks:
            pool = self._get(workers)
            handles = [(c, pool.apply_async(_bounded_chunk, (func, [pairs[i] for i in c], timeout))) for c in chunks]
            chunks = []
            for k, (chunk, handle) in enumerate(handles):
                try:
                    results.update(zip(chunk, handle.get(timeout=timeout * len(chunk) + 5), strict=True))
                except (mp.TimeoutError, _ItemTimeout):
                    if len(chunk) == 1:
                        results[chunk[0]] = "timeout"
                    else:  # which item is stuck is unknown: each goes again alone, so only that one times out
                        chunks += [[i] for i in chunk]
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


def gold_parses(gold: str, *, timeout: float = 3.0) -> bool:
    """Whether math-verify can read ``gold`` (checked while loading data). On the main thread it runs here,
    bounded by SIGALRM (the previous handler is restored), so loading a dataset starts no worker processes;
    elsewhere it goes to the pool. A gold that takes longer than ``timeout`` to read counts as unreadable."""
    if threading.current_thread() is not threading.main_thread():
        return math_equal(gold, gold, timeout=timeout) is not None
    previous = signal.getsignal(signal.SIGALRM)
    try:
        result = _bounded_chunk(_math_equal_unbounded, [(gold, gold)], timeout)[0]
    finally:
        signal.signal(signal.SIGALRM, previous)
    return result not in (None, "timeout", "error")


def bounded_map(func, args_list: list[tuple], *, timeout: float = 3.0, workers: int = 2) -> list:
    """``func(*args)`` for each args, each call bounded by ``timeout`` seconds in a worker process (``func`` must be
    a module-level function): ``"timeout"`` where a call ran past it, ``"error"`` where it raised. For any reading
    of untrusted text (a model's answer, a benchmark's gold) that could hang or blow up."""
    return _MATH_POOL.map(func, args_list, workers, timeout) if args_list else []


def math_equal(prediction: str, gold: str, *, timeout: float = 3.0, workers: int = 1) -> bool | None:
    """Equivalence of two math answers; integers compare in-process, the rest in a time-bounded worker."""
    return math_equal_many([(prediction, gold)], timeout=timeout, workers=workers)[0]


def math_equal_many(pairs: list[tuple[str, str]], *, timeout: float, workers: int) -> list[bool | None]:
    """Equivalence of many ``(prediction, gold)`` pairs: False on timeout (counted), None for an unparseable gold."""
    out: list = [None] * len(pairs)
    slow = []
    for i, (pred, gold) in enumerate(pairs):
        if INTEGER.fullmatch(pred.strip()) and INTEGER.fullmatch(gold.strip()):
            out[i] = int(pred) == int(gold)
        elif len(pred) > MAX_ANSWER_CHARS:
            out[i] = False
        else:
            slow.append(i)
    if slow:
        results = _MATH_POOL.map(_math_equal_unbounded, [pairs[i] for i in slow], workers, timeout)
        for i, result in zip(slow, results, strict=True):
            if result == "timeout":
                REWARD_STATS["timeout"] += 1
                result = False
            elif result == "error":
                result = False
            out[i] = result
    return out
