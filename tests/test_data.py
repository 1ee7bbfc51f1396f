import json

import pytest
from PIL import Image

from observe_r1.data import DataError, load_grpo_dataset, load_items, open_image
from observe_r1.jsonl import write_jsonl


def _write(tmp_path, rows, name="d.jsonl"):
    Image.new("RGB", (56, 56), "red").save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    path = tmp_path / name
    write_jsonl(path, rows)
    return path


GOOD = {"problem": "How many?", "answer": "2", "images": ["ok.png"]}


@pytest.mark.parametrize(
    "bad, field, reason",
    [
        ({"problem": "q", "answer": "2", "images": ["missing.png"]}, "images", "image file not found"),
        ({"problem": "q", "answer": "2", "images": ["broken.png"]}, "images", "unreadable image"),
        ({"problem": "q", "answer": "", "images": ["ok.png"]}, "answer", "empty answer"),
        ({"problem": "q", "answer": "\\frac{1}{2", "images": ["ok.png"]}, "answer", "answer .* can't be parsed"),
        ({"problem": " ", "answer": "2", "images": ["ok.png"]}, "problem", "empty or missing problem"),
    ],
)
def test_bad_rows_fail_fast_naming_file_row_field(tmp_path, bad, field, reason):
    path = _write(tmp_path, [GOOD, bad])
    with pytest.raises(DataError, match=rf"d.jsonl: row 1: field '{field}': {reason}"):
        load_items(path)
    records, report = load_items(path, skip_bad_rows=True)
    assert len(records) == 1 and sum(report.skipped.values()) == 1


def test_reference_message_format_and_order(tmp_path):
    message = json.dumps([{"role": "user", "content": [{"type": "image", "image": "ok.png"},
                                                        {"type": "text", "text": "What is 1+1?"}]}])  # fmt: skip
    path = _write(tmp_path, [{"message": message, "answer": "2"}, {**GOOD, "id": "x9", "difficulty": 0.5}])
    dataset, report = load_grpo_dataset(path)
    assert dataset["id"] == ["d-0", "x9"] and dataset["row"] == [0, 1]
    assert dataset[0]["prompt"][-1]["content"][-1]["text"] == "What is 1+1?"
    assert dataset["difficulty"] == [-1.0, 0.5]
    assert report.kept == 2


def test_parquet_with_image_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _write(tmp_path, [])
    row = {"problem": "q", "answer": "B", "images": [{"bytes": (tmp_path / "ok.png").read_bytes(), "path": None}]}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "d.parquet")
    records, _ = load_items(tmp_path / "d.parquet")
    assert open_image(records[0]["images"][0]).size == (56, 56)


def test_decompression_bomb_is_refused(tmp_path):
    Image.new("L", (9000, 9000)).save(tmp_path / "big.png")
    path = _write(tmp_path, [{"problem": "q", "answer": "1", "images": ["big.png"]}])
    with pytest.raises(DataError, match="field 'images': unreadable image"):
        load_items(path)


def test_loading_checks_latex_golds_without_starting_worker_processes(tmp_path):
    from observe_r1 import mathpool

    mathpool._MATH_POOL._reset()
    rows = [{"problem": "q", "answer": "\\frac{1}{2}", "images": ["ok.png"]},
            {"problem": "q", "answer": "x^2+1", "images": ["ok.png"]}]  # fmt: skip
    records, _ = load_items(_write(tmp_path, rows))
    assert len(records) == 2 and mathpool._MATH_POOL._pool is None
    with pytest.raises(DataError, match="can't be parsed"):
        load_items(_write(tmp_path, [{"problem": "q", "answer": "\\frac{1}{2", "images": ["ok.png"]}]))
    assert mathpool._MATH_POOL._pool is None
