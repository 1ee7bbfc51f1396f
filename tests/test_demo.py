"""`observe-r1 demo --quick` end to end (the learning gain itself is measured by bench/demo_seeds.py)."""

import json

import pytest
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.jsonl import read_jsonl


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_demo_writes_a_well_formed_summary_and_report(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after", "sampled_accuracy_before", "sampled_accuracy_after",
                "format_rate_before", "format_rate_after", "majority_baseline"):  # fmt: skip
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["format_rate_before"] > 0.5  # the warm start learned the format
    assert summary["rl_steps"] > 0
    assert any(name.startswith("6. Observe-R1 RL") for name in summary["stage_seconds"])
    assert "7. evaluate after RL" in summary["stage_seconds"]
    assert sum(level["count"] for level in summary["ladder_levels"]) > 0
    report = (out / "report.md").read_text()
    assert f"{summary['accuracy_before']:.3f}" in report and f"{summary['accuracy_after']:.3f}" in report
    # the summary's numbers are the evaluations' numbers, recomputable from the predictions
    predictions = read_jsonl(out / "eval-after" / "greedy" / "predictions.jsonl")
    assert summary["accuracy_after"] == pytest.approx(sum(p["correct"] for p in predictions) / len(predictions))
    answers = [row["answer"] for row in read_jsonl(out / "data" / "heldout.jsonl")]
    assert summary["majority_baseline"] == max(answers.count(a) for a in set(answers)) / len(answers)
    # RL consumed the ladder's training sequence in order, from its start
    consumed = [i for row in read_jsonl(out / "rl" / "consumed.jsonl") for i in row["ids"]]
    sequence = [row["id"] for row in read_jsonl(out / "ladder" / "train.jsonl")]
    assert consumed and consumed == sequence[: len(consumed)]
    curve = summary["learning_curve"]  # held-out greedy accuracy at 0, 25, 50, 75, 100 % of the RL steps
    n = summary["rl_steps"]
    assert [p["step"] for p in curve] == [0, round(n / 4), round(n / 2), round(3 * n / 4), n]
    assert curve[0]["accuracy"] == summary["accuracy_before"] and curve[-1]["accuracy"] == summary["accuracy_after"]
    assert all((out / "eval-during" / f"step-{p['step']}" / "results.json").is_file() for p in curve[1:-1])
    for plot in ("learning_curve", "rewards", "length", "weight", "curriculum", "sampling", "ladder", "compare"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    metrics = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == summary["rl_steps"]
    assert {"step", "reward", "accuracy", "format_rate", "bonus_rate", "dyna_weight_mean", "zero_std_generated",
            "zero_std_trained", "generation_rounds", "prompts_generated"} <= set(metrics[0])  # fmt: skip
