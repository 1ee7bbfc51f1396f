"""``curriculum: paced``: the ladder order, with the rest of a level skipped once the policy's window pass rate on it
reaches the threshold, and mastered levels left out of later epochs (the cursor on its own, then on the tiny model
with and without dynamic sampling)."""

import json
import random

import pytest
import torch

from observe_r1.config import ObserveR1Config
from observe_r1.jsonl import read_jsonl
from observe_r1.models import load_policy
from observe_r1.pace import PacedCursor
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
    assert cursor.metrics() == {"pace_skipped_total": 3.0, "pace_window_pass_rate": 0.875, "pace_level": 2.0,
                                "pace_mastered_levels": 2.0, "pace_rechecks": 0.0}  # fmt: skip


def test_the_window_holds_one_level_and_a_level_boundary_is_not_skipped():
    cursor = PacedCursor([0] * 2 + [1] * 4, threshold=0.5, window=2, seed=0)
    assert cursor.take(2, new_epoch=True) == [0, 1]
    assert cursor.record([0, 1], [1.0, 1.0]) == []  # mastered, but the cursor already stands at level 1
    assert cursor.take(1, new_epoch=False) == [2]
    assert cursor.record([2], [1.0]) == []  # a level-1 group empties the window: one group is not a full window
    assert cursor.pass_rates == [1.0] and cursor.window_level == 1


def test_a_skip_to_the_end_of_the_epoch_starts_the_next_epoch_without_the_mastered_levels():
    cursor = PacedCursor([0, 0, 1, 1, 1, 1], threshold=0.0, window=1, seed=0, max_epochs=2)
    assert cursor.take(2, new_epoch=True) == [0, 1]
    assert cursor.take(1, new_epoch=False) == [2]
    assert cursor.record([2], [0.0]) == [3, 4, 5]  # threshold 0: every full window skips the rest of its level
    assert cursor.take(1, new_epoch=False) is None  # a refill round does not cross the epoch
    assert cursor.mastered == {1}  # level 0 was never recorded: not mastered
    assert cursor.take(2, new_epoch=True) == [0, 1] and cursor.epoch == 1
    assert cursor.pop_skipped() == [3, 4, 5, 2, 3, 4, 5]  # this epoch's skips, then level 1 left out as a whole
    assert cursor.take(1, new_epoch=False) is None  # epoch 1 is [0, 1] only


def test_mastered_levels_stay_out_until_a_full_window_says_otherwise():
    levels = [0] * 4 + [1] * 4 + [2] * 4
    cursor = PacedCursor(levels, threshold=0.8, window=2, seed=0, ids=[f"p{i}" for i in range(12)])
    rounds = [([1.0, 1.0], [2, 3]), ([0.0, 0.5], []), ([1.0, 0.5], []), ([1.0, 1.0], [10, 11])]
    for start, (rates, skipped) in zip([0, 4, 6, 8], rounds, strict=True):
        assert cursor.take(2, new_epoch=start == 0) == [start, start + 1]
        assert cursor.record([start, start + 1], rates) == skipped
    assert cursor.mastered == {0, 2}  # level 1's windows: 0.25, 0.75, 0.75
    assert cursor.take(2, new_epoch=True) == [4, 5] and cursor.left_out == [0, 2]
    assert cursor.pop_skipped() == ["p2", "p3", "p10", "p11", *[f"p{i}" for i in (0, 1, 2, 3, 8, 9, 10, 11)]]
    assert cursor.record([4, 5], [1.0, 1.0]) == [6, 7]  # level 1 mastered now; the epoch has nothing left
    assert not cursor.can_take(2, new_epoch=False) and cursor.mastered == {0, 1, 2}
    # every level mastered: fewer than a round would be left, so the next epoch forgets and re-checks them all;
    # each level starts where its last visit stopped (level 0's rows 2, 3 were skipped: they come first)
    assert cursor.take(2, new_epoch=True) == [2, 3] and cursor.rechecks == 1 and cursor.left_out == []
    assert cursor.record([2, 3], [0.5, 0.5]) == []  # level 0 fell below the threshold: it stays in
    assert cursor.take(2, new_epoch=False) == [0, 1] and cursor.record([0, 1], [1.0, 0.5]) == []
    cursor.pop_skipped()
    assert cursor.take(2, new_epoch=False) == [6, 7] and cursor.record([6, 7], [1.0, 1.0]) == [4, 5]
    assert cursor.mastered == {1} and cursor.metrics()["pace_mastered_levels"] == 1.0
    for start in (10, 8):
        assert cursor.take(2, new_epoch=False) == [start, start + 1]
        assert cursor.record([start, start + 1], [0.0, 1.0]) == []
    assert cursor.take(2, new_epoch=True) == [2, 3] and cursor.left_out == [1]  # level 0 is trained again
    assert cursor.pop_skipped() == ["p4", "p5", "p4", "p5", "p6", "p7"]  # the rest of level 1, then all of it


def test_a_level_smaller_than_the_window_is_judged_on_all_its_groups():
    # the demo's first ladder levels hold 2 and 7 prompts under a 16-group window: they must be decidable too
    cursor = PacedCursor([0] * 2 + [1] * 6 + [2] * 6, threshold=0.75, window=4, seed=0)
    assert cursor.take(2, new_epoch=True) == [0, 1] and cursor.record([0, 1], [1.0, 0.5]) == []
    assert cursor.mastered == {0}  # both of level 0's groups, mean 0.75; the cursor already stands at level 1
    assert cursor.take(2, new_epoch=False) == [2, 3] and cursor.record([2, 3], [1.0, 1.0]) == []  # 2 of 4
    assert cursor.take(2, new_epoch=False) == [4, 5] and cursor.record([4, 5], [1.0, 1.0]) == [6, 7]


def test_an_epoch_never_holds_fewer_prompts_than_a_window():
    levels = [0] * 6 + [1] * 3
    cursor = PacedCursor(levels, threshold=0.5, window=4, seed=0)
    cursor.take(4, new_epoch=True), cursor.record([0, 1, 2, 3], [1.0] * 4)  # level 0 mastered: 4, 5 skipped
    assert cursor.mastered == {0} and cursor.take(2, new_epoch=False) == [6, 7]
    # leaving level 0 out would leave 3 prompts, fewer than a window: the next epoch re-checks everything, level 0
    # from the rows its skip jumped over
    assert cursor.take(2, new_epoch=True) == [4, 5] and cursor.rechecks == 1 and cursor.left_out == []
    wide = PacedCursor(levels, threshold=0.5, window=3, seed=0)  # 3 prompts fill a window of 3: level 0 stays out
    wide.take(4, new_epoch=True), wide.record([0, 1, 2, 3], [1.0] * 4), wide.take(2, new_epoch=False)
    assert wide.take(2, new_epoch=True) == [8, 6] and wide.left_out == [0] and wide.rechecks == 0  # 8 first


def test_every_prompt_of_an_epoch_is_taken_or_skipped_once():
    levels = [lv for lv in range(8) for _ in range(5)]
    rng = random.Random(1)
    cursor = PacedCursor(levels, threshold=0.7, window=3, seed=0)
    seen, order, epochs_checked, left_out_epochs = [], list(range(40)), 0, 0
    for step in range(300):
        epoch = cursor.epoch
        taken = cursor.take(4, new_epoch=True)
        if cursor.epoch != epoch:  # the previous epoch is over: each prompt once, except a tail shorter than a round
            missing = [i for i in range(40) if i not in seen]
            assert len(seen) == len(set(seen)) and len(missing) < 4
            assert sorted(order[len(order) - len(missing) :]) == missing
            order, seen, epochs_checked = list(cursor.order(cursor.epoch)), [], epochs_checked + 1
            left_out_epochs += bool(cursor.left_out)
        rates = [rng.choice([0.5, 0.75, 1.0]) if levels[i] < step // 20 else 0.25 for i in taken]
        cursor.record(taken, rates)
        seen += taken + cursor.pop_skipped()
    assert epochs_checked > 10 and left_out_epochs > 5 and cursor.rechecks > 0


def test_a_saved_pace_continues_with_the_same_decisions():
    levels = [lv for lv in range(6) for _ in range(7)]
    rng = random.Random(0)
    rates = [rng.choice([0.0, 0.25, 0.75, 1.0]) for _ in range(200)]

    def run(cursor, rounds, start=0):
        events = []
        for r in range(start, start + rounds):
            taken = cursor.take(3, new_epoch=True)
            skipped = cursor.record(taken, rates[3 * r : 3 * r + 3])
            events.append((taken, skipped, cursor.pop_skipped(), list(cursor.left_out)))
        return events

    straight = PacedCursor(levels, threshold=0.6, window=3, seed=0)
    expected = run(straight, 40)
    assert sum(len(skipped) for _, skipped, _, _ in expected) > 0
    assert straight.epoch >= 2 and any(left_out for *_, left_out in expected)  # the memory was used
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
    dataset, _, outputs, consumed, metrics, moved = _paced_run(tiny_model_dir, tmp_path, max_steps=8)
    ids = dataset["id"]
    # 2 prompts a step. Step 0: rows 0, 1 are solved (window 1.0, 1.0): rows 2-5, the rest of level 0, are skipped.
    # Epoch 1 (step 6) leaves level 0 out: it stays mastered; levels 0.5 and 1.0 (one of 4 right) are trained again.
    assert [row["ids"] for row in consumed] == [ids[i : i + 2] for i in (0, 6, 8, 10, 12, 14, 6, 8)]
    assert [row["skipped"] for row in consumed] == [ids[2:6], [], [], [], [], [], ids[0:6], []]
    assert [row["dropped"] for row in consumed] == [[]] * 8
    assert torch.equal(outputs[0]["advantages"], torch.zeros_like(outputs[0]["advantages"]))  # trained, no signal
    assert [m["pace_skipped_total"] for m in metrics] == [4.0] * 6 + [10.0] * 2
    assert [m["pace_window_pass_rate"] for m in metrics] == [1.0] + [0.25] * 7  # level 0.5: one of 4 right
    assert [m["pace_level"] for m in metrics] == [0.5] * 3 + [1.0] * 3 + [0.5] * 2  # the next prompt's level
    assert [m["pace_mastered_levels"] for m in metrics] == [1.0] * 8
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
