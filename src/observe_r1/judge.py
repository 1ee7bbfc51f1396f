"""An LLM judge for the answer-reading step of the benchmarks whose authors read answers with an LLM.

    observe-r1 eval --benchmark MathVista/data/testmini.json --responses r.jsonl --out evals/r \\
        --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct

MathVista's scorer asks an LLM to extract the answer from a response before normalising and comparing it,
MathVerse's asks one to extract the answer and then to judge it against the gold, LogicVista's asks one to extract
the chosen letters. :mod:`observe_r1.official` reads answers with rules; with a judge (any OpenAI-compatible
server, through the ``openai`` client) the rows the rules cannot settle are read by the judge instead, and the
authors' rule then compares what it read. Every other row keeps its rule verdict, and without a judge nothing
changes. Which rows go to the judge (:func:`rule_reads`, :func:`needs_equivalence`):

===========  ========================================================================================
mathvista    extraction, for a response with no marked answer (``<answer>…</answer>`` or ``\\boxed{}``) or
             whose marked answer is not in the form MathVista's normalisation reads as is: an option letter
             (``B``, ``(B)``) or an option's exact text for multiple choice, a plain number for integer and
             float questions, any non-empty text for text and list questions. The judge's reply is then
             normalised and compared by :func:`~observe_r1.official.mathvista_correct`. A row with an empty
             gold is wrong whatever it says and is not asked.
mathverse    extraction, for a response with no marked answer (any non-empty marked answer is the
             extraction); then equivalence, for every answer observe-r1's reward marks wrong, unless the answer
             and the gold are both single option letters (a different letter is wrong without asking) or
             either is empty. An answer the reward accepts is right without asking; a row with an empty gold
             is wrong (as without a judge) and is not asked.
logicvista   extraction, for a response with no marked answer or whose marked answer is not a plain list of
             option letters (``A``, ``a, c``, ``(B) and (D)``) or a single digit (an option number). The
             judge's reply is read by :func:`~observe_r1.official.logicvista_letters` and compared as a set.
===========  ========================================================================================

An empty response is never sent (there is nothing to read). MATH-V, We-Math and MMMU are read by rules only, as
their authors read them: the judge is not asked for them.

The prompts are observe-r1's own, written from those procedures; :data:`PROMPT_VERSION` changes with them. Each
answer is appended to ``judge_cache.jsonl`` in the eval folder as it arrives, keyed by (row id, sample, step,
response hash, judge model, prompt version, hash of the exact messages sent): a rerun, a resumed eval or a
re-score asks nothing already answered. Requests run on a bounded thread pool, each with a timeout and retries with
exponential backoff on connection errors, timeouts, 429 and 5xx; a question that still fails leaves its row on the
rule reading and is counted (``failures``). A judge that cannot be reached before the first question is a
:class:`JudgeError`, printed by the command line as one line naming the URL.
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
from observe_r1.jsonl import append_jsonl, read_jsonl
from observe_r1.layouts import LETTERS
from observe_r1.official import official_verdicts
from observe_r1.rewards import extract_answer, score_completions

PROMPT_VERSION = "v1"
CACHE_FILE = "judge_cache.jsonl"
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


# -------------------------------------------------------------------------------------------------- client
class Judge:
    """An OpenAI-compatible chat endpoint used as a judge: bounded concurrency, per-request timeout, retries
    with exponential backoff. ``stats`` counts ``requests`` (questions sent), ``retries``, ``cached`` (answered
    from the cache) and ``failures`` (questions left unanswered)."""

    def __init__(self, url: str, model: str, *, api_key: str | None = None, key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0) -> None:  # fmt: skip
        from openai import OpenAI

        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise JudgeError(f"judge at {url}: concurrency must be ≥ 1, retries ≥ 0 and timeout > 0")
        self.url, self.model, self.key_env = url, model, key_env
        self.concurrency, self.retries, self.backoff = concurrency, retries, backoff
        # a local server needs no key, but the client refuses an empty one
        self.client = OpenAI(base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=0)
        self.stats: Counter = Counter()
        self._checked = False
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"url": self.url, "model": self.model, "prompt_version": PROMPT_VERSION}

    def _post(self, messages: list[dict], max_tokens: int, *, retry_connect: bool = True) -> str:
        """One chat completion (temperature 0), retried on transient errors; the reply's text."""
        import openai

        for attempt in range(self.retries + 1):
            try:
                reply = self.client.chat.completions.create(
                    model=self.model, messages=messages, temperature=0.0, max_tokens=max_tokens
                )
                return reply.choices[0].message.content or ""
            except openai.APIStatusError as err:
                transient = err.status_code >= 500 or err.status_code in _RETRY_STATUS
                if not transient or attempt == self.retries:
                    raise
            except openai.APIConnectionError:  # refused, reset, or past the timeout
                if not retry_connect or attempt == self.retries:
                    raise
            with self._lock:
                self.stats["retries"] += 1
            time.sleep(self.backoff * 2**attempt * (1 + random.random() / 4))
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Ask one trivial question once, before the first real one: an unreachable server, a refused key or a
        refused model is a :class:`JudgeError` naming the URL (the probe is not counted in ``stats``)."""
        import openai

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


def make_question(row_index: int, row: dict, step: str, messages: list[dict], max_tokens: int, model: str):
    """A :class:`Question` with its cache record (row id, sample, step, hashes, model, prompt version)."""
    record = {"id": row["id"], "sample": row["sample"], "step": step, "response_sha256": _sha(row["response"]),
              "model": model, "prompt_version": PROMPT_VERSION,
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
    """Read the rows the rules cannot settle with ``judge`` (see the module's table) and put the result in each
    row's ``official``; every row the judge was asked about gets ``judge``: ``rule_official`` (its rule verdict),
    ``asked`` (the steps), ``extracted`` / ``equivalent`` (what the judge said), ``failed`` (why a question
    failed: the row keeps its rule verdict). Returns ``results.json``'s ``judge`` block: the counts, and
    ``used_for``, the official figures that hold a verdict the judge decided."""
    block = judge.describe()
    if benchmark not in JUDGED:
        note = f"{benchmark}: its authors read answers with rules only, so the judge was not asked"
        return {**block, "requests": 0, "cached": 0, "failures": 0, "used_for": [], "note": note}
    before = Counter(judge.stats)
    cache = JudgeCache(Path(out) / CACHE_FILE)
    items = [items_by_id[row["id"]] for row in rows]
    notes: dict[int, dict] = {}

    def note(i: int) -> dict:
        return notes.setdefault(i, {"rule_official": rows[i]["official"], "asked": []})

    # step 1: extraction, for the rows whose answer the rules can't read
    readings = {i: row["extracted"] for i, row in enumerate(rows)}
    asked = [make_question(i, rows[i], "extract", extraction_messages(benchmark, items[i], rows[i]["response"]),
                           EXTRACT_TOKENS, judge.model)
             for i in range(len(rows)) if not rule_reads(benchmark, rows[i]["response"], items[i])]  # fmt: skip
    answers = ask_all(asked, judge, cache)
    failed: set[int] = set()
    for q in asked:
        note(q.row)["asked"].append("extract")
        answer = answers[q.key]
        if isinstance(answer, JudgeFailure):
            notes[q.row]["failed"] = str(answer)
            failed.add(q.row)
        else:
            readings[q.row] = notes[q.row]["extracted"] = parse_extraction(answer)
    extracted = {i: readings[i] for i in notes if i not in failed}
    verdicts = {i: rows[i]["official"] for i in range(len(rows))}
    if benchmark in ("mathvista", "logicvista"):
        for i, (verdict, late) in _bounded_verdicts(benchmark, rows, extracted, items_by_id).items():
            verdicts[i] = verdict
            if late:
                notes[i]["reading_timed_out"] = True
    else:  # mathverse: the reward on the (judged) extraction, then the equivalence judge for what it rejects
        reward = {i: rows[i]["correct"] for i in range(len(rows))}
        reward.update(_reward_verdicts(rows, extracted, items_by_id))
        for i in range(len(rows)):
            if i not in failed:
                verdicts[i] = reward[i] and bool(items[i]["answer"].strip())
        asked = [make_question(i, rows[i], "equivalence", equivalence_messages(items[i], readings[i]), VERDICT_TOKENS,
                               judge.model)
                 for i in range(len(rows))
                 if i not in failed and needs_equivalence(readings[i], items[i]["answer"], reward[i])]  # fmt: skip
        answers = ask_all(asked, judge, cache)
        for q in asked:
            note(q.row)["asked"].append("equivalence")
            answer = answers[q.key]
            same = None if isinstance(answer, JudgeFailure) else parse_equivalence(answer)
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
    return {**block, "requests": spent["requests"], "retries": spent["retries"], "cached": spent["cached"],
            "failures": len(failed), "failed_requests": spent["failures"], "rows": len(rows), "rows_asked": len(notes),
            "rows_judged": len(notes) - len(failed), "changed_verdicts": sum(
                rows[i]["official"] != n["rule_official"] for i, n in notes.items()),
            "used_for": used_for}  # fmt: skip
