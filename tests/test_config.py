import pytest

from observe_r1.config import ObserveR1Config
from observe_r1.train import parse_train_args


def _cfg(tmp_path, **kw):
    return ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], **kw)


def test_defaults_reproduce_the_paper(tmp_path):
    cfg = _cfg(tmp_path)
    assert (cfg.use_bonus, cfg.bonus_coef, cfg.bonus_min_length) == (True, 0.2, 100)
    assert (cfg.use_dyna_weight, cfg.dyna_sigma) == (True, 1.8)
    assert (cfg.accuracy_weight, cfg.format_weight) == (1.0, 0.5) and cfg.reward_weights is None
    assert (cfg.learning_rate, cfg.beta, cfg.num_generations, cfg.epsilon) == (1e-6, 0.01, 8, 0.2)
    assert cfg.curriculum == "ordered" and cfg.shuffle_dataset is False
    assert cfg.loss_type == "dapo"
    assert cfg.dynamic_sampling is False  # not in the paper, and it did not help on the demo (docs/benchmarks.md)


def test_ablations_are_one_flag_away(tmp_path):
    assert _cfg(tmp_path, curriculum="shuffled").shuffle_dataset is True


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"curriculum": "random"}, "curriculum must be"),
        ({"dyna_sigma": 0.0}, "dyna_sigma must be > 0"),
        ({"bonus_coef": -1.0}, "must be >= 0"),
        ({"reward_weights": [1.0, 1.0]}, "accuracy_weight / format_weight"),
        ({"scale_rewards": "batch"}, "scale_rewards='group'"),
        ({"dynamic_sampling": True, "max_generation_rounds": 0}, "max_generation_rounds must be >= 1"),
    ],
)
def test_invalid_values_name_the_fix(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, **kwargs)


def test_yaml_recipe_with_cli_overrides(tmp_path):
    script, cfg = parse_train_args(["--config", "recipes/tiny_cpu.yaml", "--max_steps", "3", "--output_dir",
                                    str(tmp_path), "--use_bonus", "false", "--dataset_path", "x.jsonl"])  # fmt: skip
    assert cfg.max_steps == 3 and cfg.use_bonus is False and cfg.num_generations == 4
    assert script.dataset_path == "x.jsonl" and script.model_name_or_path == "runs/tiny-model"


RECIPES = {  # what each recipe must set (after its `extends:` chain), beyond parsing
    "observe_r1_qwen2_5_vl_3b": {"learning_rate": 1e-6, "beta": 0.01, "per_device_train_batch_size": 8,
                                 "gradient_accumulation_steps": 8, "steps_per_generation": 16,
                                 "curriculum": "ordered", "use_bonus": True},
    "observe_r1_qwen2_5_vl_7b": {"learning_rate": 1e-6, "per_device_train_batch_size": 4,
                                 "gradient_accumulation_steps": 16, "steps_per_generation": 32,
                                 "output_dir": "runs/observe-r1-7b"},
    "grpo_baseline": {"curriculum": "shuffled", "use_bonus": False, "use_dyna_weight": False, "beta": 0.01,
                      "shuffle_dataset": True},
    "random_order": {"curriculum": "shuffled", "use_bonus": True, "use_dyna_weight": True},
    "tiny_cpu": {"num_generations": 4, "use_cpu": True, "padding_free": True},
    # one GPU: the paper's 128 prompts x 8 per generation and 64 prompts per optimizer step, by accumulation
    "observe_r1_qwen2_5_vl_3b_1gpu": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 64,
                                      "generation_batch_size": 1024, "use_peft": False, "learning_rate": 1e-6,
                                      "gradient_checkpointing": True, "vllm_mode": "colocate"},
    "observe_r1_qwen2_5_vl_7b_lora_1gpu": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 128,
                                           "generation_batch_size": 1024, "use_peft": True, "lora_r": 64,
                                           "lora_target_modules": None, "gradient_checkpointing": True,
                                           "output_dir": "runs/observe-r1-7b-lora-1gpu"},
    "observe_r1_qwen3_vl_4b": {"learning_rate": 1e-6, "beta": 0.01, "per_device_train_batch_size": 8,
                               "gradient_accumulation_steps": 8, "steps_per_generation": 16, "use_peft": False,
                               "curriculum": "ordered", "output_dir": "runs/observe-r1-qwen3-vl-4b"},
    "observe_r1_qwen2_5_vl_7b_fsdp": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 16,
                                      "steps_per_generation": 32, "vllm_gpu_memory_utilization": 0.4,
                                      "output_dir": "runs/observe-r1-7b-fsdp", "learning_rate": 1e-6},
    "observe_r1_qwen3_vl_8b_lora_1gpu": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 128,
                                         "generation_batch_size": 1024, "use_peft": True, "lora_r": 64,
                                         "lora_target_modules": None, "freeze_merger": False},
}  # fmt: skip


@pytest.mark.parametrize("recipe", ["observe_r1_qwen3_vl_4b", "observe_r1_qwen3_vl_8b_lora_1gpu"])
def test_qwen3_recipes_keep_the_papers_image_token_budget_in_32_px_units(recipe):
    script, _ = parse_train_args(["--config", f"recipes/{recipe}.yaml", "--use_cpu", "true", "--bf16", "false",
                                  "--use_vllm", "false"])  # fmt: skip
    paper, _ = parse_train_args(["--config", "recipes/observe_r1_qwen2_5_vl_3b.yaml", "--use_cpu", "true", "--bf16",
                                 "false", "--use_vllm", "false"])  # fmt: skip
    assert script.model_name_or_path.startswith("Qwen/Qwen3-VL-")
    assert script.min_pixels % 32**2 == 0 and script.max_pixels % 32**2 == 0  # whole tokens of 32 x 32 px
    assert script.min_pixels // 32**2 == paper.min_pixels // 28**2 == 4  # 2 x 2 tokens
    assert script.max_pixels // 32**2 == int(paper.max_pixels / 28**2) == 3265  # 2,560,000 / 28² = 3,265.3


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_parses_with_its_values(recipe):
    _, cfg = parse_train_args(["--config", f"recipes/{recipe}.yaml", "--use_cpu", "true", "--bf16", "false",
                               "--use_vllm", "false"])  # fmt: skip
    for field, value in RECIPES[recipe].items():
        assert getattr(cfg, field) == value, field


def test_kebab_case_and_out_flags_reach_the_parser(tmp_path):
    script, cfg = parse_train_args(["--config", "recipes/tiny_cpu.yaml", "--out", str(tmp_path),
                                    "--skip-bad-rows", "true", "--max-steps", "2"])  # fmt: skip
    assert cfg.output_dir == str(tmp_path) and script.skip_bad_rows is True and cfg.max_steps == 2
