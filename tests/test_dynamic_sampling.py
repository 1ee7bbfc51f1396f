"""Dynamic sampling on the tiny model: which prompts are generated, dropped and trained, and what the model gets."""

import pytest
import torch
from trl.trainer.utils import RepeatSampler

from observe_r1.dynamic import PromptCursor, merge_rows, select_groups, split_rows
from observe_r1.jsonl import read_jsonl
from observe_r1.models import load_policy
from observe_r1.train import build_trainer
from tests.helpers import (
    ConstantAccuracy,
    ScriptedGroups,
    assert_rows_carry_their_images,
    length_parity_tail,
    synth_dataset,
    tiny_config,
    train_spied,
)


def test_constant_groups_are_replaced_by_the_next_prompts(tiny_model_dir, tmp_path):
    constant = {0, 3, 6, 9, 12, 15}
    trainer, outputs, dataset, processor, moved = train_spied(
        tiny_model_dir, tmp_path, ScriptedGroups(constant), dynamic_sampling=True, max_generation_rounds=4
    )
    ids = dataset["id"]
    consumed = read_jsonl(tmp_path / "out" / "consumed.jsonl")
    # 2 prompts a step: rows 0,1 (0 constant) -> refill 2,3 (3 constant) -> train 1,2; then 4,5; then 6,7 + 8,9
    assert [row["ids"] for row in consumed] == [[ids[1], ids[2]], [ids[4], ids[5]], [ids[7], ids[8]]]
    assert [row["dropped"] for row in consumed] == [[ids[0], ids[3]], [], [ids[6], ids[9]]]
    assert all(row["surplus"] == [] for row in consumed)
    metrics = read_jsonl(tmp_path / "out" / "metrics.jsonl")
    assert [m["generation_rounds"] for m in metrics] == [2, 1, 2]
    assert [m["prompts_generated"] for m in metrics] == [4, 2, 4]
    assert [m["zero_std_generated"] for m in metrics] == [0.5, 0.0, 0.5]
    assert [m["zero_std_trained"] for m in metrics] == [0.0, 0.0, 0.0]
    assert moved
    # what the loss gets: every group has a non-zero advantage, and each row carries its own prompt's image
    for step, output in enumerate(outputs):
        assert (output["advantages"].view(-1, 4) != 0).any(dim=1).all()
        assert_rows_carry_their_images(output, consumed[step]["ids"], dataset, processor)
        image_types = output["mm_token_type_ids"] == 1
        ids_all = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        assert torch.equal(image_types, ids_all == trainer._image_pad_token_id)


def test_rounds_exhausted_trains_on_what_it_has(tiny_model_dir, tmp_path):
    trainer, outputs, dataset, _, moved = train_spied(
        tiny_model_dir, tmp_path, ConstantAccuracy(), max_steps=2, dynamic_sampling=True, max_generation_rounds=2
    )
    ids = dataset["id"]
    consumed = read_jsonl(tmp_path / "out" / "consumed.jsonl")
    assert [row["ids"] for row in consumed] == [ids[0:2], ids[4:6]]  # the earliest groups fill the batch
    assert [row["dropped"] for row in consumed] == [ids[2:4], ids[6:8]]
    metrics = read_jsonl(tmp_path / "out" / "metrics.jsonl")
    assert [m["zero_std_trained"] for m in metrics] == [1.0, 1.0]
    assert [m["generation_rounds"] for m in metrics] == [2, 2]
    assert all(torch.equal(o["advantages"], torch.zeros_like(o["advantages"])) for o in outputs)
    assert not moved


def test_off_and_on_without_constant_groups_train_identically(tiny_model_dir, tmp_path):
    reward = ScriptedGroups(tail=length_parity_tail)  # completion-dependent, never constant
    runs = {}
    for flag in (False, True):
        trainer, outputs, _, _, _ = train_spied(tiny_model_dir, tmp_path / str(flag), reward, dynamic_sampling=flag)
        runs[flag] = (outputs, read_jsonl(tmp_path / str(flag) / "out" / "consumed.jsonl"))
    (off, consumed_off), (on, consumed_on) = runs[False], runs[True]
    assert [r["ids"] for r in consumed_off] == [r["ids"] for r in consumed_on]
    assert any(o["advantages"].unique().numel() > 2 for o in off)  # the completions shaped the advantages
    for a, b in zip(off, on, strict=True):
        for key in ("advantages", "prompt_ids", "completion_ids", "completion_mask", "pixel_values"):
            assert torch.equal(a[key], b[key]), key
        assert a["num_items_in_batch"] == b["num_items_in_batch"]


def test_cursor_order_epochs_and_state():
    cursor = PromptCursor(10, shuffle=True, seed=3, max_epochs=2)
    first = cursor.take(4, new_epoch=True) + cursor.take(4, new_epoch=False)
    assert cursor.take(4, new_epoch=False) is None  # a refill does not cross into the next epoch
    assert sorted(first) == sorted(set(first)) and len(first) == 8
    trl_order = list(RepeatSampler(list(range(10)), mini_repeat_count=1, batch_size=4, shuffle=True, seed=3))
    assert first == trl_order  # epoch 0 is the order of TRL's sampler (which drops the incomplete last batch)
    second = cursor.take(4, new_epoch=True)
    assert cursor.state_dict() == {"epoch": 1, "position": 4}
    restarted = PromptCursor(10, shuffle=True, seed=3, max_epochs=2)
    restarted.load_state_dict({"epoch": 1, "position": 0})
    assert restarted.take(4, new_epoch=False) == second
    cursor.take(4, new_epoch=False)
    assert not cursor.can_take(4, new_epoch=True)  # two epochs were asked for


def test_select_groups_keeps_order_and_counts_everything():
    flags = [[True, False, True, True], [False, True, True, False]]
    trained, dropped, surplus = select_groups(flags, target=4)
    assert trained == [(0, 0), (0, 2), (0, 3), (1, 1)]
    assert surplus == [(1, 2)]
    assert dropped == [(0, 1), (1, 0), (1, 3)]
    assert len(trained) + len(dropped) + len(surplus) == 8


def test_rows_of_different_widths_merge_with_padding_on_the_right_sides():
    def output(prompt_len, completion_len, value):
        return {
            "prompt_ids": torch.full((2, prompt_len), value),
            "prompt_mask": torch.ones(2, prompt_len, dtype=torch.long),
            "completion_ids": torch.full((2, completion_len), value),
            "completion_mask": torch.ones(2, completion_len, dtype=torch.long),
            "advantages": torch.tensor([1.0, -1.0]),
            "pixel_values": torch.full((2 * 4, 3), float(value)),
            "image_grid_thw": torch.tensor([[1, 2, 2], [1, 2, 2]]),
            "num_images": [1, 1],
            "num_items_in_batch": torch.tensor(99),
        }

    rows = split_rows(output(3, 2, 7)) + split_rows(output(5, 4, 8))
    merged = merge_rows([rows[0], rows[3]], pad_token_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 0, 7, 7, 7], [8, 8, 8, 8, 8]]
    assert merged["prompt_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[7, 7, 0, 0], [8, 8, 8, 8]]
    assert merged["completion_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert merged["advantages"].tolist() == [1.0, -1.0]
    assert merged["pixel_values"][:4].eq(7).all() and merged["pixel_values"][4:].eq(8).all()
    assert merged["num_images"] == [1, 1] and "num_items_in_batch" not in merged
    with pytest.raises(NotImplementedError, match="image_sizes"):
        split_rows({**output(3, 2, 7), "image_sizes": torch.zeros(2, 2)})


def test_iterable_datasets_are_refused_with_a_reason(tiny_model_dir, tmp_path):
    model, processor = load_policy(tiny_model_dir)
    _, dataset = synth_dataset(tmp_path, n=8)
    config = tiny_config(tmp_path / "out", dynamic_sampling=True)
    with pytest.raises(ValueError, match="map-style datasets.Dataset"):
        build_trainer(model, processor, dataset.to_iterable_dataset(), config, reward_funcs=[ScriptedGroups()])


def test_refill_step_rounds_selection_and_placement():
    from observe_r1.dynamic import PromptCursor, RefillStep

    step = RefillStep(PromptCursor(10, shuffle=False, seed=0), target=2, num_generations=2, world=2, max_rounds=4)
    assert step.next_prompts() == [0, 1] and step.local_rows([0, 1], rank=1) == [1, 1]  # 2 completions each
    step.record([False, True])
    assert step.next_prompts() == [2, 3]  # one informative of two: ask for two more prompts
    step.record([True, False])
    assert step.next_prompts() is None  # the step has its 2 informative groups
    trained, dropped, surplus = step.select()
    assert trained == [(0, 1), (1, 0)] and dropped == [(0, 0), (1, 1)] and surplus == []
    assert step.group_index(trained) == [1, 2]
    # group 1 of round 0 lives on process 1 (rows 0-1 of its 2), group 0 of round 1 on process 0
    assert step.placement(trained) == [(0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1)]
    empty = RefillStep(PromptCursor(2, shuffle=False, seed=0, max_epochs=1), 2, 2, 1, 4)
    assert empty.next_prompts() == [0, 1]
    empty.record([False, False])
    assert empty.next_prompts() is None  # the epoch is spent
