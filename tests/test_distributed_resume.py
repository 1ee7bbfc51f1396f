"""Multi-process and crash-recovery behaviour of `observe-r1 train`, run as real subprocesses."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from observe_r1.checkpoints import COMPLETE_MARKER, incomplete_reason
from observe_r1.synth import generate_items, write_dataset
from tests.helpers import run_two_processes, run_until_killed

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_groups_split_across_two_processes_get_whole_group_advantages(tiny_model_dir, tmp_path):
    results = run_two_processes("group_split.py", tiny_model_dir, tmp_path / "out.json", ranks_dir=tmp_path)
    ranks = [r["checks"] for r in results]
    # reward statistics are summed over processes: rank 0 counts 1 timeout per step, rank 1 counts 2
    assert [r["timeouts_local"] for r in results] == [3, 6]
    assert results[0]["timeouts_logged"] == results[1]["timeouts_logged"] == [3.0, 6.0, 9.0]
    for step0, step1 in zip(*ranks, strict=True):
        assert step0["world"] == 2 and step0["local"] == 6
        # the middle group of each step (4 completions) is split 2/2 across the processes
        assert step0["ids"][-1] == step1["ids"][0]
        assert step0["max_abs_diff"] == 0.0 and step1["max_abs_diff"] == 0.0
    assert any(step["nonzero"] > 0 for step in ranks[0])


def _train_cmd(model_dir, data, out, *extra):
    return [str(BIN / "observe-r1"), "train", "--config", str(ROOT / "recipes/tiny_cpu.yaml"),
            "--model_name_or_path", str(model_dir), "--dataset_path", str(data), "--output_dir", str(out),
            "--max_steps", "12", "--save_steps", "2", "--max_completion_length", "24", "--report_to", "none",
            *extra]  # fmt: skip


def _consumed(out):
    return [json.loads(line) for line in (out / "consumed.jsonl").read_text().splitlines()]


DYNAMIC = ["--dynamic-sampling", "true", "--max-generation-rounds", "2"]
PACED = ["--curriculum", "paced", "--pace-window", "1", "--pace-threshold", "0"]  # skips after every round


def _final_weights(out):
    from safetensors.torch import load_file

    return load_file(out / "final" / "model.safetensors")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "extra, torn",
    [([], False), ([], True), (DYNAMIC, False), ([*DYNAMIC, *PACED], False)],
    ids=["plain", "torn_save", "dynamic_sampling", "paced"],
)
@pytest.mark.slow
def test_resume_after_kill_neither_skips_nor_repeats_prompts(tiny_model_dir, tmp_path, extra, torn):
    paced = "paced" in extra
    items = generate_items(48, seed=5)
    for i, item in enumerate(items):
        # ladder levels of 5 prompts (2 a step): a paced run skips 3 of each; every level is mastered by the end of
        # an epoch (step 5-10), so the next epoch re-checks them all, with the memory cleared
        item["stretch_level"] = i // 5
    data = write_dataset(items, tmp_path / "data")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}  # two runs share the cores
    straight = tmp_path / "straight"  # the uninterrupted run, beside the one that is killed (2 cores: less wall time)
    uninterrupted = subprocess.Popen(_train_cmd(tiny_model_dir, data, straight, *extra), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)  # fmt: skip

    crashed = tmp_path / "crashed"
    # torn: killed the moment checkpoint-4/ appears, in the middle of its save; else once step 6 has been logged
    code = run_until_killed(_train_cmd(tiny_model_dir, data, crashed, *extra), crashed, checkpoint="checkpoint-4",
                            consumed_lines=0 if torn else 6, env=env, poll=0.001 if torn else 0.01)  # fmt: skip
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (crashed / "final").exists()
    interrupted_at = len(_consumed(crashed))
    assert interrupted_at < 12
    if torn and incomplete_reason(crashed / "checkpoint-4") is None:
        # on a busy machine the save can finish before the poll sees the folder: leave what a kill inside it leaves
        (crashed / "checkpoint-4" / COMPLETE_MARKER).unlink()
        (crashed / "checkpoint-4" / "optimizer.pt").unlink()
    if torn:
        assert incomplete_reason(crashed / "checkpoint-4") is not None

    resumed = subprocess.run(_train_cmd(tiny_model_dir, data, crashed, *extra, "--resume", "true"), check=True,
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    _, errors = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, errors[-3000:]
    if torn:
        assert "skipping checkpoint-4 (no observe_r1_complete.json" in resumed.stdout
        assert "resuming from checkpoint-2" in resumed.stdout
    assert _consumed(crashed) == _consumed(straight)
    final, expected = _final_weights(crashed), _final_weights(straight)
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)
    if extra:  # the resumed run continued the prompt cursor, dropped groups included
        assert all("dropped" in row for row in _consumed(crashed))
        assert (crashed / "checkpoint-4" / "dynamic_sampling.json").is_file()
        assert (crashed / "plots" / "sampling.png").is_file()
    metrics = [json.loads(line) for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    if paced:  # the skips, window and memory, continued as if never interrupted
        skipped = [row["skipped"] for row in _consumed(crashed)]
        assert sum(map(len, skipped[interrupted_at:])) > 0 and sum(map(len, skipped[:interrupted_at])) > 0
        rechecks = [row["pace_rechecks"] for row in metrics]
        assert rechecks[-1] > rechecks[interrupted_at - 1]  # the memory was cleared after the restart
        assert (crashed / "plots" / "pace.png").is_file() and (crashed / "plots" / "pace_skipped.png").is_file()
    assert [row["step"] for row in _consumed(crashed)] == list(range(12))
    assert [row["step"] for row in metrics] == list(range(1, 13))
    assert (crashed / "plots" / "rewards.png").is_file()


@pytest.mark.slow
def test_dynamic_sampling_with_groups_split_across_two_processes(tiny_model_dir, tmp_path):
    ranks = run_two_processes("dynamic_sampling.py", tiny_model_dir, tmp_path, ranks_dir=tmp_path)
    consumed = _consumed(tmp_path / "run")
    ids = [f"synth-0-{i}" for i in range(24)]
    # rows 0, 3, 6, 9 are constant. Step 0: round 1 = rows 0-2 (2 informative), round 2 = the missing group over
    # the informative rate, 1 / (2/3) -> 2 prompts = rows 3-4. Step 1: rows 5-7, then 8-9.
    assert [row["ids"] for row in consumed] == [[ids[1], ids[2], ids[4]], [ids[5], ids[7], ids[8]]]
    assert [row["dropped"] for row in consumed] == [[ids[0], ids[3]], [ids[6], ids[9]]]
    assert [row["surplus"] for row in consumed] == [[], []]
    images = ranks[0]["image_sums"]
    for step, row in enumerate(consumed):
        # the loss's rows across both processes: 3 groups of 4 in trained order, the middle group split 2/2
        advantages = ranks[0]["steps"][step]["advantages"] + ranks[1]["steps"][step]["advantages"]
        pixels = ranks[0]["steps"][step]["pixel_sums"] + ranks[1]["steps"][step]["pixel_sums"]
        for j, prompt_id in enumerate(row["ids"]):
            # the scripted reward pays the first completion of a group on each process: the middle prompt of a
            # 3-prompt round was generated split 2/2 across the processes, so row 1 was paid at completions 0 and 2
            paid = {0, 2} if prompt_id == ids[1] else {0}
            group = advantages[4 * j : 4 * j + 4]
            assert {m for m in range(4) if group[m] > 0} == paid and all(group[m] < 0 for m in set(range(4)) - paid)
            assert pixels[4 * j : 4 * j + 4] == [images[prompt_id]] * 4


@pytest.mark.slow
def test_paced_curriculum_decides_the_same_on_two_processes(tiny_model_dir, tmp_path):
    ranks = run_two_processes("dynamic_sampling.py", tiny_model_dir, tmp_path, "paced", ranks_dir=tmp_path)
    consumed = _consumed(tmp_path / "run")
    ids = [f"synth-0-{i}" for i in range(24)]
    # step 0: round 1 = rows 0-2, solved (dropped; level 0's window is 1.0 -> rows 3-5 skipped), round 2 = rows
    # 6-8 (level 0.5, window 0.33: no skip); steps 1-5: rows 9-23. Step 6 starts epoch 1 without level 0 (mastered)
    assert [row["ids"] for row in consumed] == [ids[i : i + 3] for i in (6, 9, 12, 15, 18, 21, 6, 9)]
    assert [row["dropped"] for row in consumed] == [ids[0:3]] + [[]] * 7
    assert [row["skipped"] for row in consumed] == [ids[3:6], [], [], [], [], [], ids[0:6], []]
    assert ranks[0]["cursor"] == ranks[1]["cursor"]  # both processes made the same decisions from gathered groups
    cursor = ranks[0]["cursor"]
    assert (cursor["skipped_total"], cursor["epoch"], cursor["position"]) == (9, 1, 6)
    assert cursor["mastered"] == cursor["left_out"] == [0.0]
    images = ranks[0]["image_sums"]
    for step, row in enumerate(consumed):  # the loss's rows across both processes: the trained prompts, with signal
        advantages = ranks[0]["steps"][step]["advantages"] + ranks[1]["steps"][step]["advantages"]
        pixels = ranks[0]["steps"][step]["pixel_sums"] + ranks[1]["steps"][step]["pixel_sums"]
        for j, prompt_id in enumerate(row["ids"]):
            assert any(a != 0 for a in advantages[4 * j : 4 * j + 4])
            assert pixels[4 * j : 4 * j + 4] == [images[prompt_id]] * 4
