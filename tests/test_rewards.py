import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observe_r1.mathpool import REWARD_STATS
from observe_r1.rewards import (
    AccuracyReward,
    FormatReward,
    accuracy_reward,
    extract_answer,
    format_reward,
    score_completions,
    unscoreable,
)


def wrap(answer: str) -> str:
    return f"<observe>two red squares</observe> <think>count them</think> <answer>{answer}</answer>"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<observe>X</observe><think>Y</think><answer>Z</answer>", 1.0),  # flat, no spaces
        ("  <observe>X</observe>\n <think>Y</think>\n\n<answer>Z</answer>\n", 1.0),  # whitespace around/between
        ("<think>Y1 <observe>X</observe> Y2</think> <answer>Z</answer>", 1.0),  # nested form
        ("<think><observe>X</observe> Y2</think><answer>Z</answer>", 1.0),  # nested, reasoning only after
        ("<think><observe>X</observe></think><answer>Z</answer>", 0.0),  # nested, think holds no reasoning
        ("<observe>X</observe><think>Y</think><answer>Z</answer> extra", 0.0),  # text after </answer>
        ("hi <observe>X</observe><think>Y</think><answer>Z</answer>", 0.0),  # text before first tag
        ("<observe>X</observe> and <think>Y</think><answer>Z</answer>", 0.0),  # text between blocks
        ("<observe> </observe><think>Y</think><answer>Z</answer>", 0.0),  # blank observe
        ("<observe>X</observe><think>Y</think><answer> </answer>", 0.0),  # blank answer
        ("<observe>X</observe><think> \n</think><answer>Z</answer>", 0.0),  # blank think
        ("<think>Y</think><observe>X</observe><answer>Z</answer>", 0.0),  # wrong order
        ("<observe>X</observe><think>Y</think><answer>Z</answer><answer>Z</answer>", 0.0),  # tag twice
        ("<think>Y <observe>X</observe> <observe>X</observe></think><answer>Z</answer>", 0.0),  # nested, twice
        ("<OBSERVE>X</OBSERVE><think>Y</think><answer>Z</answer>", 0.0),  # upper-case tags
        ("<think>Y</think><answer>Z</answer>", 0.0),  # no observe
        ("<observe>X</observe><answer>Z</answer>", 0.0),  # no think
        ("<observe>X</observe><think>Y</think>", 0.0),  # no answer
        ("<observe>X<think>Y</observe></think><answer>Z</answer>", 0.0),  # interleaved
        ("<observe>X</observe><think>Y</think><answer>line 1\nline 2</answer>", 1.0),  # multi-line answer
    ],
)
def test_format_reward_table(text, expected):
    assert format_reward(text) == expected


def test_format_reward_is_linear_on_adversarial_input():
    evil = "<observe>" + "<think>" * 200_000 + "</observe>" * 50_000 + " " * 300_000
    start = time.perf_counter()
    assert format_reward(evil) == 0.0
    assert format_reward("<observe>" + "x" * 1_000_000 + "</observe><think>y</think><answer>1</answer>") == 1.0
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>42</answer>", "42"),
        ("<answer>\nline 1\nline 2\n</answer>", "line 1\nline 2"),  # DOTALL (reference missed these)
        ("so \\boxed{\\frac{1}{2}} and \\boxed{3}", "3"),  # last boxed
        ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),  # nested braces
        ("<answer>1</answer><answer>2</answer>", None),  # not a single answer
        ("no answer here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_answer_table(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("B", "B", 1.0),
        ("(B)", "B", 1.0),
        ("B.", "(B)", 1.0),
        ("B)", "B", 1.0),
        ("(B) 5 cm", "B", 1.0),  # the reference failed this: "cm" contains "c"
        ("B: 5 cm", "B", 1.0),
        ("The answer is B", "B", 1.0),
        ("B or C", "B", 0.0),  # ambiguous
        ("C", "B", 0.0),
        ("5 cm", "B", 0.0),  # no letter
        ("\\frac{1}{2}", "0.5", 1.0),
        ("0.5", "\\frac{1}{2}", 1.0),
        ("12.0", "12", 1.0),
        ("\\boxed{5}", "5", 1.0),
        ("$3$", "3", 1.0),
        ("1+x^2", "x^2+1", 1.0),
        ("7", "12", 0.0),
        ("0.51", "\\frac{1}{2}", 0.0),
        ("yes", "Yes", 1.0),
        ("  Red   circle ", "red circle", 1.0),
        ("no", "Yes", 0.0),
    ],
)
def test_accuracy_reward_table(prediction, gold, expected):
    assert accuracy_reward(wrap(prediction), gold) == expected


def test_accuracy_reward_multiline_answer():
    # the reference extracted answers without DOTALL and missed these
    assert accuracy_reward("<observe>x</observe><think>y</think><answer>\nthe result:\n12\n</answer>", "12") == 1.0
    assert accuracy_reward("<observe>x</observe><think>y</think><answer>\n12\n</answer>", "12") == 1.0


def test_no_answer_scores_zero():
    assert accuracy_reward("I think it is 12", "12") == 0.0


def test_unparseable_gold_scores_zero_and_is_counted():
    before = REWARD_STATS["unparseable_gold"]
    assert accuracy_reward(wrap("\\frac{1}{2"), "\\frac{1}{2") == 0.0  # reference code scored this 1.0
    assert REWARD_STATS["unparseable_gold"] == before + 1
    assert "can't be parsed" in unscoreable("\\frac{1}{2")
    assert unscoreable("") == "empty answer"
    assert unscoreable("\\frac{3}{4}") is None and unscoreable("B") is None and unscoreable("yes") is None


def test_same_results_from_worker_thread():
    cases = [(wrap("\\frac{1}{2}"), "0.5"), (wrap("(C)"), "C"), (wrap("8"), "9")]
    main = [accuracy_reward(c, g) for c, g in cases]
    from_thread = []
    thread = threading.Thread(target=lambda: from_thread.extend(accuracy_reward(c, g) for c, g in cases))
    thread.start()
    thread.join()
    assert from_thread == main == [1.0, 1.0, 0.0]


def test_pathological_answers_are_time_bounded():
    start = time.perf_counter()
    assert accuracy_reward(wrap("9" * 100_000), "5") == 0.0
    before = REWARD_STATS["timeout"]
    assert score_completions([wrap("10^{10^{10^{10}}}")], ["10^{10}"], timeout=1.0) == [0.0]
    assert REWARD_STATS["timeout"] == before + 1
    assert time.perf_counter() - start < 5


def test_timeout_does_not_stall_the_batch():
    completions = [wrap("\\frac{2}{4}"), wrap("10^{10^{10^{10}}}"), wrap("\\sqrt{4}"), wrap("0.25")]
    answers = ["0.5", "10^{10}", "2", "\\frac{1}{4}"]
    start = time.perf_counter()
    assert score_completions(completions, answers, workers=2, timeout=1.0) == [1.0, 0.0, 1.0, 1.0]
    assert time.perf_counter() - start < 4


def test_trl_adapters_accept_strings_and_messages():
    completions = [wrap("3"), [{"role": "assistant", "content": wrap("4")}], "plain 3"]
    assert FormatReward()(completions) == [1.0, 1.0, 0.0]
    assert AccuracyReward()(completions, answer=["3", "3", "3"]) == [1.0, 0.0, 0.0]
    assert FormatReward().__name__ == "format" and AccuracyReward().__name__ == "accuracy"  # TRL metric keys


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("<>/abcdefghiknorstvwABC01 \n{}\\$()")), max_size=120))
def test_rewards_never_raise_on_arbitrary_text(text):
    assert format_reward(text) in (0.0, 1.0)
    assert accuracy_reward(text, "B") in (0.0, 1.0)
    assert accuracy_reward(text, "yes") in (0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=60))
def test_math_rewards_never_raise_on_arbitrary_text(text):
    assert accuracy_reward(wrap(text), "\\frac{1}{2}") in (0.0, 1.0)
