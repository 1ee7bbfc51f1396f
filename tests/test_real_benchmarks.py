"""The benchmark files researchers download, as their authors publish them: load → prompt → scoring.

Uses the real slices in ../shared/benchmarks (skipped with a message when absent).
"""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.data import DataError, load_grpo_dataset, load_items, read_rows
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.ladder.stages import ingest
from observe_r1.rewards import score_completions
from tests.helpers import benchmark_file

FILES = {
    "mathvision": "mathvision/data/test.jsonl",
    "mathvista": "mathvista/data/testmini.json",
    "logicvista": "logicvista/data/dataset.json",
    "wemath": "wemath/data/testmini.json",
}


def _load(name, **kwargs):
    kwargs.setdefault("images", "ignore" if name == "mathvista" else "check")  # MathVista ships images apart
    return load_items(benchmark_file(FILES[name]), **kwargs)


def _score(items, answers):
    return score_completions([f"<answer>{a}</answer>" for a in answers], [it["answer"] for it in items],
                             choices=[it["choices"] for it in items],
                             precisions=[it["precision"] for it in items], workers=1)  # fmt: skip


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_row_loads_with_a_clean_prompt(name):
    items, report = _load(name)
    raw = read_rows(benchmark_file(FILES[name]))
    assert report.layout == name and report.kept == len(raw) and not report.skipped
    assert len({it["id"] for it in items}) == len(items)
    for item in items:
        assert "<image" not in item["problem"].lower(), item["problem"]
        assert len(item["images"]) == 1
        if item["choices"] and not all(c == "ABCDEFGHIJ"[i] for i, c in enumerate(item["choices"])):
            for i, choice in enumerate(item["choices"]):  # every option text reaches the model
                assert f"({'ABCDEFGHIJ'[i]}) {choice.strip()}" in item["problem"]


def test_mathvision_layout():
    items, _ = _load("mathvision")
    by_id = {it["id"]: it for it in items}
    assert by_id["1"]["images"][0].endswith("mathvision/images/1.jpg")  # relative to the repository root
    assert by_id["1"]["choices"] == [] and by_id["1"]["answer"] == "60"
    assert "options A, B, C, D, E are shown in the image" in by_id["2"]["problem"]  # letter-only options
    assert by_id["15"]["choices"][0] == "Wednesday" and by_id["15"]["answer"] == "A"
    assert by_id["1"]["category"] == "arithmetic"
    picked = [by_id[i] for i in ("15", "15", "15", "15", "2", "2", "1", "1")]
    assert _score(picked, ["A", "(A) Wednesday", "Wednesday", "Thursday", "A", "B", "60", "60.0"]) == [
        1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]  # fmt: skip
    assert _score([by_id["19"]], ["$2 \\cdot 4 \\cdot 3$"]) == [1.0]  # LaTeX option text, answer D


def test_mathvista_layout_object_keyed_by_pid():
    items, _ = _load("mathvista")
    by_id = {it["id"]: it for it in items}
    assert list(by_id)[:3] == ["1", "2", "3"]
    assert by_id["8"]["choices"] == ["Yes", "No"] and by_id["8"]["answer"] == "A"
    assert by_id["3"]["answer"] == "C" and "(C) 145°" in by_id["3"]["problem"]
    assert by_id["1"]["precision"] == 1 and "1 decimal place" in by_id["1"]["problem"]
    assert by_id["2"]["unit"] == "g" and "unit: g" in by_id["2"]["problem"]
    assert by_id["1"]["category"] == "math-targeted-vqa"
    cases = [("8", "Yes", 1), ("8", "yes", 1), ("8", "No", 0), ("8", "(A)", 1), ("8", "B", 0),
             ("9", "8", 1), ("9", "D", 1), ("9", "15", 0), ("17", "5", 1), ("10", "E", 1),
             ("1", "1.23", 1), ("1", "1.2", 1), ("1", "1.3", 0), ("4", "4.0", 1), ("4", "5", 0),
             ("15", "Common water flea", 1), ("15", "Tadpole", 0), ("39", "odd", 1)]  # fmt: skip
    verdicts = _score([by_id[i] for i, _, _ in cases], [a for _, a, _ in cases])
    assert verdicts == [float(v) for _, _, v in cases]


def test_logicvista_letter_sets_and_skills():
    items, _ = _load("logicvista")
    by_id = {it["id"]: it for it in items}
    assert by_id["v1_1"]["answer"] == "A, C" and by_id["v1_0"]["answer"] == "C"
    assert by_id["v1_20"]["answer"] == "3"  # an option number, kept
    assert by_id["v1_0"]["category"] == "inductive"
    assert by_id["v1_0"]["images"][0].endswith("logicvista/data/images/v1_0.png")
    picked = [by_id[i] for i in ("v1_1", "v1_1", "v1_1", "v1_1", "v1_4", "v1_4", "v1_20")]
    assert _score(picked, ["A, C", "C and A", "A", "A, B, C", "G", "I think it is G", "3"]) == [
        1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # fmt: skip


def test_wemath_options_split_whatever_the_separator():
    items, _ = _load("wemath")
    assert all(len(it["choices"]) >= 4 and it["choices"][-1] == "No correct answer" for it in items)
    by_id = {it["id"]: it for it in items}  # the row id is We-Math's unique "question number"
    assert by_id["59"]["choices"][:2] == ["①", "②"]  # "B．②" with a full-width stop
    assert by_id["59"]["meta"] == {"ID": "2steps_59", "key": "2steps_1"}
    first = by_id["1"]
    assert first["choices"][2] == "3000, 4000" and first["answer"] == "C" and first["category"] == "2steps"
    assert first["images"][0].endswith("wemath/data/2steps/image/1-1.png")
    assert _score([first] * 3, ["C", "3000, 4000", "300, 400"]) == [1.0, 1.0, 0.0]


def test_missing_images_name_the_places_tried_and_image_root_finds_them(tmp_path):
    source = benchmark_file(FILES["mathvision"])
    moved = tmp_path / "elsewhere" / "test.jsonl"
    moved.parent.mkdir()
    shutil.copy(source, moved)
    with pytest.raises(DataError, match=r"test.jsonl: row 0: field 'image': image file not found: images/1.jpg "
                                        r"\(looked in .*elsewhere/images/1.jpg.*--image-root"):  # fmt: skip
        load_items(moved)
    items, _ = load_items(moved, image_root=source.parents[1])
    assert items[0]["images"][0].endswith("mathvision/images/1.jpg")
    with pytest.raises(DataError, match=r"no usable rows .*skipped 40 \(40 × image: image file not found"):
        load_items(moved, skip_bad_rows=True)


def test_not_utf8_names_the_file_and_offset(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"problem": "Winkel \u00b0?", "answer": "1"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.jsonl: not UTF-8 text: byte 0xb0 at offset \d+ \(line 1\)"):
        load_items(path)


def test_hub_style_parquet_and_datasets_dir_keep_images_as_bytes(tmp_path):
    from datasets import Dataset, Image

    rows = [json.loads(line) for line in benchmark_file(FILES["mathvision"]).read_text().splitlines()[:6]]
    root = benchmark_file("mathvision/images")
    for row in rows:
        row["decoded_image"] = {"bytes": (root / f"{row['id']}.jpg").read_bytes(), "path": None}
        row.pop("image")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    items, _ = load_items(tmp_path / "test.parquet")
    assert isinstance(items[0]["images"][0], bytes) and items[1]["answer"] == "A"
    Dataset.from_list(rows).cast_column("decoded_image", Image()).save_to_disk(str(tmp_path / "hub"))
    items, _ = load_items(tmp_path / "hub")
    assert isinstance(items[0]["images"][0], bytes) and "(A) Wednesday" not in items[0]["problem"]
    dataset, _ = load_grpo_dataset(tmp_path / "hub")
    assert dataset[0]["images"][0].size == (1176, 178)  # decoded on access


def test_training_dataset_holds_paths_not_pixels():
    dataset, _ = load_grpo_dataset(benchmark_file(FILES["mathvision"]))
    stored = dataset.data.column("images").to_pylist()[0][0]
    assert stored["bytes"] is None and stored["path"].endswith("images/1.jpg")
    assert dataset[1]["choices"] == ["A", "B", "C", "D", "E"] and dataset[1]["answer"] == "A"
    assert dataset[0]["images"][0].size == (1176, 178)


def test_ladder_ingest_keeps_options_and_drops_placeholders(tmp_path):
    items, drops = ingest([benchmark_file(FILES["mathvision"])], tmp_path)
    assert len(items) == 40 and not drops
    item = next(it for it in items if it["id"] == "test/15")
    assert item["choices"][0] == "Wednesday" and "(A) Wednesday" in item["problem"]
    assert all("<image" not in it["problem"] for it in items)
    assert (tmp_path / item["images"][0]).stat().st_size > 0


def test_eval_scores_saved_responses_without_a_model_or_images(tmp_path):
    responses = tmp_path / "responses.jsonl"
    lines = [{"id": "8", "response": "<observe>o</observe> <think>t</think> <answer>Yes</answer>"},
             {"id": "8", "response": "<answer>B</answer>"},
             {"id": "3", "response": "The angle is 145°, so \\boxed{C}"},
             {"id": "1", "response": "<answer>1.24</answer>"},
             {"id": "2", "response": "<answer>900</answer>"}]  # fmt: skip
    write_jsonl(responses, lines)
    bench = benchmark_file(FILES["mathvista"])  # its images are not here: none may be opened
    result = CliRunner().invoke(app, ["eval", "--benchmark", str(bench), "--responses", str(responses),
                                      "--out", str(tmp_path / "ev")])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "ev/results.json").read_text())
    assert results["n_items"] == 4 and results["n_samples"] == 5 and results["n_missing"] == 36
    assert results["accuracy"] == pytest.approx(3 / 5)
    rows = [json.loads(line) for line in (tmp_path / "ev/predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["sample"], r["correct"]) for r in rows] == [
        ("1", 0, True), ("2", 0, False), ("3", 0, True), ("8", 0, True), ("8", 1, False)]  # fmt: skip
    assert rows[-2]["format"] == 1.0


def test_eval_refuses_responses_for_another_benchmark(tmp_path):
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"id": "no-such-id", "response": "A"}) + "\n")
    with pytest.raises(DataError, match="1 ids are not in"):
        from observe_r1.eval import score_responses

        score_responses(benchmark_file(FILES["mathvista"]), responses, tmp_path / "ev")


def test_question_only_in_the_image_gets_a_prompt():
    from observe_r1.layouts import IMAGE_ONLY_QUESTION, parse_row

    row = {
        "id": "528",
        "question": "<image1>",
        "options": [],
        "answer": "15",
        "solution": None,
        "level": 3,
        "subject": "arithmetic",
        "image": "images/528.jpg",
    }  # MATH-V test row 528, as published
    assert parse_row(row, "mathvision")["problem"] == IMAGE_ONLY_QUESTION


def test_ladder_ingest_reads_object_keyed_json_with_letter_sets(tmp_path):
    items, _ = ingest([benchmark_file(FILES["logicvista"])], tmp_path)
    by_id = {it["id"]: it for it in items}
    assert by_id["dataset/v1_1"]["answer"] == "A, C" and by_id["dataset/v1_1"]["category"] == "inductive"
    assert (tmp_path / by_id["dataset/v1_1"]["images"][0]).suffix == ".png"


def test_tiny_model_eval_on_published_files(tiny_model_dir, tmp_path):
    for name in ("mathvision", "wemath"):
        result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmark",
                                          str(benchmark_file(FILES[name])), "--out", str(tmp_path / name),
                                          "--limit", "4", "--max-new-tokens", "4", "--batch-size", "2"])  # fmt: skip
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and all(isinstance(r["correct"], bool) for r in rows)


def test_ladder_build_and_mix_on_a_published_file(tiny_model_dir, tmp_path):
    out = tmp_path / "ladder"
    source = str(benchmark_file(FILES["wemath"]))
    result = CliRunner().invoke(app, ["ladder", "build", "--source", source, "--model", str(tiny_model_dir),
                                      "--out", str(out), "--k", "2", "--max-new-tokens", "4", "--no-easy-filter",
                                      "--prune-percentile", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ladder = read_jsonl(out / "ladder.jsonl")
    assert len(ladder) == 30 and all(len(item["choices"]) >= 4 and item["answer"] in "ABCDE" for item in ladder)
    assert all("(A) " in item["problem"] for item in ladder)
    result = CliRunner().invoke(app, ["ladder", "mix", str(out), "--out", str(tmp_path / "train.jsonl")])
    assert result.exit_code == 0, result.output
    dataset, _ = load_grpo_dataset(tmp_path / "train.jsonl")  # the training table keeps the options for scoring
    assert len(dataset) == 30 and all(len(choices) >= 4 for choices in dataset["choices"])
