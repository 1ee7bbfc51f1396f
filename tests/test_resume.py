"""Resume restores the model, not only the prompts (docs/resume.md, issue #27): every weight bit-identical to the
checkpoint's and to the uninterrupted run's, for a full fine-tune, a frozen tower and LoRA; a checkpoint missing
weights is refused; torn checkpoints are skipped."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from observe_r1.checkpoints import (
    COMPLETE_MARKER,
    CheckpointError,
    incomplete_reason,
    latest_complete,
    load_full_weights,
    mark_complete,
)
from observe_r1.models import load_policy
from observe_r1.rewards import FormatReward
from observe_r1.train import build_trainer, resolve_checkpoint
from tests.helpers import ParityAccuracy, StopAt, differing_weights, run_two_processes, synth_dataset, tiny_config
from tests.test_distributed_resume import _consumed

MODES = {
    "full": {},
    "frozen_tower": {"freeze_vision_tower": True},
    "frozen_tower_and_merger": {"freeze_vision_tower": True, "freeze_merger": True},
    "lora": {"use_peft": True, "lora_r": 4},
}


def _trainer(model_dir, tmp_path, out, callbacks=(), **overrides):
    model, processor = load_policy(model_dir)
    _, dataset = synth_dataset(tmp_path)
    config = tiny_config(tmp_path / out, **overrides)
    return build_trainer(model, processor, dataset, config, reward_funcs=[ParityAccuracy(), FormatReward()],
                         callbacks=list(callbacks), concise_progress=False)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_resume_restores_every_weight_bit_for_bit(tiny_model_dir, tmp_path, mode):
    _resume_bit_for_bit(tiny_model_dir, tmp_path, mode)


@pytest.mark.parametrize("mode", ["full", "frozen_tower_and_merger", "lora"])
def test_qwen3_resume_restores_every_weight_bit_for_bit(tiny_qwen3_dir, tmp_path, mode):
    """Qwen3-VL checkpoints keep the in-memory key layout (``model.visual.*``, no renaming): restored all the same,
    deepstack mergers included."""
    _resume_bit_for_bit(tiny_qwen3_dir, tmp_path, mode)
    if mode == "full":
        keys = load_file(tmp_path / "resumed" / "checkpoint-2" / "model.safetensors").keys()
        assert any(k.startswith("model.visual.deepstack_merger_list.") for k in keys)


def _resume_bit_for_bit(tiny_model_dir, tmp_path, mode):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2, **MODES[mode])
    at_two = StopAt(snapshot_at=2)
    straight = _trainer(tiny_model_dir, tmp_path, "straight", callbacks=[at_two], **settings)
    base = {n: p.detach().clone() for n, p in straight.model.named_parameters()}
    straight.train()
    stopped = _trainer(tiny_model_dir, tmp_path, "resumed", callbacks=[StopAt(2)], **settings)
    stopped.train()
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    assert incomplete_reason(checkpoint) is None
    trainable = {n for n, p in stopped.model.named_parameters() if p.requires_grad}
    moved = set(differing_weights(base, at_two.weights))
    assert moved and moved <= trainable  # the two steps changed the weights (else resuming would prove nothing)
    if mode != "lora":  # the checkpoint itself, read back as from_pretrained reads it
        saved, _ = load_policy(checkpoint)
        assert differing_weights({n: p.detach() for n, p in saved.named_parameters()}, at_two.weights) == []

    watch = StopAt()
    resumed = _trainer(tiny_model_dir, tmp_path, "resumed", callbacks=[watch], **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert differing_weights(watch.at_start, at_two.weights) == []  # before step 3: every weight is the checkpoint's
    final = {n: p.detach() for n, p in resumed.model.named_parameters()}
    assert differing_weights(final, {n: p.detach() for n, p in straight.model.named_parameters()}) == []
    assert _consumed(tmp_path / "resumed") == _consumed(tmp_path / "straight")


def test_resume_refuses_a_checkpoint_missing_weights(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, "run", max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    weights = load_file(checkpoint / "model.safetensors")
    assert any(k.startswith("visual.") for k in weights) and any(k.startswith("model.layers.") for k in weights)
    dropped = {k: v for k, v in weights.items() if not k.startswith("visual.blocks.0.")}
    save_file(dropped, checkpoint / "model.safetensors", metadata={"format": "pt"})
    resumed = _trainer(tiny_model_dir, tmp_path, "run", max_steps=4, save_strategy="steps", save_steps=2)
    before = {n: p.detach().clone() for n, p in resumed.model.named_parameters()}
    with pytest.raises(CheckpointError, match=r"weights are not in the checkpoint.*visual\.blocks\.0"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    after = {n: p.detach() for n, p in resumed.model.named_parameters()}
    assert differing_weights(before, after) == []  # nothing copied
    # a tensor the model has no weight for is refused too
    save_file({**weights, "visual.extra.weight": torch.zeros(2)}, checkpoint / "model.safetensors")
    model, _ = load_policy(tiny_model_dir)
    with pytest.raises(CheckpointError, match=r"1 checkpoint tensors have no weight \['visual\.extra\.weight'\]"):
        load_full_weights(model, checkpoint)


def test_published_layout_loads_as_the_policy_with_every_weight(tiny_model_dir, tmp_path):
    model, processor = load_policy(tiny_model_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    keys = load_file(tmp_path / "saved" / "model.safetensors").keys()
    assert any(k.startswith("visual.") for k in keys) and not any(k.startswith("model.visual.") for k in keys)
    loaded, _ = load_policy(tmp_path / "saved")
    assert differing_weights(dict(model.named_parameters()), dict(loaded.named_parameters())) == []
    fresh, _ = load_policy(tiny_model_dir)
    assert load_full_weights(fresh, tmp_path / "saved") == len(keys)
    assert differing_weights(dict(model.named_parameters()), dict(fresh.named_parameters())) == []


def test_checkpoints_carry_a_marker_and_rotation_keeps_complete_ones(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, "run", max_steps=6, save_strategy="steps", save_steps=2,
                       save_total_limit=2)  # fmt: skip
    trainer.train()
    folders = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
    assert folders == ["checkpoint-4", "checkpoint-6"]
    marker = json.loads((tmp_path / "run" / "checkpoint-6" / COMPLETE_MARKER).read_text())
    assert marker["global_step"] == 6
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.pth"} <= set(marker["files"])


def test_resume_takes_the_newest_complete_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    for step in (2, 4, 6, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "model.safetensors").write_text("x")
    mark_complete(run / "checkpoint-2", 2)
    mark_complete(run / "checkpoint-4", 4)
    mark_complete(run / "checkpoint-10", 10)
    (run / "checkpoint-10" / "model.safetensors").unlink()  # listed by its marker, gone since
    assert latest_complete(run)[0] == run / "checkpoint-4"
    assert resolve_checkpoint(run, resume=True) == str(run / "checkpoint-4")
    said = capsys.readouterr().out
    assert "skipping checkpoint-10 (files listed by observe_r1_complete.json are gone" in said
    assert "skipping checkpoint-6 (no observe_r1_complete.json: its save did not finish); resuming from" in said
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-2", "checkpoint-4"]  # torn ones removed
    assert resolve_checkpoint(run, resume=False) is None
    empty = tmp_path / "torn-only"
    (empty / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no complete checkpoint.*checkpoint-2: no observe_r1_complete"):
        resolve_checkpoint(empty, resume=True)
    assert (empty / "checkpoint-2").is_dir()  # nothing is removed when there is nothing to resume from


@pytest.mark.slow
def test_two_processes_resume_every_weight_bit_for_bit(tiny_model_dir, tmp_path):
    ranks = run_two_processes("resume.py", tiny_model_dir, tmp_path, ranks_dir=tmp_path)
    for rank in ranks:
        assert set(rank) == {"full", "frozen_tower", "lora"}
        for report in rank.values():
            assert report["world"] == 2 and report["moved_by_step_2"] > 0
            assert report["differ_at_restart"] == [] and report["differ_at_end"] == []
