"""ObserveR1Trainer on the tiny model, on CPU: parameters move, or don't, as the advantages say."""

import pytest
import torch

from observe_r1.jsonl import read_jsonl
from observe_r1.models import VISION_TOKENS, load_policy
from observe_r1.rewards import FormatReward
from observe_r1.train import build_trainer
from observe_r1.trainer import ObserveR1Trainer
from tests.helpers import ConstantAccuracy, ParityAccuracy, synth_dataset, tiny_config


def _train(tiny_model_dir, tmp_path, reward, **overrides):
    model, processor = load_policy(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _, dataset = synth_dataset(tmp_path)
    trainer = ObserveR1Trainer(
        model=model,
        args=tiny_config(tmp_path / "out", **overrides),
        reward_funcs=[reward, FormatReward()],
        train_dataset=dataset,
        processing_class=processor,
    )
    seen = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        output = original(inputs)
        seen.append(output)
        return output

    trainer._generate_and_score_completions = spy
    trainer.train()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    return trainer, changed, seen, processor


def test_training_moves_parameters(tiny_model_dir, tmp_path):
    trainer, changed, seen, processor = _train(tiny_model_dir, tmp_path, ParityAccuracy())
    assert any("visual" in n for n in changed) and any("language_model" in n for n in changed)
    assert all(o["advantages"].abs().sum() > 0 for o in seen)
    vision_ids = set(processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS))
    assert all(not (set(o["completion_ids"].flatten().tolist()) & vision_ids) for o in seen)
    # what is logged is what group_advantages used: |advantage| of the logged step equals the applied one's
    logged = trainer.state.log_history[0]
    applied = seen[0]["advantages"].abs().mean().item()
    assert logged["observe_r1/advantage_abs_mean"] == pytest.approx(applied, rel=1e-5)
    assert 0.0 < logged["observe_r1/dyna_weight_mean"] <= 1.8  # parity rewards: mixed groups, weight > 0
    assert logged["observe_r1/accuracy"] == pytest.approx(
        sum(logged[f"observe_r1/pass_rate_hist/{k}of4"] * k / 4 for k in range(5)), abs=1e-6
    )


def test_equal_rewards_move_nothing(tiny_model_dir, tmp_path):
    _, changed, seen, _ = _train(tiny_model_dir, tmp_path, ConstantAccuracy())
    assert all(torch.equal(o["advantages"], torch.zeros_like(o["advantages"])) for o in seen)
    assert changed == []


def test_ordered_curriculum_consumes_file_order(tiny_model_dir, tmp_path):
    model, processor = load_policy(tiny_model_dir)
    _, dataset = synth_dataset(tmp_path, n=16)
    config = tiny_config(tmp_path / "out", max_steps=4)
    trainer = build_trainer(model, processor, dataset, config, reward_funcs=[ParityAccuracy(), FormatReward()])
    trainer.train()
    assert config.generation_kwargs is None  # the caller's config is not edited
    rows = read_jsonl(tmp_path / "out" / "consumed.jsonl")
    metrics = read_jsonl(tmp_path / "out" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert "accuracy" in metrics[0] and "observe_r1/accuracy" not in metrics[0]  # each metric once
    # without dynamic sampling: one round of 2 prompts a step, the trained groups are the generated ones
    assert all(m["generation_rounds"] == 1 and m["prompts_generated"] == 2 for m in metrics)
    assert all(m["zero_std_generated"] == m["zero_std_trained"] for m in metrics)
    ids = [i for row in rows for i in row["ids"]]
    assert ids == dataset["id"][:8]  # 4 steps x 2 prompts, in file order
    assert [row["step"] for row in rows] == [0, 1, 2, 3]


def test_reward_weights_follow_names_not_positions(tiny_model_dir, tmp_path):
    model, processor = load_policy(tiny_model_dir)
    _, dataset = synth_dataset(tmp_path)
    config = tiny_config(tmp_path / "out", accuracy_weight=1.0, format_weight=0.5)
    trainer = build_trainer(model, processor, dataset, config, reward_funcs=[FormatReward(), ParityAccuracy()])
    assert trainer.reward_func_names == ["format", "accuracy"]
    assert trainer.reward_weights.tolist() == [0.5, 1.0]


def test_generation_keeps_its_kv_cache_under_gradient_checkpointing(tiny_model_dir, tmp_path):
    """TRL generates in training mode, where checkpointed layers drop the KV cache (every new token would then
    recompute the whole prompt); ours generates in eval mode: after the prompt, each forward sees one new token."""
    model, processor = load_policy(tiny_model_dir)
    _, dataset = synth_dataset(tmp_path)
    config = tiny_config(tmp_path / "run", gradient_checkpointing=True, max_steps=1)
    trainer = build_trainer(model, processor, dataset, config, reward_funcs=[FormatReward(), ParityAccuracy()])
    lengths, modes = [], []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        if ids is not None and not torch.is_grad_enabled():
            lengths.append(ids.shape[1])
            modes.append(module.training)

    handle = trainer.model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    trainer.train()
    handle.remove()
    decode_steps = [n for n in lengths if n == 1]
    assert len(decode_steps) >= config.max_completion_length - 2  # one token per forward once the prompt is cached
    assert not any(modes[: len(decode_steps)]) and trainer.model.training  # eval for generation, training after
