import pytest

from observe_r1.config import ObserveR1Config
from observe_r1.train import parse_train_args


def _cfg(tmp_path, **kw):
    return ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], **kw)


def test_defaults_reproduce_the_paper(tmp_path):
    cfg = _cfg(tmp_path)
    assert (cfg.use_bonus, cfg.bonus_coef, cfg.bonus_min_length) == (True, 0.2, 100)
    assert (cfg.use_dyna_weight, cfg.dyna_sigma) == (True, 1.8)
    assert cfg.reward_weights == [1.0, 0.5]
    assert (cfg.learning_rate, cfg.beta, cfg.num_generations, cfg.epsilon) == (1e-6, 0.01, 8, 0.2)
    assert cfg.curriculum == "ordered" and cfg.shuffle_dataset is False
    assert cfg.loss_type == "dapo"


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


@pytest.mark.parametrize("recipe", ["observe_r1_qwen2_5_vl_3b", "observe_r1_qwen2_5_vl_7b", "grpo_baseline",
                                    "random_order", "tiny_cpu"])  # fmt: skip
def test_every_recipe_parses(recipe, tmp_path):
    _, cfg = parse_train_args(["--config", f"recipes/{recipe}.yaml", "--output_dir", str(tmp_path), "--use_cpu",
                               "true", "--bf16", "false", "--use_vllm", "false"])  # fmt: skip
    assert cfg.reward_weights == [cfg.accuracy_weight, cfg.format_weight]
