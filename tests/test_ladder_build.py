"""NeuraLadder stages on fixtures with known outcomes (a scripted generator), plus one real tiny-model build."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from observe_r1.data import DataError
from observe_r1.jsonl import read_jsonl, write_jsonl
from observe_r1.ladder.build import build, merge, write_mix
from observe_r1.synth import generate_items, write_dataset

BIN = Path(sys.executable).parent


class ScriptedGenerator:
    """Answers correctly on the first ``round(10 * p)`` of every 10 samples, where p comes from the problem text."""

    def __init__(self):
        self.calls = 0

    def generate(self, records, *, n=1, temperature=0.0, system_prompt=None):
        self.calls += 1
        out = []
        for r in records:
            if n == 1:  # easy filter: answer-only; items asking "easy" are answered right at once
                out.append([(r["answer"] if "easy" in r["problem"] else "999", 3)])
                continue
            solved = int(r["problem"].split("solved=")[1])
            out.append([(f"<observe>o</observe><think>t</think><answer>{r['answer'] if j < solved else 999}"
                         f"</answer>", 10 + j) for j in range(n)])  # fmt: skip
        return out


def _source(tmp_path, rows):
    (tmp_path / "img.png").parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (28, 28), "red").save(tmp_path / "img.png")
    path = tmp_path / "src.jsonl"
    write_jsonl(path, [{"images": ["img.png"], **r} for r in rows])
    return path


def test_stages_on_scripted_outcomes(tmp_path):
    rows = [{"id": "easy", "problem": "easy solved=4", "answer": "3"},
            {"id": "free", "problem": "x solved=4", "answer": "a long free form sentence answer"},
            {"id": "half", "problem": "x solved=2", "answer": "5"},
            {"id": "none", "problem": "x solved=0", "answer": "B"},
            {"id": "all", "problem": "x solved=4", "answer": "7"}]  # fmt: skip
    stats = build([str(_source(tmp_path, rows))], ScriptedGenerator(), tmp_path / "lad", k=4, prune_percentile=0)
    by_stage = {s["stage"].split(" ")[0]: s for s in stats["stages"]}
    assert by_stage["verifiable_filter"]["drops"] == {"free-form text answer (> 3 words)": 1}
    assert by_stage["easy_filter"]["drops"] == {"answered correctly without reasoning": 1}
    ladder = read_jsonl(tmp_path / "lad" / "ladder.jsonl")
    assert [(it["id"], it["difficulty"]) for it in ladder] == [("src/all", 0.0), ("src/half", 0.5), ("src/none", 1.0)]
    assert ladder[1]["complexity"] == pytest.approx(11.5)  # mean of 10, 11, 12, 13 tokens
    assert [it["id"] for it in read_jsonl(tmp_path / "lad" / "review.jsonl")] == ["src/none"]
    train = write_mix(tmp_path / "lad", tmp_path / "elsewhere" / "train.jsonl")
    row = read_jsonl(train)[0]
    assert (train.parent / row["images"][0]).is_file()  # paths relative to the training file
    assert {"problem", "answer", "images", "difficulty", "complexity"} <= set(row)


def test_malformed_sources_name_file_row_and_field(tmp_path):
    rows = [{"problem": "q solved=1", "answer": "1"}, {"problem": "q solved=1", "answer": ""},
            {"problem": "q solved=1", "answer": "a free-form sentence of many words"}]  # fmt: skip
    src = _source(tmp_path, rows)
    stats = build([str(src)], ScriptedGenerator(), tmp_path / "lad0", k=2, prune_percentile=0)
    stage = {s["stage"]: s for s in stats["stages"]}["verifiable_filter"]  # one rule drops and counts both
    assert stage["in"] == 3 and stage["out"] == 1
    assert stage["drops"] == {"empty answer": 1, "free-form text answer (> 3 words)": 1}
    with pytest.raises(
        DataError, match=r"src: row 1 \(id 'src/src-1'\): field 'answer': empty answer \(without --strict"
    ):
        build([str(src)], ScriptedGenerator(), tmp_path / "lad", k=2, strict=True)
    src.write_text(json.dumps({"problem": "q", "answer": "1", "images": ["missing.png"]}) + "\n")
    with pytest.raises(DataError, match=r"row 0: field 'images': image file not found"):
        build([str(src)], ScriptedGenerator(), tmp_path / "lad", k=2)
    src.write_text(json.dumps({"question_text": "q", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"src.jsonl: unknown layout with columns \['answer', 'question_text'\]"):
        build([str(src)], ScriptedGenerator(), tmp_path / "lad", k=2)


def test_shards_merge_to_the_single_run(tmp_path):
    rows = [{"id": str(i), "problem": f"x solved={i % 5}", "answer": str(i)} for i in range(20)]
    src = str(_source(tmp_path, rows))
    build([src], ScriptedGenerator(), tmp_path / "one", k=4, prune_percentile=0)
    for i in range(3):
        build([src], ScriptedGenerator(), tmp_path / f"s{i}", k=4, shard=f"{i}/3", prune_percentile=0)
    merge([tmp_path / f"s{i}" for i in range(3)], tmp_path / "merged")
    assert read_jsonl(tmp_path / "merged" / "ladder.jsonl") == read_jsonl(tmp_path / "one" / "ladder.jsonl")
    with pytest.raises(ValueError, match=r"missing shards \[2\]"):
        merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "bad")
    with pytest.raises(ValueError, match=r"duplicated shards \[1\]"):
        merge([tmp_path / "s0", tmp_path / "s1", tmp_path / "s1", tmp_path / "s2"], tmp_path / "bad2")


def test_rating_resumes_without_rerating(tmp_path):
    rows = [{"id": str(i), "problem": f"x solved={i % 3}", "answer": str(i)} for i in range(70)]
    src = str(_source(tmp_path, rows))
    gen = ScriptedGenerator()
    build([src], gen, tmp_path / "lad", k=3, use_easy_filter=False)
    first = gen.calls
    again = ScriptedGenerator()
    build([src], again, tmp_path / "lad", k=3, use_easy_filter=False)
    assert first == 3 and again.calls == 0  # 70 items in chunks of 32; nothing re-rated


def test_real_qwen3_build_rates_every_item_with_the_easy_filter(tiny_qwen3_dir, tmp_path):
    """``ladder build`` with the tiny Qwen3-VL as the rating model (easy filter on), in process: every item is
    answered once and rated k times from its image, and the ladder holds the rated items in order."""
    from typer.testing import CliRunner

    from observe_r1.cli import app

    data = write_dataset(generate_items(12, seed=4), tmp_path / "data")
    args = ["ladder", "build", "--source", str(data), "--model", str(tiny_qwen3_dir), "--k", "2", "--out",
            str(tmp_path / "lad"), "--max-new-tokens", "8"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rated = read_jsonl(tmp_path / "lad" / "rating.jsonl")
    ladder = read_jsonl(tmp_path / "lad" / "ladder.jsonl")
    assert 0 < len(rated) <= 12 and all(len(r["lengths"]) == 2 for r in rated)
    assert 0 < len(ladder) <= len(rated) and all(0 <= r["difficulty"] <= 1 for r in ladder)
    keys = [(r["difficulty"], r["complexity"]) for r in ladder]
    assert keys == sorted(keys)  # easy -> hard, then short -> long (docs/method.md, NeuraLadder)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_tiny_build_killed_and_resumed_equals_uninterrupted(tiny_model_dir, tmp_path):
    data = write_dataset(generate_items(160, seed=3), tmp_path / "data")
    cmd = lambda out: [str(BIN / "observe-r1"), "ladder", "build", "--source", str(data), "--model",  # noqa: E731
                       str(tiny_model_dir), "--k", "4", "--out", str(out), "--max-new-tokens", "24",
                       "--no-easy-filter"]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(cmd(tmp_path / "straight"), check=True, capture_output=True, env=env, timeout=200)
    proc = subprocess.Popen(cmd(tmp_path / "crashed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)  # fmt: skip
    journal = tmp_path / "crashed" / "rating.jsonl"
    deadline = time.time() + 200
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 32:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    rated_before = len(read_jsonl(journal))
    assert 32 <= rated_before < 160
    subprocess.run(cmd(tmp_path / "crashed"), check=True, capture_output=True, env=env, timeout=200)
    assert read_jsonl(tmp_path / "crashed" / "ladder.jsonl") == read_jsonl(tmp_path / "straight" / "ladder.jsonl")
    stats = json.loads((tmp_path / "crashed" / "stats.json").read_text())
    assert stats["levels"] and sum(level["count"] for level in stats["levels"]) > 0
    assert (tmp_path / "crashed" / "stats.png").is_file()
