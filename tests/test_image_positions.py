"""What the model receives on real, differently sized images: every forward's image marks sit on the image tokens.

TRL 1.16 builds the loss forward's ``mm_token_type_ids`` with a processor call padded on the tokenizer's default
side while ``prompt_ids`` are left-padded (huggingface/trl#5785). These tests train on published MATH-V rows at
the 3B recipe's pixel budget and check the marks on every forward (generation, old/ref log-probs, loss).
"""

from pathlib import Path

import pytest
import torch
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import split_pixel_values_by_grid

from observe_r1.jsonl import read_jsonl
from observe_r1.models import load_policy
from observe_r1.rewards import FormatReward
from observe_r1.train import build_trainer
from observe_r1.trainer import ObserveR1Trainer, image_token_types
from tests.helpers import (
    RECIPE_MAX_PIXELS,
    ImagePositionCheck,
    ParityAccuracy,
    ScriptedGroups,
    benchmark_file,
    mathvision_dataset,
    run_two_processes,
    tiny_config,
)

ROOT = Path(__file__).resolve().parents[1]


def _processor_at(processor, max_pixels):
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": max_pixels}
    processor.image_processor.max_pixels = max_pixels
    return processor


def test_image_token_types_marks_exactly_the_pad_tokens():
    ids = torch.tensor([[0, 0, 5, 9, 9, 6, 3], [5, 9, 9, 9, 6, 3, 7]])
    assert image_token_types(ids, 9).tolist() == [[0, 0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0, 0]]
    assert image_token_types(ids, 9, video_pad_id=7)[1, -1] == 2


def test_training_on_real_images_at_recipe_pixels_keeps_image_positions(family_model_dir, tmp_path):
    model, processor = load_policy(family_model_dir)
    processor.tokenizer.padding_side = "right"  # the side that broke TRL; the trainer must not depend on it
    _processor_at(processor, RECIPE_MAX_PIXELS)
    dataset = mathvision_dataset(n=16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    check = ImagePositionCheck(model, processor)
    args = tiny_config(tmp_path / "out", per_device_train_batch_size=16, max_steps=2, beta=0.04)
    trainer = ObserveR1Trainer(model=model, args=args, reward_funcs=[ParityAccuracy(), FormatReward()],
                               train_dataset=dataset, processing_class=processor)  # fmt: skip
    trainer.train()
    assert check.grad_forwards >= 2 and check.forwards > check.grad_forwards  # loss, old/ref and generation
    assert sum(check.misaligned) == 0, f"misaligned samples per forward: {check.misaligned}"
    assert len(check.image_tokens) >= 4  # the batches really mixed image sizes (and prompt lengths)
    assert max(check.image_tokens) > 300  # at recipe pixels, not squeezed to a thumbnail
    assert any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters() if "visual" in n)


def test_plain_trl_misaligns_the_same_batches(family_model_dir, tmp_path):
    """The check above can fail: unpatched TRL 1.16 with a right-padding tokenizer shifts image marks (kept at
    50,176 pixels, where it runs instead of crashing), on either family. If this starts failing, TRL fixed #5785:
    re-check."""
    model, processor = load_policy(family_model_dir)
    processor.tokenizer.padding_side = "right"
    _processor_at(processor, 50_176)
    check = ImagePositionCheck(model, processor)
    args = GRPOConfig(output_dir=str(tmp_path / "plain"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                      per_device_train_batch_size=16, num_generations=4, max_completion_length=8, max_steps=1,
                      report_to=[], save_strategy="no", shuffle_dataset=False)  # fmt: skip
    trainer = GRPOTrainer(model=model, args=args, reward_funcs=[ParityAccuracy()], train_dataset=mathvision_dataset(),
                          processing_class=processor)  # fmt: skip
    trainer.train()
    assert sum(check.misaligned) > 0


@pytest.mark.slow
def test_two_processes_real_images_aligned_on_every_forward(family_model_dir, tmp_path):
    benchmark_file("mathvision/data/test.jsonl")
    ranks = run_two_processes("image_positions.py", family_model_dir, tmp_path, ranks_dir=tmp_path)
    for rank in ranks:
        assert rank["world"] == 2 and rank["grad_forwards"] >= 2
        assert sum(rank["misaligned"]) == 0, rank["misaligned"]
    assert len(set(ranks[0]["image_tokens"]) | set(ranks[1]["image_tokens"])) >= 4
    assert ranks[0]["ids"][-1] == ranks[1]["ids"][0]  # a group split across the two processes


def test_dynamic_sampling_regroups_real_images_of_different_sizes(family_model_dir, tmp_path):
    """Rows of two generation rounds (different prompt lengths, different image sizes) merged into one batch: every
    forward keeps its image marks, and each trained row carries its own prompt's image patches."""
    model, processor = load_policy(family_model_dir)
    processor.tokenizer.padding_side = "right"
    _processor_at(processor, RECIPE_MAX_PIXELS)
    dataset = mathvision_dataset(n=16)
    check = ImagePositionCheck(model, processor)
    args = tiny_config(tmp_path / "out", per_device_train_batch_size=16, max_steps=2, beta=0.04,
                       dynamic_sampling=True)  # fmt: skip
    trainer = build_trainer(model, processor, dataset, args, reward_funcs=[ScriptedGroups(constant_rows={0, 5})],
                            concise_progress=False)  # fmt: skip
    outputs = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        output = original(inputs)
        outputs.append(split_pixel_values_by_grid({k: v for k, v in output.items()}))
        return output

    trainer._generate_and_score_completions = spy
    trainer.train()
    consumed = read_jsonl(tmp_path / "out" / "consumed.jsonl")
    ids = dataset["id"]
    # step 0: rows 0-3 (0 constant) leave one group missing; the refill asks for 1 / (3/4) -> 2 prompts, rows 4-5
    assert [row["ids"] for row in consumed] == [ids[1:5], ids[6:10]]
    assert consumed[0]["dropped"] == [ids[0], ids[5]]
    assert sum(check.misaligned) == 0, f"misaligned samples per forward: {check.misaligned}"
    sizes = set()
    for output, row in zip(outputs, consumed, strict=True):
        for j, prompt_id in enumerate(row["ids"]):
            image = dataset[ids.index(prompt_id)]["images"][0]
            expected = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
            sizes.add(expected.shape[0])
            for m in range(4):
                assert torch.equal(output["pixel_values"][4 * j + m], expected)
    assert len(sizes) >= 3  # the merged batches really mixed image sizes
