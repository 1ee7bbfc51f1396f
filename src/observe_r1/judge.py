"""An LLM judge for the answer-reading step of the benchmarks whose authors read answers with an LLM.

    observe-r1 eval --benchmark MathVista/data/testmini.json --responses r.jsonl --out evals/r \\
        --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct \\
        [--judge-rows all|unreadable] [--judge-prompts official --benchmark-repo MathVista]

MathVista's scorer asks an LLM to extract the answer from a response before normalising and comparing it,
MathVerse's asks one to extract the answer and then to judge it against the gold, LogicVista's asks one to extract
the chosen letters. :mod:`observe_r1.official` reads answers with rules; with a judge (any OpenAI-compatible
server, through the ``openai`` client) the judge reads them instead, and the authors' rule then compares what it
read. Without a judge nothing changes.

Which rows (``rows``): ``all`` (the default) reads every response as the authors' scorers do: MathVista's
extraction for every response but those its scorer reads as they are without asking (one that is exactly an
option's text, or that ``int()`` / ``float()`` reads for integer / float questions: :func:`authors_reading`, whose
reading then stands for the judge's), MathVerse's extraction and then its score against the gold for every
response, LogicVista's extraction for every response. ``unreadable`` asks only about what the rules cannot settle
(:func:`rule_reads`, :func:`needs_equivalence`):

===========  ========================================================================================
mathvista    extraction, for a response with no marked answer (``<answer>…</answer>`` or ``\\boxed{}``) or
             whose marked answer is not in the form MathVista's normalisation reads as is: an option letter
             (``B``, ``(B)``) or an option's exact text for multiple choice, a plain number for integer and
             float questions, any non-empty text for text and list questions. The judge's reply is then
             normalised and compared by :func:`~observe_r1.official.mathvista_correct`.
mathverse    extraction, for a response with no marked answer (any non-empty marked answer is the
             extraction); then equivalence, for every answer observe-r1's reward marks wrong, unless the answer
             and the gold are both single option letters (a different letter is wrong without asking) or
             either is empty. An answer the reward accepts is right without asking.
logicvista   extraction, for a response with no marked answer or whose marked answer is not a plain list of
             option letters (``A``, ``a, c``, ``(B) and (D)``) or a single digit (an option number). The
             judge's reply is read by :func:`~observe_r1.official.logicvista_letters` and compared as a set.
===========  ========================================================================================

In both modes an empty response is never sent (there is nothing to read) and a MathVista or MathVerse row with an
empty gold is not asked (it is wrong whatever is read). MATH-V, We-Math and MMMU are read by rules only, as their
authors read them: the judge is not asked for them.

Which prompts (``prompts``): observe-r1's own (:class:`OwnPrompts`, written from those procedures;
:data:`PROMPT_VERSION` changes with them), or ``official``: the authors' prompt text, read at run time from the
user's checkout of their repository and sent in their request format (:mod:`observe_r1.judge_prompts`). Each
answer is appended to ``judge_cache.jsonl`` in the eval folder as it arrives, keyed by (row id, sample, step,
response hash, judge model, prompt version, hash of the exact messages sent): a rerun, a resumed eval or a
re-score asks nothing already answered, and other prompts are other keys. Requests run on a bounded thread pool,
each with a timeout and retries with exponential backoff on connection errors, timeouts, 429 and 5xx; a question
that still fails leaves its row on the rule reading and is counted (``failures``). A judge that cannot be reached
before the first question is a :class:`JudgeError`, printed by the command line as one line naming the URL.

:func:`judge_rows` also reports the rule figure, the judge figure and how often the two readings agree, and lists
the rows whose verdicts differ in ``judge_disagreements.jsonl`` beside ``results.json`` (:func:`agreement`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from observe_r1.config import ConfigError
from observe_r1.jsonl import append_jsonl, read_jsonl, write_jsonl
from observe_r1.layouts import LETTERS
from observe_r1.official import headline, official_results, official_verdicts
from observe_r1.rewards import extract_answer, score_completions

PROMPT_VERSION = "v1"
CACHE_FILE = "judge_cache.jsonl"
DISAGREEMENTS_FILE = "judge_disagreements.jsonl"
JUDGE_ROWS = ("all", "unreadable")
JUDGE_PROMPTS = ("observe-r1", "official")
JUDGED = ("mathvista", "mathverse", "logicvista")
MAX_RESPONSE_CHARS = 12_000  # a runaway response is cut to its last characters, where final answers are
EXTRACT_TOKENS = 64
VERDICT_TOKENS = 4
_RETRY_STATUS = {408, 409, 429}  # and every 5xx


class JudgeError(ConfigError):
    """The judge can't be used at all (unreachable, refused the key or the model); one line naming the URL."""


class JudgeFailure(Exception):
    """One question the judge did not answer after its retries; its row keeps the rule reading."""


# ------------------------------------------------------------------------------------------- which rows
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_MC_LETTER = re.compile(r"\(([A-Za-z])\)|([A-Z])")
_LETTER_LIST = re.compile(r"\(?[A-J]\)?(?:(?:\s*(?:,|;|&|and)\s*|\s+)\(?[A-J]\)?)*", re.IGNORECASE)
_ONE_LETTER = re.compile(r"\(?([A-J])\)?\.?")


def _mathvista_form(answer: str, item: dict) -> bool:
    """Whether MathVista's normalisation reads ``answer`` as it is: an option letter or an option's exact text
    (multiple choice), a plain number (integer and float questions), any text (text and list questions)."""
    meta = item.get("meta") or {}
    choices = [str(c) for c in item.get("choices") or []]
    if meta.get("question_type") == "multi_choice" and choices:
        letter = _MC_LETTER.fullmatch(answer)
        return bool(letter and (letter.group(1) or letter.group(2)).upper() in LETTERS[: len(choices)]) or (
            answer in choices
        )
    if meta.get("answer_type") in ("integer", "float"):
        return bool(_NUMBER.fullmatch(answer))
    return True


def rule_reads(benchmark: str, response: str, item: dict) -> bool:
    """Whether ``benchmark``'s rule settles the answer of ``response`` without the judge's extraction (see the
    module's table). True for benchmarks whose authors use no judge.

    >>> item = {"answer": "12", "choices": [], "meta": {"question_type": "free_form", "answer_type": "integer"}}
    >>> rule_reads("mathvista", "<answer>12</answer>", item), rule_reads("mathvista", "twelve, I think", item)
    (True, False)
    >>> rule_reads("logicvista", "<answer>A, C</answer>", item), rule_reads("logicvista", "\\\\boxed{a cat}", item)
    (True, False)
    """
    if benchmark not in JUDGED or not response.strip():
        return True
    if benchmark in ("mathvista", "mathverse") and not item["answer"].strip():
        return True  # an empty gold is wrong whatever the answer
    answer = extract_answer(response)
    if not answer:
        return False
    if benchmark == "mathvista":
        return _mathvista_form(answer, item)
    if benchmark == "logicvista":
        return bool(_LETTER_LIST.fullmatch(answer)) or (len(answer) == 1 and answer.isdigit())
    return True  # mathverse: a marked answer is its extraction


def needs_equivalence(extracted: str | None, gold: str, reward_correct: bool) -> bool:
    """MathVerse: whether the judge compares ``extracted`` with ``gold`` (the reward did not accept it, both are
    there, and they are not two single option letters).

    >>> needs_equivalence("3 cm", "3", False), needs_equivalence("C", "B", False), needs_equivalence("3", "3", True)
    (True, False, False)
    """
    if reward_correct or not (extracted or "").strip() or not gold.strip():
        return False
    return not (_ONE_LETTER.fullmatch(extracted.strip()) and _ONE_LETTER.fullmatch(gold.strip()))


def authors_reading(benchmark: str, response: str, item: dict) -> str | None:
    """The answer the authors' scorer reads from ``response`` without asking its LLM, or None when it asks:
    MathVista's ``extract_answer`` takes a response that is exactly one of the options (multiple choice) as it is,
    and one that ``int()`` reads (integer questions) or ``float()`` reads (float questions) as ``str`` of that.

    >>> item = {"answer": "12", "choices": [], "meta": {"question_type": "free_form", "answer_type": "integer"}}
    >>> authors_reading("mathvista", " 12 ", item), authors_reading("mathvista", "12.0", item)
    ('12', None)
    """
    if benchmark != "mathvista":
        return None
    meta = item.get("meta") or {}
    if meta.get("question_type") == "multi_choice" and response in [str(c) for c in item.get("choices") or []]:
        return response
    read = {"integer": int, "float": float}.get(meta.get("answer_type"))
    try:
        return None if read is None else str(read(response))
    except (ValueError, OverflowError):
        return None


def asks_extraction(mode: str, benchmark: str, response: str, item: dict) -> bool:
    """Whether the judge is asked to extract the answer of ``response`` (``mode``: ``all`` or ``unreadable``, see
    the module's docstring).

    >>> item = {"answer": "12", "choices": [], "meta": {"question_type": "free_form", "answer_type": "integer"}}
    >>> [asks_extraction(m, "mathvista", "<answer>12</answer>", item) for m in ("all", "unreadable")]
    [True, False]
    """
    if mode == "unreadable":
        return not rule_reads(benchmark, response, item)
    if benchmark not in JUDGED or not response.strip():
        return False
    if benchmark in ("mathvista", "mathverse") and not item["answer"].strip():
        return False  # an empty gold is wrong whatever the answer
    return authors_reading(benchmark, response, item) is None


def asks_equivalence(mode: str, response: str, extracted: str | None, gold: str, reward_correct: bool) -> bool:
    """MathVerse: whether the judge scores ``extracted`` against ``gold``: every response with a gold (``all``, as
    MathVerse's second step does), or :func:`needs_equivalence` (``unreadable``)."""
    if mode == "unreadable":
        return needs_equivalence(extracted, gold, reward_correct)
    return bool(response.strip() and gold.strip())


# ------------------------------------------------------------------------------------------------ prompts
_EXTRACT_SYSTEM = (
    "You read the final answer out of another model's response to a question. You never solve the question "
    "yourself and never correct the response: you copy the answer it gives, in the form asked for."
)
_EXTRACT_USER = """Question:
{question}

Response:
{response}

Write the final answer this response gives, as {form}. Write only the answer, with no other words. If the \
response gives no final answer, write NONE."""
_EQUIVALENCE_SYSTEM = "You check whether an answer to a math question is the same answer as the reference."
_EQUIVALENCE_USER = """Question:
{question}

Reference answer: {gold}
Given answer: {answer}

The given answer is the same answer if it has the same value or meaning, written in any form (1/2 and 0.5 are the \
same; a unit the question implies may be left out). For a multiple-choice question it is the same if it picks the \
same option, by its letter or by the option's content. A missing, ambiguous or partly right answer is not the \
same. Reply 1 if it is the same answer and 0 if it is not, and nothing else."""


def _answer_form(benchmark: str, item: dict) -> str:
    """How the judge should write the extracted answer: the form the benchmark's rule compares."""
    if benchmark == "logicvista":
        return "the letter(s) of the chosen option(s), separated by commas (for example: A, C), or the option's \
number if the options are numbered"
    if benchmark == "mathverse":
        return "the option letter if the response picks an option, else the final value or expression as written"
    meta = item.get("meta") or {}
    if meta.get("question_type") == "multi_choice" and item.get("choices"):
        return "the letter of the chosen option (A, B, C, …)"
    if meta.get("answer_type") == "integer":
        return "an integer"
    if meta.get("answer_type") == "float":
        places = int(item.get("precision") or 0)
        return f"a number with {places} decimal place{'s' if places != 1 else ''}"
    if meta.get("answer_type") == "list":
        return "a Python list, for example [1, 2]"
    return "a short text, as the response words it"


def _clip(response: str) -> str:
    return response if len(response) <= MAX_RESPONSE_CHARS else "[…]" + response[-MAX_RESPONSE_CHARS:]


def extraction_messages(benchmark: str, item: dict, response: str) -> list[dict]:
    """The chat that asks the judge for the final answer of ``response`` to ``item``."""
    user = _EXTRACT_USER.format(question=item["problem"], response=_clip(response), form=_answer_form(benchmark, item))
    return [{"role": "system", "content": _EXTRACT_SYSTEM}, {"role": "user", "content": user}]


def equivalence_messages(item: dict, answer: str) -> list[dict]:
    """The chat that asks the judge whether ``answer`` is the same answer as the item's gold (MathVerse)."""
    user = _EQUIVALENCE_USER.format(question=item["problem"], gold=item["answer"], answer=answer)
    return [{"role": "system", "content": _EQUIVALENCE_SYSTEM}, {"role": "user", "content": user}]


def parse_extraction(reply: str) -> str:
    """The answer in a judge's extraction reply: its first line, without an echoed ``Answer:`` label, quotes or
    a final stop; ``NONE`` (no answer) is the empty string.

    >>> parse_extraction("Final answer: 12.\\nBecause…"), parse_extraction(" NONE "), parse_extraction("`B`")
    ('12', '', 'B')
    """
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^(?:final |extracted )?answer\s*[:：]\s*", "", text, flags=re.IGNORECASE)
    for _ in range(2):  # 'A, C'. and "12." alike
        text = text.strip().removesuffix(".").strip().strip("`'\"")
    return "" if text.upper() in ("NONE", "N/A") else text


def parse_equivalence(reply: str) -> bool | None:
    """A judge's same/not-same reply: ``1``/yes/true → True, ``0``/no/false → False, anything else None.

    >>> parse_equivalence("1"), parse_equivalence("No."), parse_equivalence("maybe")
    (True, False, None)
    """
    found = re.match(r"\W*(1|0|yes|no|true|false)\b", reply.strip(), flags=re.IGNORECASE)
    return None if not found else found.group(1).lower() in ("1", "yes", "true")


class OwnPrompts:
    """observe-r1's prompts (the functions above), with the methods :class:`observe_r1.judge_prompts.OfficialPrompts`
    has: what :func:`judge_rows` asks with and how it reads the replies."""

    name, version = "observe-r1", PROMPT_VERSION
    extract_tokens, verdict_tokens = EXTRACT_TOKENS, VERDICT_TOKENS
    sha256 = hashlib.sha256("\0".join((_EXTRACT_SYSTEM, _EXTRACT_USER, _EQUIVALENCE_SYSTEM,
                                       _EQUIVALENCE_USER)).encode()).hexdigest()  # fmt: skip
    extraction_messages = staticmethod(extraction_messages)
    equivalence_messages = staticmethod(equivalence_messages)
    parse_extraction = staticmethod(parse_extraction)
    parse_equivalence = staticmethod(parse_equivalence)

    def describe(self) -> dict:
        return {"prompts": self.name, "prompt_version": self.version, "prompt_sha256": self.sha256}


# -------------------------------------------------------------------------------------------------- client
class Judge:
    """An OpenAI-compatible chat endpoint used as a judge: bounded concurrency, per-request timeout, retries
    with exponential backoff. ``stats`` counts ``requests`` (questions sent), ``retries``, ``cached`` (answered
    from the cache) and ``failures`` (questions left unanswered)."""

    def __init__(self, url: str, model: str, *, api_key: str | None = None, key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 rows: str = "all", prompts: str = "observe-r1",
                 benchmark_repo: str | Path | None = None) -> None:  # fmt: skip
        from openai import OpenAI

        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise JudgeError(f"judge at {url}: concurrency must be ≥ 1, retries ≥ 0 and timeout > 0")
        if rows not in JUDGE_ROWS or prompts not in JUDGE_PROMPTS:
            raise JudgeError(f"--judge-rows is all or unreadable and --judge-prompts observe-r1 or official; got "
                             f"{rows!r} and {prompts!r}")  # fmt: skip
        if (prompts == "official") != (benchmark_repo is not None):
            raise JudgeError("--judge-prompts official reads the authors' prompts from a checkout of their repository:"
                             " give it with --benchmark-repo PATH (and --benchmark-repo only with it)")  # fmt: skip
        self.rows, self.prompts, self.benchmark_repo = rows, prompts, benchmark_repo
        self._prompt_sets: dict = {}
        self.url, self.model, self.key_env = url, model, key_env
        self.concurrency, self.retries, self.backoff = concurrency, retries, backoff
        # a local server needs no key, but the client refuses an empty one
        self.client = OpenAI(base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=0)
        self.stats: Counter = Counter()
        self._checked = False
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"url": self.url, "model": self.model, "judge_rows": self.rows, "prompts": self.prompts}

    def prompts_for(self, benchmark: str):
        """The prompt set :func:`judge_rows` asks with on ``benchmark`` (the authors' files are read once, here: a
        missing or malformed one is a one-line :class:`~observe_r1.judge_prompts.PromptFileError`)."""
        if benchmark not in self._prompt_sets:
            if self.prompts == "official":
                from observe_r1.judge_prompts import OfficialPrompts

                self._prompt_sets[benchmark] = OfficialPrompts(benchmark, self.benchmark_repo)
            else:
                self._prompt_sets[benchmark] = OwnPrompts()
        return self._prompt_sets[benchmark]

    def _post(self, messages: list[dict], max_tokens: int, *, retry_connect: bool = True) -> str:
        """One chat completion (temperature 0), retried on transient errors; the reply's text."""

        def call() -> str:
            reply = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, max_tokens=max_tokens
            )
            return reply.choices[0].message.content or ""

        return with_retries(call, retries=self.retries, backoff=self.backoff, stats=self.stats, lock=self._lock,
                            retry_connect=retry_connect)  # fmt: skip

    def check(self, benchmark: str | None = None) -> None:
        """Ask one trivial question once, before the first real one: an unreachable server, a refused key or a
        refused model is a :class:`JudgeError` naming the URL (the probe is not counted in ``stats``). With
        ``benchmark``, its prompts are read first (:meth:`prompts_for`)."""
        import openai

        if benchmark in JUDGED:
            self.prompts_for(benchmark)
        if self._checked:
            return
        try:
            self._post([{"role": "user", "content": "Reply with OK."}], 1, retry_connect=False)
        except openai.APIConnectionError as err:
            raise JudgeError(f"judge at {self.url} is unreachable ({_one_line(err)}): start the server or fix "
                             f"--judge-url") from None  # fmt: skip
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            raise JudgeError(f"judge at {self.url} refused the API key (HTTP {err.status_code}); put it in "
                             f"${self.key_env} or name its variable with --judge-api-key-env") from None  # fmt: skip
        except openai.APIStatusError as err:
            raise JudgeError(f"judge at {self.url} answered HTTP {err.status_code} to a request for model "
                             f"{self.model!r}: {_one_line(err)}") from None  # fmt: skip
        except Exception as err:  # noqa: BLE001 - a malformed reply: not an OpenAI-compatible server
            raise JudgeError(f"judge at {self.url} gave no chat completion ({_one_line(err)})") from None
        self._checked = True

    def ask(self, messages: list[dict], max_tokens: int) -> str:
        """The judge's reply to ``messages``; :class:`JudgeFailure` when it still fails after the retries."""
        with self._lock:
            self.stats["requests"] += 1
        try:
            return self._post(messages, max_tokens)
        except Exception as err:  # noqa: BLE001 - any failure of one question falls back to the rule reading
            with self._lock:
                self.stats["failures"] += 1
            raise JudgeFailure(_one_line(err)) from err


def with_retries(call, *, retries: int, backoff: float, stats: Counter, lock: threading.Lock,
                 retry_connect: bool = True):  # fmt: skip
    """``call()`` (one request through the ``openai`` client), retried on connection errors, timeouts, 408, 409,
    429 and 5xx after ``backoff`` · 2^attempt seconds (jittered); each retry counts in ``stats["retries"]``. Any
    other error, or the last attempt's, propagates. Shared by the judge and :mod:`observe_r1.serving`."""
    import openai

    for attempt in range(retries + 1):
        try:
            return call()
        except openai.APIStatusError as err:
            transient = err.status_code >= 500 or err.status_code in _RETRY_STATUS
            if not transient or attempt == retries:
                raise
        except openai.APIConnectionError:  # refused, reset, or past the timeout
            if not retry_connect or attempt == retries:
                raise
        with lock:
            stats["retries"] += 1
        time.sleep(backoff * 2**attempt * (1 + random.random() / 4))
    raise AssertionError("unreachable")


def _one_line(err: Exception, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------- cache
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Question:
    """One thing to ask the judge about one prediction row."""

    row: int  # index into the rows being judged
    step: str  # "extract" or "equivalence"
    messages: list[dict]
    max_tokens: int
    record: dict = field(default_factory=dict)  # the cache line without the reply

    @property
    def key(self) -> tuple:
        return cache_key(self.record)


_KEY_FIELDS = ("id", "sample", "step", "response_sha256", "model", "prompt_version", "messages_sha256")


def cache_key(record: dict) -> tuple:
    """What a cached answer is kept under: row id, sample, step, response hash, judge model, prompt version and
    the hash of the exact messages sent (which hold the response, the question and, for equivalence, the gold)."""
    return tuple(record.get(k) for k in _KEY_FIELDS)


def make_question(row_index: int, row: dict, step: str, messages: list[dict], max_tokens: int, model: str,
                  prompt_version: str = PROMPT_VERSION) -> Question:  # fmt: skip
    """A :class:`Question` with its cache record (row id, sample, step, hashes, model, prompt version)."""
    record = {"id": row["id"], "sample": row["sample"], "step": step, "response_sha256": _sha(row["response"]),
              "model": model, "prompt_version": prompt_version,
              "messages_sha256": _sha(json.dumps(messages, sort_keys=True))}  # fmt: skip
    return Question(row_index, step, messages, max_tokens, record)


class JudgeCache:
    """``judge_cache.jsonl``: every answer the judge gave, one line each, appended (under a lock) as it arrives."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.replies = {}
        for line in read_jsonl(self.path, missing_ok=True, skip_torn=True):
            if isinstance(line.get("reply"), str):
                self.replies[cache_key(line)] = line["reply"]
        self._lock = threading.Lock()

    def add(self, question: Question, reply: str) -> None:
        with self._lock:
            self.replies[question.key] = reply
            append_jsonl(self.path, [{**question.record, "reply": reply}])


def ask_all(questions: list[Question], judge: Judge, cache: JudgeCache) -> dict[tuple, str | JudgeFailure]:
    """Each question's reply (from the cache, else from the judge on ``judge.concurrency`` threads); a question
    that failed maps to its :class:`JudgeFailure`."""
    from tqdm import tqdm

    answers: dict[tuple, str | JudgeFailure] = {}
    todo: dict[tuple, Question] = {}
    for q in questions:
        if q.key in cache.replies:
            answers[q.key] = cache.replies[q.key]
            judge.stats["cached"] += 1
        else:
            todo.setdefault(q.key, q)
    if not todo:
        return answers
    judge.check()

    def one(q: Question):
        try:
            reply = judge.ask(q.messages, q.max_tokens)
        except JudgeFailure as failure:
            return q.key, failure
        cache.add(q, reply)
        return q.key, reply

    pool = ThreadPoolExecutor(max_workers=judge.concurrency, thread_name_prefix="judge")
    try:
        futures = [pool.submit(one, q) for q in todo.values()]
        with tqdm(total=len(futures), desc="judge", unit="question") as bar:
            for future in as_completed(futures):
                key, answer = future.result()
                answers[key] = answer
                bar.update(1)
    finally:  # on Ctrl-C: what has arrived is in the cache; nothing new starts
        pool.shutdown(wait=True, cancel_futures=True)
    return answers


# ------------------------------------------------------------------------------------------ judging rows
def clear_judgements(rows: list[dict]) -> bool:
    """Put every row a judge read back on its rule verdict (a rescore without the judge, or before judging again);
    whether any row changed."""
    changed = False
    for row in rows:
        judged = row.pop("judge", None)
        if judged is not None:
            row["official"] = judged["rule_official"]
            changed = True
    return changed


def _bounded_verdicts(benchmark: str, rows: list[dict], readings: dict[int, str], items_by_id: dict) -> dict:
    """The official rule's verdict on each judged reading (index -> (verdict, timed out)), time-bounded."""
    order = sorted(readings)
    pseudo = [{"id": rows[i]["id"], "extracted": readings[i], "correct": False} for i in order]
    verdicts, timed_out = official_verdicts(benchmark, pseudo, items_by_id)
    return {i: (v, late) for i, v, late in zip(order, verdicts, timed_out, strict=True)}


def _reward_verdicts(rows: list[dict], readings: dict[int, str], items_by_id: dict) -> dict[int, bool]:
    """observe-r1's reward on each judged reading (MathVerse's rule before its equivalence step)."""
    order = sorted(readings)
    items = [items_by_id[rows[i]["id"]] for i in order]
    scores = score_completions([f"<answer>{readings[i]}</answer>" for i in order], [it["answer"] for it in items],
                               choices=[it.get("choices") or [] for it in items],
                               precisions=[it.get("precision") for it in items])  # fmt: skip
    return {i: bool(s) for i, s in zip(order, scores, strict=True)}


def judge_rows(rows: list[dict], items_by_id: dict, benchmark: str | None, judge: Judge, out: str | Path) -> dict:
    """Read the rows ``judge.rows`` selects with ``judge`` and its prompts (see the module's docstring) and put
    the result in each row's ``official``; every row the judge read gets ``judge``: ``rule_official`` (its rule
    verdict), ``asked`` (the steps; none for a response the authors' scorer reads as it is), ``extracted`` /
    ``equivalent`` (what the judge said), ``failed`` (why a question failed: the row keeps its rule verdict).
    Writes ``judge_disagreements.jsonl`` into ``out``.
    Returns ``results.json``'s ``judge`` block: the prompts (name, version, hash), the counts, ``used_for`` (the
    official figures that hold a verdict the judge decided) and ``agreement`` (:func:`agreement`)."""
    block = judge.describe()
    if benchmark not in JUDGED:
        note = f"{benchmark}: its authors read answers with rules only, so the judge was not asked"
        return {**block, "requests": 0, "cached": 0, "failures": 0, "used_for": [], "note": note}
    prompts = judge.prompts_for(benchmark)
    block.update(prompts.describe())
    before = Counter(judge.stats)
    cache = JudgeCache(Path(out) / CACHE_FILE)
    items = [items_by_id[row["id"]] for row in rows]
    notes: dict[int, dict] = {}

    def note(i: int) -> dict:
        return notes.setdefault(i, {"rule_official": rows[i]["official"], "asked": []})

    def question(i: int, step: str, messages: list[dict], max_tokens: int) -> Question:
        return make_question(i, rows[i], step, messages, max_tokens, judge.model, prompts.version)

    # step 1: extraction
    readings = {i: row["extracted"] for i, row in enumerate(rows)}
    asked = [question(i, "extract", prompts.extraction_messages(benchmark, items[i], rows[i]["response"]),
                      prompts.extract_tokens)
             for i in range(len(rows))
             if asks_extraction(judge.rows, benchmark, rows[i]["response"], items[i])]  # fmt: skip
    answers = ask_all(asked, judge, cache)
    failed: set[int] = set()
    for q in asked:
        note(q.row)["asked"].append("extract")
        answer = answers[q.key]
        if isinstance(answer, JudgeFailure):
            notes[q.row]["failed"] = str(answer)
            failed.add(q.row)
        else:
            readings[q.row] = notes[q.row]["extracted"] = prompts.parse_extraction(answer)
    if judge.rows == "all":  # what the authors' scorer reads without asking is its reading too (MathVista)
        for i, row in enumerate(rows):
            as_is = authors_reading(benchmark, row["response"], items[i]) if row["response"] else None
            if as_is is not None and i not in notes:
                readings[i] = note(i)["extracted"] = as_is
    extracted = {i: readings[i] for i in notes if i not in failed}
    verdicts = {i: rows[i]["official"] for i in range(len(rows))}
    if benchmark in ("mathvista", "logicvista"):
        for i, (verdict, late) in _bounded_verdicts(benchmark, rows, extracted, items_by_id).items():
            verdicts[i] = verdict
            if late:
                notes[i]["reading_timed_out"] = True
    else:  # mathverse: the reward on the (judged) extraction, then the judge's score against the gold
        reward = {i: rows[i]["correct"] for i in range(len(rows))}
        reward.update(_reward_verdicts(rows, extracted, items_by_id))
        for i in range(len(rows)):
            if i not in failed:
                verdicts[i] = reward[i] and bool(items[i]["answer"].strip())
        asked = [question(i, "equivalence", prompts.equivalence_messages(items[i], readings[i] or ""),
                          prompts.verdict_tokens)
                 for i in range(len(rows)) if i not in failed and asks_equivalence(
                     judge.rows, rows[i]["response"], readings[i], items[i]["answer"], reward[i])]  # fmt: skip
        answers = ask_all(asked, judge, cache)
        for q in asked:
            note(q.row)["asked"].append("equivalence")
            answer = answers[q.key]
            same = None if isinstance(answer, JudgeFailure) else prompts.parse_equivalence(answer)
            if same is None:
                reason = str(answer) if isinstance(answer, JudgeFailure) else f"unreadable reply {answer[:60]!r}"
                notes[q.row]["failed"] = reason
                failed.add(q.row)
            else:
                notes[q.row]["equivalent"] = same
                verdicts[q.row] = same
    for i, judged in notes.items():
        rows[i]["judge"] = judged
        rows[i]["official"] = judged["rule_official"] if i in failed else verdicts[i]
    spent = judge.stats - before
    judged_samples = {rows[i]["sample"] for i in notes if i not in failed}
    used_for = ["official.sample_0"] if 0 in judged_samples else []
    if judged_samples and len({row["sample"] for row in rows}) > 1:
        used_for.append("official.mean_over_samples")
    summary, differ = agreement(benchmark, rows, items_by_id)
    write_jsonl(Path(out) / DISAGREEMENTS_FILE, differ)
    return {**block, "requests": spent["requests"], "retries": spent["retries"], "cached": spent["cached"],
            "failures": len(failed), "failed_requests": spent["failures"], "rows": len(rows),
            "rows_asked": sum(bool(n["asked"]) for n in notes.values()),
            "rows_judged": len(notes) - len(failed), "changed_verdicts": sum(
                rows[i]["official"] != n["rule_official"] for i, n in notes.items()),
            "used_for": used_for, "agreement": summary}  # fmt: skip


def agreement(benchmark: str, rows: list[dict], items_by_id: dict) -> tuple[dict, list[dict]]:
    """The rule reading against the judge reading of judged ``rows`` (each judged row holds ``judge``).

    Returns ``results.json``'s ``judge.agreement`` block and the rows whose verdicts differ. The block holds the
    headline figures (sample 0, as the paper's column) under the rules alone (``rule``) and with the judge
    (``judge``); ``rows_read``, the responses the judge read (asked, not failed, every sample), and ``agreement``,
    the share of those where the rule verdict and the judge verdict are the same (None when it read none).
    """
    rule_rows = [{**row, "official": row["judge"]["rule_official"]} if "judge" in row else row for row in rows]
    items = [items_by_id[i] for i in dict.fromkeys(row["id"] for row in rows)]
    read = [row for row in rows if "judge" in row and "failed" not in row["judge"]]
    differ = [row for row in read if row["official"] != row["judge"]["rule_official"]]
    block = {"rule": dict(headline(official_results(benchmark, items, rule_rows))),
             "judge": dict(headline(official_results(benchmark, items, rows))), "rows": len(rows),
             "rows_read": len(read), "rows_differ": len(differ),
             "agreement": (len(read) - len(differ)) / len(read) if read else None,
             "differing_rows_file": DISAGREEMENTS_FILE}  # fmt: skip
    lines = [{"id": row["id"], "sample": row["sample"], "gold": row["gold"], "rule_extracted": row["extracted"],
              "rule_official": row["judge"]["rule_official"], "judge_extracted": row["judge"].get("extracted"),
              "judge_equivalent": row["judge"].get("equivalent"), "judge_official": row["official"],
              "response": row["response"]} for row in differ]  # fmt: skip
    return block, lines


def agreement_note(block: dict) -> str:
    """One sentence on :func:`agreement`'s block, for ``summary.md`` and ``results.json``'s official block.

    >>> agreement_note({"rule": {"accuracy": 0.5}, "judge": {"accuracy": 0.75}, "rows_read": 4, "rows_differ": 1,
    ...                 "agreement": 0.75, "differing_rows_file": "judge_disagreements.jsonl"})[:88]
    'rule figure accuracy 0.5000, judge figure 0.7500; the two readings agree on 3 of the 4 r'
    """
    names = list(block["judge"])
    rule = ", ".join(f"{n} {block['rule'][n]:.4f}" for n in names)
    judged = ", ".join(f"{block['judge'][n]:.4f}" for n in names)
    read, differ = block["rows_read"], block["rows_differ"]
    share = f" ({100 * block['agreement']:.1f}%)" if block["agreement"] is not None else ""
    where = block["differing_rows_file"]
    return (f"rule figure {rule}, judge figure {judged}; the two readings agree on {read - differ} of the {read} "
            f"responses the judge read{share}; the {differ} that differ are in {where}")  # fmt: skip
