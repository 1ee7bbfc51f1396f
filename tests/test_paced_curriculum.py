"""``curriculum: paced``: the ladder order, with the rest of a level skipped once the policy's window pass rate on it
reaches the threshold (the cursor on its own, then on the tiny model with and without dynamic sampling)."""

import json
import random

import pytest
import torch

from observe_r1.config import ObserveR1Config
from observe_r1.dynamic import PacedCursor
from observe_r1.jsonl import read_jsonl
from observe_r1.models import load_policy
from observe_r1.train import build_trainer
from tests.helpers import ScriptedGroups, assert_rows_carry_their_images, synth_dataset, tiny_config, train_spied

LEVELS = [0.0] * 6 + [0.5] * 6 + [1.0] * 4  # three ladder levels of 16 prompts


def test_a_mastered_level_is_skipped_from_the_cursor_to_its_end():
    cursor = PacedCursor([0] * 4 + [1] * 4 + [2] * 4, threshold=0.75, window=2, seed=0)
    assert cursor.take(1, new_epoch=True) == [0]
    assert cursor.record([0], [1.0]) == []  # the window is not full
    assert cursor.take(1, new_epoch=False) == [1]
    assert cursor.record([1], [0.5]) == [2, 3]  # full, mean 0.75: the rest of level 0 is skipped
    assert cursor.position == 4 and cursor.skipped_total == 2
    assert cursor.take(2, new_epoch=False) == [4, 5]
    assert cursor.record([4, 5], [0.5, 0.75]) == []  # mean 0.625 < 0.75
    assert cursor.take(1, new_epoch=False) == [6]
    assert cursor.record([6], [1.0]) == [7]  # the window slid to (0.75, 1.0)
    assert cursor.metrics() == {"pace_skipped_total": 3.0, "pace_window_pass_rate": 0.875, "pace_level": 2.0}


def test_the_window_holds_one_level_and_a_level_boundary_is_not_skipped():
    cursor = PacedCursor([0] * 2 + [1] * 4, threshold=0.5, window=2, seed=0)
    assert cursor.take(2, new_epoch=True) == [0, 1]
    assert cursor.record([0, 1], [1.0, 1.0]) == []  # mastered, but the cursor already stands at level 1
    assert cursor.take(1, new_epoch=False) == [2]
    assert cursor.record([2], [1.0]) == []  # a level-1 group empties the window: one group is not a full window
    assert cursor.pass_rates == [1.0] and cursor.window_level == 1


def test_a_skip_to_the_end_of_the_epoch_starts_the_next_epoch_at_the_first_level():
    cursor = PacedCursor([0, 0, 1, 1, 1, 1], threshold=0.0, window=1, seed=0, max_epochs=2)
    assert cursor.take(2, new_epoch=True) == [0, 1]
    assert cursor.take(1, new_epoch=False) == [2]
    assert cursor.record([2], [0.0]) == [3, 4, 5]  # threshold 0: every full window skips the rest of its level
    assert cursor.take(1, new_epoch=False) is None  # a refill round does not cross the epoch
    assert cursor.take(2, new_epoch=True) == [0, 1] and cursor.epoch == 1
    assert cursor.record([0, 1], [0.0, 0.0]) == []  # level 0 again: a new window, and the cursor is at level 1


def test_a_saved_pace_continues_with_the_same_decisions():
    levels = [lv for lv in range(6) for _ in range(7)]
    rng = random.Random(0)
    rates = [rng.choice([0.0, 0.25, 0.75, 1.0]) for _ in range(200)]

    def run(cursor, rounds, start=0):
        events = []
        for r in range(start, start + rounds):
            taken = cursor.take(3, new_epoch=True)
            events.append((taken, cursor.record(taken, rates[3 * r : 3 * r + 3])))
        return events

    straight = PacedCursor(levels, threshold=0.6, window=3, seed=0)
    expected = run(straight, 40)
    assert sum(len(skipped) for _, skipped in expected) > 0
    first = PacedCursor(levels, threshold=0.6, window=3, seed=0)
    events = run(first, 17)
    resumed = PacedCursor(levels, threshold=0.6, window=3, seed=0)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as dynamic_sampling.json holds it
    assert events + run(resumed, 23, start=17) == expected
    assert resumed.state_dict() == straight.state_dict()


def test_config_checks_the_pace(tmp_path):
    def config(**kw):
        return ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], **kw)

    assert config(curriculum="paced").shuffle_dataset is False
    with pytest.raises(ValueError, match="'ordered', 'shuffled' or 'paced'"):
        config(curriculum="fast")
    with pytest.raises(ValueError, match="pace_window must be >= 1"):
        config(curriculum="paced", pace_window=0)


def test_paced_needs_ladder_levels(tiny_model_dir, tmp_path):
    model, processor = load_policy(tiny_model_dir)
    _, dataset = synth_dataset(tmp_path, n=4)  # no stretch_level, no difficulty
    with pytest.raises(ValueError, match=r"needs each row's ladder level .* rows \[0, 1, 2, 3\] have none"):
        build_trainer(model, processor, dataset, tiny_config(tmp_path / "out", curriculum="paced"))


def _paced_run(tiny_model_dir, tmp_path, **overrides):
    reward = ScriptedGroups(solved_rows={0, 1})  # the policy already solves the first two prompts of level 0
    _, outputs, dataset, processor, moved = train_spied(tiny_model_dir, tmp_path, reward, levels=LEVELS,
                                                        curriculum="paced", pace_window=2, pace_threshold=0.75,
                                                        **overrides)  # fmt: skip
    consumed = read_jsonl(tmp_path / "out" / "consumed.jsonl")
    metrics = read_jsonl(tmp_path / "out" / "metrics.jsonl")
    return dataset, processor, outputs, consumed, metrics, moved


def test_paced_without_dynamic_sampling_trains_every_group_it_generates(tiny_model_dir, tmp_path):
    dataset, _, outputs, consumed, metrics, moved = _paced_run(tiny_model_dir, tmp_path)
    ids = dataset["id"]
    # 2 prompts a step. Step 0: rows 0, 1 are solved (window 1.0, 1.0): rows 2-5, the rest of level 0, are skipped
    assert [row["ids"] for row in consumed] == [ids[0:2], ids[6:8], ids[8:10]]
    assert [row["skipped"] for row in consumed] == [ids[2:6], [], []]
    assert [row["dropped"] for row in consumed] == [[], [], []]
    assert torch.equal(outputs[0]["advantages"], torch.zeros_like(outputs[0]["advantages"]))  # trained, no signal
    assert [m["pace_skipped_total"] for m in metrics] == [4.0, 4.0, 4.0]
    assert [m["pace_window_pass_rate"] for m in metrics] == [1.0, 0.25, 0.25]  # level 0.5: one of 4 right
    assert [m["pace_level"] for m in metrics] == [0.5, 0.5, 0.5]
    assert moved


def test_paced_with_dynamic_sampling_skips_between_refill_rounds(tiny_model_dir, tmp_path):
    dataset, processor, outputs, consumed, metrics, moved = _paced_run(
        tiny_model_dir, tmp_path, dynamic_sampling=True, max_generation_rounds=4
    )
    ids = dataset["id"]
    # step 0: round 1 = rows 0, 1 (solved: dropped, and level 0 mastered -> rows 2-5 skipped), round 2 = rows 6, 7
    assert [row["ids"] for row in consumed] == [ids[6:8], ids[8:10], ids[10:12]]
    assert [row["dropped"] for row in consumed] == [ids[0:2], [], []]
    assert [row["skipped"] for row in consumed] == [ids[2:6], [], []]
    assert [m["generation_rounds"] for m in metrics] == [2, 1, 1]
    assert moved
    for step, output in enumerate(outputs):  # what the loss got: the trained prompts' images, with signal
        assert (output["advantages"].view(-1, 4) != 0).any(dim=1).all()
        assert_rows_carry_their_images(output, consumed[step]["ids"], dataset, processor)
