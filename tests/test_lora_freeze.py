"""A frozen vision tower or projector and LoRA on the tiny model, on CPU (docs/lora.md): what must not move stays
bit-identical, what trains moves, and LoRA runs resume, evaluate and merge like full fine-tunes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.config import ConfigError, ObserveR1Config, TrainScriptArguments
from observe_r1.eval import evaluate
from observe_r1.generation import make_generator
from observe_r1.jsonl import read_jsonl
from observe_r1.lora import LANGUAGE_LINEAR, adapter_base, is_adapter_dir
from observe_r1.models import load_policy
from observe_r1.rewards import FormatReward
from observe_r1.synth import generate_items, write_dataset
from observe_r1.train import build_trainer, parse_train_args, run_training, save_final
from tests.helpers import ParityAccuracy, run_two_processes, run_until_killed, synth_dataset, tiny_config
from tests.test_distributed_resume import _consumed, _train_cmd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def base_name(name: str) -> str:
    """A parameter's name in the unwrapped model (PEFT adds ``base_model.model.`` and ``.base_layer``)."""
    return name.replace("base_model.model.", "").replace(".base_layer", "")


def _trainer(tiny_model_dir, tmp_path, out="out", callbacks=None, **overrides):
    """``(trainer, loaded, initial)``: the policy as loaded, and every parameter once the trainer is set up (with
    LoRA: the adapters as initialised), keyed by the trainer's names."""
    model, processor = load_policy(tiny_model_dir)
    loaded = {n: p.detach().clone() for n, p in model.named_parameters()}
    _, dataset = synth_dataset(tmp_path)
    config = tiny_config(tmp_path / out, **overrides)
    trainer = build_trainer(model, processor, dataset, config, reward_funcs=[ParityAccuracy(), FormatReward()],
                            callbacks=callbacks, concise_progress=False)  # fmt: skip
    initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return trainer, loaded, initial


def _moved(initial: dict, model) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(initial[n], p.detach())}


# The projectors, by name: the merger, and Qwen3-VL's deepstack mergers (docs/lora.md: they map vision features into
# the language model's first layers, so they freeze with the merger, not with the tower).
PROJECTORS = (".visual.merger.", ".visual.deepstack_merger_list.")


@pytest.mark.parametrize("merger", [False, True], ids=["tower", "tower_and_merger"])
def test_frozen_vision_tower_is_bit_identical_and_the_language_model_moves(family_model_dir, tmp_path, merger):
    # gradient checkpointing (the recipes' setting) with the projector frozen too: nothing before the language
    # model then needs a gradient
    trainer, _, initial = _trainer(family_model_dir, tmp_path, freeze_vision_tower=True, freeze_merger=merger,
                                   gradient_checkpointing=merger)  # fmt: skip
    trainer.train()
    moved = _moved(initial, trainer.model)
    projector = {n for n in initial if any(p in n for p in PROJECTORS)}
    tower = {n for n in initial if ".visual." in n} - projector
    language = set(initial) - tower - projector
    assert any("patch_embed" in n for n in tower) and any(".blocks." in n for n in tower)
    qwen3 = trainer.model.config.model_type == "qwen3_vl"
    assert any(".deepstack_merger_list." in n for n in projector) == qwen3
    assert any(".pos_embed." in n for n in tower) == qwen3  # Qwen3-VL's learned position grid is the tower's
    assert not moved & tower  # every vision parameter bit-identical
    assert (moved & projector == set()) if merger else (moved & projector == projector)
    assert moved & language == language
    # the optimizer holds the trained parameters only: no state is spent on the frozen ones
    frozen_ids = {id(p) for n, p in trainer.model.named_parameters() if n in tower | (projector if merger else set())}
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert optimized and not {id(p) for p in optimized} & frozen_ids


def test_lora_moves_only_the_adapters(family_model_dir, tmp_path):
    trainer, loaded, initial = _trainer(family_model_dir, tmp_path, use_peft=True, lora_r=4, max_steps=4)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    adapters = {n for n in after if ".lora_" in n}
    assert {base_name(n) for n in set(after) - adapters} == set(loaded)
    # base weights: bit-identical to the loaded policy; adapters: all moved, and the only trainable parameters
    assert all(torch.equal(loaded[base_name(n)], after[n].detach()) for n in set(after) - adapters)
    assert _moved(initial, trainer.model) == adapters
    assert {n for n, p in after.items() if p.requires_grad} == adapters
    # default targets: every linear layer of the language model, nothing in the vision tower
    layers = trainer.model.get_base_model().config.text_config.num_hidden_layers
    adapted = {n.split(".lora_")[0] for n in adapters}
    assert len(adapted) == layers * len(LANGUAGE_LINEAR) and all(".language_model." in n for n in adapted)
    # the Observe-R1 metrics and the ordered curriculum, as without LoRA
    metrics = read_jsonl(tmp_path / "out" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(0 < m["dyna_weight_mean"] <= 1.8 and "accuracy" in m and "bonus_rate" in m for m in metrics)
    consumed = [i for row in read_jsonl(tmp_path / "out" / "consumed.jsonl") for i in row["ids"]]
    assert consumed == trainer.train_dataset["id"][:8]


def test_lora_targets_in_the_vision_tower_only_when_named(tiny_model_dir, tmp_path):
    trainer, _, _ = _trainer(tiny_model_dir, tmp_path, use_peft=True, lora_target_modules=["q_proj", "visual.qkv"])
    adapted = {n.split(".lora_")[0] for n, _ in trainer.model.named_parameters() if ".lora_" in n}
    assert {n.rsplit(".", 1)[1] for n in adapted} == {"q_proj", "qkv"}
    assert all(".visual.blocks." in n for n in adapted if n.endswith("qkv"))
    with pytest.raises(ValueError, match="freezes"):
        _trainer(tiny_model_dir, tmp_path, out="contradiction", use_peft=True, freeze_vision_tower=True,
                 lora_target_modules=["q_proj", "visual.qkv"])  # fmt: skip


def test_qwen3_lora_vision_targets_by_name_and_other_families_names_refused(tiny_qwen3_dir, tmp_path):
    targets = ["q_proj", "visual.linear_fc1"]  # Qwen3-VL's vision MLP (blocks, merger and deepstack mergers)
    trainer, _, _ = _trainer(tiny_qwen3_dir, tmp_path, use_peft=True, lora_target_modules=targets)
    adapted = {base_name(n.split(".lora_")[0]) for n, _ in trainer.model.named_parameters() if ".lora_" in n}
    parts = ("blocks.0.mlp", "blocks.1.mlp", "merger", "deepstack_merger_list.0")
    fc1 = {f"model.visual.{n}.linear_fc1" for n in parts}
    assert {n for n in adapted if n.endswith("linear_fc1")} == fc1
    assert {n for n in adapted if n.endswith("q_proj")} == {f"model.language_model.layers.{i}.self_attn.q_proj"
                                                            for i in range(2)}  # fmt: skip
    # Qwen2.5-VL's vision MLP name matches nothing here: refused, not silently a language-model-only adapter
    wrong = ["q_proj", "visual.gate_proj"]
    with pytest.raises(ValueError, match=r"\['visual.gate_proj'\] match no module of this qwen3-vl model.*linear_fc1"):
        _trainer(tiny_qwen3_dir, tmp_path, out="wrong", use_peft=True, lora_target_modules=wrong)
    with pytest.raises(ValueError, match="freezes"):  # a deepstack merger adapter with the projectors frozen
        _trainer(tiny_qwen3_dir, tmp_path, out="contradiction", use_peft=True, freeze_merger=True,
                 lora_target_modules=["q_proj", "visual.deepstack_merger_list.0.linear_fc2"])  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lora_resume_after_kill_neither_skips_nor_repeats_prompts(tiny_model_dir, tmp_path):
    data = write_dataset(generate_items(48, seed=5), tmp_path / "data")
    extra = ["--use-peft", "true", "--lora-r", "4"]  # with dynamic sampling: the in-process resume test above
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}  # two runs share the cores
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    uninterrupted = subprocess.Popen(_train_cmd(tiny_model_dir, data, straight, *extra), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)  # fmt: skip
    code = run_until_killed(_train_cmd(tiny_model_dir, data, crashed, *extra), crashed, checkpoint="checkpoint-4",
                            consumed_lines=6, env=env)  # fmt: skip
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert is_adapter_dir(crashed / "checkpoint-4") and not (crashed / "checkpoint-4" / "model.safetensors").exists()
    assert len(_consumed(crashed)) < 12
    subprocess.run(_train_cmd(tiny_model_dir, data, crashed, *extra, "--resume", "true"), check=True,
                   capture_output=True, env=env, timeout=300)  # fmt: skip
    _, errors = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, errors[-3000:]
    assert _consumed(crashed) == _consumed(straight)
    assert [row["step"] for row in _consumed(crashed)] == list(range(12))
    assert is_adapter_dir(crashed / "final") and Path(adapter_base(crashed / "final")) == Path(tiny_model_dir)


def test_eval_on_the_adapter_folder_equals_eval_on_the_merged_model(family_model_dir, tmp_path):
    trainer, loaded, _ = _trainer(family_model_dir, tmp_path, use_peft=True, lora_r=4, max_steps=3)
    trainer.train()
    final = save_final(trainer, trainer.processing_class, merge=True)
    merged = tmp_path / "out" / "merged"
    assert is_adapter_dir(final) and not (final / "model.safetensors").exists()
    assert (merged / "config.json").is_file() and not is_adapter_dir(merged)
    # the merged weights are the base plus the trained update
    merged_model, _ = load_policy(merged)
    q_proj = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(merged_model.named_parameters())[q_proj], loaded[q_proj])
    benchmark = write_dataset(generate_items(8, seed=3), tmp_path / "bench")
    predictions = {}
    for name, model in [("adapter", final), ("merged", merged), ("base", family_model_dir)]:
        generator = make_generator(str(model), batch_size=8, max_new_tokens=16)
        evaluate(generator, benchmark, tmp_path / f"eval-{name}", batch_size=8)
        predictions[name] = [row["response"] for row in read_jsonl(tmp_path / f"eval-{name}" / "predictions.jsonl")]
    assert predictions["adapter"] == predictions["merged"]
    assert predictions["adapter"] != predictions["base"]  # the adapter was applied
    # `observe-r1 merge` writes the same weights as `train --merge`
    result = CliRunner().invoke(app, ["merge", str(final), "--out", str(tmp_path / "cli-merged")])
    assert result.exit_code == 0, result.output
    again, _ = load_policy(tmp_path / "cli-merged")
    assert all(torch.equal(p, q) for p, q in zip(again.parameters(), merged_model.parameters(), strict=True))
    with pytest.raises(ConfigError, match="observe-r1 merge"):
        make_generator(str(final), backend="vllm")


@pytest.mark.slow
def test_two_processes_train_the_same_adapters_and_freeze_the_same_tower(tiny_model_dir, tmp_path):
    ranks = run_two_processes("lora_freeze.py", tiny_model_dir, tmp_path, ranks_dir=tmp_path)
    for name in ("lora", "frozen_tower"):
        zero, one = ranks[0][name], ranks[1][name]
        assert zero["world"] == 2 and zero["moved"] and zero["moved"] == zero["trainable"]
        assert zero["checksums"] == one["checksums"]  # both processes hold the same trained weights
        assert "observe_r1/dyna_weight_mean" in zero["logged"]
    lora, tower = ranks[0]["lora"], ranks[0]["frozen_tower"]
    assert all(".lora_" in n for n in lora["moved"]) and lora["base_unchanged"] == lora["loaded"]
    vision = {n for n in tower["loaded"] if ".visual." in n and ".merger." not in n}
    assert vision and vision <= set(tower["base_unchanged"]) and not vision & set(tower["moved"])
    assert {n for n in tower["loaded"] if ".language_model." in n} <= set(tower["moved"])


def test_fields_and_flags(tmp_path):
    config = ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[])
    assert (config.freeze_vision_tower, config.freeze_merger, config.use_peft) == (False, False, False)
    assert (config.lora_r, config.lora_alpha, config.lora_target_modules) == (16, 32, None)
    script, config = parse_train_args(["--config", "recipes/tiny_cpu.yaml", "--use-peft", "true", "--lora-r", "8",
                                       "--lora-target-modules", "q_proj", "visual.qkv", "--freeze-merger", "true",
                                       "--merge", "true"])  # fmt: skip
    assert (config.use_peft, config.lora_r, config.freeze_merger, script.merge) == (True, 8, True, True)
    assert config.lora_target_modules == ["q_proj", "visual.qkv"]
    with pytest.raises(ValueError, match="use_peft is false"):
        ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, lora_target_modules=["q_proj"])
    with pytest.raises(ValueError, match="lora_r >= 1"):
        ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, use_peft=True, lora_r=0)
    with pytest.raises(ConfigError, match="--merge applies to LoRA runs"):
        run_training(TrainScriptArguments(dataset_path="x.jsonl", merge=True), config=ObserveR1Config(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[]))  # fmt: skip
