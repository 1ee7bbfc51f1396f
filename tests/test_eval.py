"""Evaluation harness: every benchmark layout, exact metrics with a scripted model, one real tiny-model run."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.data import DataError, load_items, open_image
from observe_r1.eval import compare, evaluate, fallback_answer
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.synth import generate_items, write_dataset


@pytest.fixture
def image_file(tmp_path):
    Image.new("RGB", (56, 56), "blue").save(tmp_path / "a.png")
    return "a.png"


def _png_bytes(tmp_path):
    return (tmp_path / "a.png").read_bytes()


def _write_jsonl(path, rows):
    write_jsonl(path, rows)
    return path


LAYOUT_ROWS = {
    "mathvista": lambda img: {"pid": "7", "question": "Which is largest?", "choices": ["2", "5", "9"], "answer": "9",
                              "answer_type": "text", "precision": None, "image": img,
                              "metadata": {"category": "math-targeted-vqa"}},
    "mathverse": lambda img: {"sample_index": "3", "problem_index": "1", "problem_version": "Vision Only",
                              "question": "Choices: A:1 B:2", "answer": "B", "image": img},
    "mathvision": lambda img: {"id": "11", "question": "Area?", "options": ["1", "4"], "answer": "B",
                               "image": img, "subject": "metric geometry"},
    "wemath": lambda img: {"ID": "2steps_1", "question": "Angle?", "option": "A. 30°; B. 60°", "answer": "A",
                           "image_path": img, "key": "2steps"},
    "logicvista": lambda img: {"question": "Which? A. x B. y C. z", "answer": "A, C", "imagename": img,
                               "skill": "inductive"},
    "mmmu": lambda img: {"id": "m1", "question": "<image 1> Pick", "options": "['cat', 'dog']", "answer": "A",
                         "image_1": img, "subfield": "Biology"},
    "canonical": lambda img: {"problem": "How many?", "answer": "3", "images": [img], "family": "count_all"},
}  # fmt: skip
EXPECTED = {"mathvista": ("C", "math-targeted-vqa"), "mathverse": ("B", "Vision Only"),
            "mathvision": ("B", "metric geometry"), "wemath": ("A", "2steps"), "logicvista": ("A, C", "inductive"),
            "mmmu": ("A", "Biology"), "canonical": ("3", "count_all")}  # fmt: skip


@pytest.mark.parametrize("layout", sorted(LAYOUT_ROWS))
def test_each_layout_loads(tmp_path, image_file, layout):
    path = _write_jsonl(tmp_path / f"{layout}.jsonl", [LAYOUT_ROWS[layout](image_file)])
    item = load_items(path)[0][0]
    assert (item["answer"], item["category"]) == EXPECTED[layout]
    assert len(item["images"]) == 1 and open_image(item["images"][0]).size == (56, 56)
    assert "<image" not in item["problem"]


def test_mathvista_parquet_with_image_bytes_renders_choices(tmp_path, image_file):
    row = LAYOUT_ROWS["mathvista"](None)
    row["decoded_image"] = {"bytes": _png_bytes(tmp_path), "path": None}
    row["metadata"] = {"category": "vqa"}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "mv.parquet")
    item = load_items(tmp_path / "mv.parquet")[0][0]
    assert "(A) 2\n(B) 5\n(C) 9" in item["problem"] and item["answer"] == "C"


def test_malformed_benchmarks_give_clear_errors(tmp_path, image_file):
    with pytest.raises(DataError, match="unknown layout"):
        load_items(_write_jsonl(tmp_path / "x.jsonl", [{"foo": 1}]))
    with pytest.raises(DataError, match=r"row 0: field 'answer': empty"):
        load_items(_write_jsonl(tmp_path / "y.jsonl", [{"problem": "q", "answer": " ", "images": [image_file]}]))
    with pytest.raises(DataError, match=r"row 0: field 'images'.*not found"):
        load_items(_write_jsonl(tmp_path / "z.jsonl", [{"problem": "q", "answer": "1", "images": ["no.png"]}]))


class ScriptedModel:
    def __init__(self, responses):
        self.responses = responses

    def generate(self, records, *, n=1, temperature=0.0, system_prompt=None):
        return [[self.responses[r["problem"]]] * n for r in records]


def test_metrics_are_exact_with_a_scripted_model(tmp_path, image_file):
    rows = [{"id": "a", "problem": "p1", "answer": "3", "images": [image_file], "category": "x"},
            {"id": "b", "problem": "p2", "answer": "B", "images": [image_file], "category": "x"},
            {"id": "c", "problem": "p3", "answer": "0.5", "images": [image_file], "category": "y"},
            {"id": "d", "problem": "p4", "answer": "7", "images": [image_file], "category": "y"}]  # fmt: skip
    model = ScriptedModel({
        "p1": ("<observe>three dots</observe> <think>one two three</think> <answer>3</answer>", 10),
        "p2": ("The answer is (B) 5 cm", 6),  # no tags: fallback to the last option letter
        "p3": ("<observe>x</observe> <think>half</think> <answer>\\frac{1}{2}</answer>", 20),
        "p4": ("<observe>x</observe> <think>y</think> <answer>8</answer>", 30),
    })  # fmt: skip
    results = evaluate(model, _write_jsonl(tmp_path / "b.jsonl", rows), tmp_path / "out")
    assert results["accuracy"] == 0.75 and results["format_rate"] == 0.75
    assert results["per_category"] == {"x": 1.0, "y": 0.5}
    assert results["mean_tokens_correct"] == 12 and results["mean_tokens_incorrect"] == 30
    assert results["mean_observe_words"] == pytest.approx(4 / 3)
    predictions = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [p["extracted"] for p in predictions] == ["3", "B", "\\frac{1}{2}", "8"]
    # resumable: a second run finds everything done and generates nothing
    again = evaluate(ScriptedModel({}), tmp_path / "b.jsonl", tmp_path / "out")
    assert again["accuracy"] == 0.75


def test_fallback_answer():
    assert fallback_answer("so it is 12 and then 14", "3") == "14"
    assert fallback_answer("I pick (C).", "B") == "C"
    assert fallback_answer("\\boxed{4}", "4") == "4"
    assert fallback_answer("nothing", "4") is None


def test_real_tiny_model_eval_and_compare(tiny_model_dir, tmp_path):
    bench = write_dataset(generate_items(6, seed=1), tmp_path / "bench")
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmark", str(bench), "--out",
                                     str(tmp_path / name), "--max-new-tokens", "12"])  # fmt: skip
        assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    predictions = read_jsonl(tmp_path / "a" / "predictions.jsonl")
    assert len(predictions) == 6
    # results are the predictions' aggregate, and greedy decoding of one model is deterministic
    assert results["accuracy"] == pytest.approx(sum(p["correct"] for p in predictions) / 6)
    assert results["format_rate"] == pytest.approx(sum(p["format"] for p in predictions) / 6)
    assert [p["response"] for p in read_jsonl(tmp_path / "b" / "predictions.jsonl")] == [
        p["response"] for p in predictions
    ]
    compare([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    assert (tmp_path / "cmp" / "compare.png").is_file() and "| a |" in (tmp_path / "cmp" / "compare.md").read_text()


def test_compare_keeps_runs_whose_folders_share_a_name(tmp_path, image_file):
    rows = [{"id": "a", "problem": "p1", "answer": "3", "images": [image_file]}]
    bench = _write_jsonl(tmp_path / "b.jsonl", rows)
    right = ScriptedModel({"p1": ("<observe>o</observe> <think>t</think> <answer>3</answer>", 5)})
    wrong = ScriptedModel({"p1": ("<observe>o</observe> <think>t</think> <answer>4</answer>", 5)})
    evaluate(wrong, bench, tmp_path / "before" / "greedy")
    evaluate(right, bench, tmp_path / "after" / "greedy")
    compare([tmp_path / "before" / "greedy", tmp_path / "after" / "greedy"], tmp_path / "cmp")
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| before/greedy | 0.000 |" in table and "| after/greedy | 1.000 |" in table
    compare([tmp_path / "before" / "greedy", tmp_path / "after" / "greedy"], tmp_path / "cmp2", ["before", "after"])
    assert "| after | 1.000 |" in (tmp_path / "cmp2" / "compare.md").read_text()


def test_qwen3_eval_on_math_v_with_official_figures_equals_scoring_its_responses(tiny_qwen3_dir, tmp_path):
    """The tiny Qwen3-VL evaluated on published MATH-V rows (their images, the official rule), then its own responses
    scored again with ``--responses`` (no model): the same verdicts and figures."""
    from tests.helpers import benchmark_file

    bench = benchmark_file("mathvision/data/test.jsonl")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--model", str(tiny_qwen3_dir), "--benchmark", str(bench), "--out",
                                 str(tmp_path / "gen"), "--limit", "4", "--max-new-tokens", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    generated = json.loads((tmp_path / "gen" / "results.json").read_text())
    predictions = read_jsonl(tmp_path / "gen" / "predictions.jsonl")
    assert generated["n_items"] == 4 and generated["official"]["benchmark"] == "mathvision"
    assert all(p["response"] for p in predictions)  # the model saw the image and the question, and answered
    write_jsonl(tmp_path / "responses.jsonl", [{"id": p["id"], "response": p["response"]} for p in predictions])
    result = runner.invoke(app, ["eval", "--benchmark", str(bench), "--responses", str(tmp_path / "responses.jsonl"),
                                 "--out", str(tmp_path / "scored"), "--limit", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "scored" / "results.json").read_text())
    assert [(p["id"], p["correct"]) for p in read_jsonl(tmp_path / "scored" / "predictions.jsonl")] == [
        (p["id"], p["correct"]) for p in predictions
    ]
    assert scored["official"] == generated["official"] and scored["accuracy"] == generated["accuracy"]
