"""A model's answer can never hang eval or run code (issue #31): every official reader and the reward read untrusted
text under a time bound, in worker processes, and nothing evaluates text as Python."""

import ast
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observe_r1.eval import score_responses
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.mathpool import REWARD_STATS, bounded_map
from observe_r1.official import _latex_value, official_verdicts
from observe_r1.rewards import score_completions
from tests.helpers import benchmark_file

SRC = Path(__file__).resolve().parents[1] / "src" / "observe_r1"

FLOAT_META = {"question_type": "free_form", "answer_type": "float"}
# One item per benchmark reader, with the fields its official rule reads.
ITEMS = {
    "mathvista": {"id": "v", "answer": "B", "choices": ["2 cm", "5 cm"], "meta": {"question_type": "multi_choice"}},
    "mathvista_float": {"id": "f", "answer": "1.2", "choices": [], "precision": 1, "meta": FLOAT_META},
    "mathvision": {"id": "m", "answer": "36", "choices": [], "meta": {"options": []}},
    "mathvision_options": {"id": "o", "answer": "C", "choices": [], "meta": {"options": ["1", "$1,\\!507$", "3"]}},
    "wemath": {"id": "w", "answer": "C", "choices": ["1", "2", "3"], "meta": {}},
    "logicvista": {"id": "l", "answer": "A, C", "choices": [], "meta": {}},
    "mathverse": {"id": "s", "answer": "\\frac{1}{2}", "choices": [], "meta": {}},
    "mmmu": {"id": "u", "answer": "B", "choices": ["x", "y"], "meta": {}},
}
BENCHMARK = {name: name.split("_")[0] for name in ITEMS}

PATHOLOGICAL = [
    "9^{9^{9}}", "2^{2^{2^{2^{2^{2}}}}}", "(10^{10^{10}})!", "10!!!!", "9999999999!", "\\frac{1}{0}", "0^{-1}",
    "(" * 500 + "1" + ")" * 500, "\\frac{" * 200 + "1" + "}{2}" * 200, "\\sqrt{" * 300 + "2" + "}" * 300,
    "1" * 100_000, "x" * 100_000, "\\boxed{" * 1000, "$" * 5000, "A" * 50_000 + " Answer: B",
    "\x00\x01\x02\x1b[31m\u202e\ufeff", "🙂" * 1000, "\\begin{pmatrix}" * 100, "\\left(" * 300 + "\\right)",
    "().__class__.__base__.__subclasses__()", "__import__('os').system('touch PWNED')",
    "exec(\"open('PWNED','w')\")", "lambda: 1", "\\frac{a}{", "}{", "\\\\\\\\", "1e999999", "-1e-999999",
    "10^{10^{100}} - 10^{10^{100}}", "\\int_0^\\infty e^{-x^2} dx", "\\lim_{x\\to 0} \\frac{\\sin x}{x}",
]  # fmt: skip


def test_no_module_evaluates_text_as_code():
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert not {"eval", "exec", "compile"} & set(calls), f"{path.name} calls eval/exec/compile"


def test_mathv_values_without_eval():
    # the values MATH-V's rule gives (printed expression under Python's math names), computed by sympy instead
    assert _latex_value("4\\pi") == pytest.approx(12.5664, abs=1e-4)
    assert _latex_value("\\frac{\\sqrt{3}}{2}") == pytest.approx(0.8660, abs=1e-4)
    assert _latex_value("$50\\%$") == 0.5  # latex2sympy keeps the percent unevaluated
    assert _latex_value("1,507,509") == 1507509.0
    assert _latex_value("\\csc 2") is None and _latex_value("x + 1") is None  # names math lacks give no value
    assert _latex_value("\\sqrt{-1}") is None and _latex_value("\\infty") is None and _latex_value("1/0") is None
    assert _latex_value("__import__('os')") is None


@pytest.mark.parametrize("reader", list(ITEMS))
def test_every_reader_returns_a_verdict_for_pathological_answers(reader, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything executed would write PWNED here
    item = ITEMS[reader]
    rows = [{"id": item["id"], "extracted": text, "correct": False} for text in PATHOLOGICAL]
    verdicts, timed_out = official_verdicts(BENCHMARK[reader], rows, {item["id"]: item}, timeout=1.0)
    assert verdicts == [False] * len(PATHOLOGICAL)  # none of them is the gold
    assert len(timed_out) == len(PATHOLOGICAL) and not (tmp_path / "PWNED").exists()
    gold = [{"id": item["id"], "extracted": item["answer"], "correct": True}]
    assert official_verdicts(BENCHMARK[reader], gold, {item["id"]: item}, timeout=1.0) == ([True], [False])


def test_reward_bounds_pathological_answers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = REWARD_STATS["timeout"]
    completions = [f"<answer>{text}</answer>" for text in PATHOLOGICAL]
    scores = score_completions(completions, ["36"] * len(PATHOLOGICAL), timeout=1.0)
    assert scores == [0.0] * len(PATHOLOGICAL) and not (tmp_path / "PWNED").exists()
    assert REWARD_STATS["timeout"] > before  # the towers and factorials ran into the bound, and were counted


def _maybe_stuck(i: int, stuck: str) -> int:
    """``i * 2``, except for the item that loops: in Python (the alarm stops it) or deaf to the alarm, as C code is."""
    if stuck == "python":
        while True:
            pass
    if stuck == "deaf":
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    return i * 2


@pytest.mark.parametrize("stuck", ["python", "deaf"])
def test_a_stuck_item_does_not_take_its_chunk_with_it(stuck):
    # the item that never returns times out; every other item, its chunk's included, keeps its own result
    args = [(i, stuck if i == 5 else "") for i in range(12)]
    results = bounded_map(_maybe_stuck, args, timeout=0.5, workers=2)
    assert results == [i * 2 if i != 5 else "timeout" for i in range(12)]


def test_eval_scores_a_hanging_answer_wrong_and_counts_it(tmp_path):
    benchmark = benchmark_file("mathvision/data/test.jsonl")
    ids = [row["id"] for row in read_jsonl(benchmark)][:3]
    golds = {row["id"]: row["answer"] for row in read_jsonl(benchmark)}
    responses = [{"id": ids[0], "response": "<answer>9^{9^{9}}</answer>"},
                 {"id": ids[0], "response": f"<answer>{golds[ids[0]]}</answer>"},  # its second sample
                 {"id": ids[1], "response": f"<answer>{golds[ids[1]]}</answer>"},
                 {"id": ids[2], "response": "<answer>__import__('os').system('touch PWNED')</answer>"}]  # fmt: skip
    write_jsonl(tmp_path / "r.jsonl", responses)
    results = score_responses(benchmark, tmp_path / "r.jsonl", tmp_path / "eval")
    assert results["n_timeouts"] == 1 and results["timeout_ids"] == [ids[0]]
    rows = {(row["id"], row["sample"]): row for row in read_jsonl(tmp_path / "eval" / "predictions.jsonl")}
    assert rows[ids[0], 0]["official"] is False and rows[ids[0], 0]["official_timeout"] is True
    assert rows[ids[0], 1]["official"] is True and "official_timeout" not in rows[ids[0], 1]  # flagged per sample
    assert rows[ids[1], 0]["official"] is True and "official_timeout" not in rows[ids[1], 0]
    assert "past the time bound (scored wrong): 1" in (tmp_path / "eval" / "summary.md").read_text()


@st.composite
def pathological(draw):
    """Pathological answers built from pieces: towers, factorials, nesting, long runs, odd characters, code."""
    piece = st.sampled_from(["9^{", "}", "!", "(", ")", "\\frac{", "}{", "\\sqrt{", "10^{10^{", "\\left(", "\\right)",
                             "__import__('os')", "().__class__", "$", "\\boxed{", "Answer:", "\x00", "\u202e", "e",
                             "1", "9", "A", " ", ",", "\\!", "\\%", "="])  # fmt: skip
    parts = draw(st.lists(piece, min_size=1, max_size=40))
    repeat = draw(st.integers(1, 200))
    return "".join(parts) * repeat


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=st.lists(pathological(), min_size=1, max_size=6))
def test_fuzz_every_reader_and_the_reward_stay_within_the_bound(answers):
    bound = 1.0
    for reader, item in ITEMS.items():
        rows = [{"id": item["id"], "extracted": a, "correct": False} for a in answers]
        start = time.monotonic()
        verdicts, _ = official_verdicts(BENCHMARK[reader], rows, {item["id"]: item}, timeout=bound)
        # per item: the bound, plus a stuck chunk's grace period (bound × chunk + 5 s) and one retry alone
        assert time.monotonic() - start < len(answers) * (2 * bound + 6) + 10, reader
        assert len(verdicts) == len(answers) and all(isinstance(v, bool) for v in verdicts)
    start = time.monotonic()
    scores = score_completions([f"<answer>{a}</answer>" for a in answers], ["36"] * len(answers), timeout=bound)
    assert time.monotonic() - start < len(answers) * (2 * bound + 6) + 10
    assert len(scores) == len(answers)
