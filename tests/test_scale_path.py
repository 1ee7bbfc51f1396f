"""The path to real model shapes and GPUs, proven on the CPU: shape-true configs, clear failures, the GPU check."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.config import ConfigError, ObserveR1Config
from observe_r1.families import family_of
from observe_r1.launch import check_launch
from observe_r1.models import SHAPES, count_parameters, shaped_config
from observe_r1.train import accepted_flags, load_recipe, parse_train_args, train_help
from tests.helpers import benchmark_file

ROOT = Path(__file__).resolve().parents[1]


def test_shape_true_configs_have_the_published_numbers():
    assert count_parameters(shaped_config("qwen2.5-vl-3b")) == 3_754_622_976  # Qwen2.5-VL-3B-Instruct
    assert count_parameters(shaped_config("qwen2.5-vl-7b")) == 8_292_166_656  # Qwen2.5-VL-7B-Instruct
    c3 = shaped_config("qwen2.5-vl-3b")
    text, vision = c3.text_config, c3.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (2048, 11008, 36)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (16, 2, 151_936)
    assert c3.tie_word_embeddings and not shaped_config("qwen2.5-vl-7b").tie_word_embeddings
    assert (vision.depth, vision.hidden_size, vision.window_size) == (32, 1280, 112)
    assert list(vision.fullatt_block_indexes) == [7, 15, 23, 31] and vision.out_hidden_size == 2048
    short = shaped_config("qwen2.5-vl-3b", layers=2, vision_layers=9)  # truncation keeps the layout inside it
    assert short.text_config.num_hidden_layers == 2 and list(short.vision_config.fullatt_block_indexes) == [7]
    assert list(shaped_config("qwen2.5-vl-3b", vision_layers=1).vision_config.fullatt_block_indexes) == [0]
    with pytest.raises(ValueError, match="layers must be in 1..36"):
        shaped_config("qwen2.5-vl-3b", layers=40)
    assert set(SHAPES) == {"qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b"}


@pytest.mark.parametrize(
    ("shape", "count", "text", "vision", "deepstack", "tied"),
    [  # (hidden, intermediate, layers, heads, kv heads), (depth, hidden, intermediate)
        ("qwen3-vl-2b", 2_127_532_032, (2048, 6144, 28, 16, 8), (24, 1024, 4096), [5, 11, 17], True),
        ("qwen3-vl-4b", 4_437_815_808, (2560, 9728, 36, 32, 8), (24, 1024, 4096), [5, 11, 17], True),
        ("qwen3-vl-8b", 8_767_123_696, (4096, 12288, 36, 32, 8), (27, 1152, 4304), [8, 16, 24], False),
    ],
)
def test_qwen3_shapes_have_the_published_numbers(shape, count, text, vision, deepstack, tied):
    config = shaped_config(shape)
    t, v = config.text_config, config.vision_config
    assert count_parameters(config) == count  # 2.128 B, 4.438 B, 8.767 B on the meta device (docs/families.md)
    heads = (t.num_attention_heads, t.num_key_value_heads)
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, *heads) == text
    assert (v.depth, v.hidden_size, v.intermediate_size) == vision and v.out_hidden_size == t.hidden_size
    assert list(v.deepstack_visual_indexes) == deepstack and config.tie_word_embeddings == tied
    assert (t.head_dim, t.vocab_size, t.rope_parameters["rope_theta"]) == (128, 151_936, 5_000_000.0)
    assert list(t.rope_parameters["mrope_section"]) == [24, 20, 20] and (v.patch_size, v.spatial_merge_size) == (16, 2)
    # truncated: deepstack blocks stay inside the tower, fewer than the language-model layers (merger k feeds the
    # output of layer k: one after the last layer never reaches a completion token)
    short = shaped_config(shape, vision_layers=12).vision_config.deepstack_visual_indexes
    assert list(short) == [i for i in deepstack if i < 12] and len(short) in (1, 2)
    assert list(shaped_config(shape, vision_layers=1).vision_config.deepstack_visual_indexes) == [0]
    assert list(shaped_config(shape, layers=3).vision_config.deepstack_visual_indexes) == deepstack[:2]
    one_layer = shaped_config(shape, layers=1, vision_layers=1)
    assert list(one_layer.vision_config.deepstack_visual_indexes) == [] and count_parameters(one_layer) < count


def test_unknown_flag_names_the_closest_ones():
    with pytest.raises(ConfigError, match=r"unknown flag --max-stepz; did you mean --max-steps"):
        parse_train_args(["--max-stepz", "3"])
    assert {"--dynamic-sampling", "--curriculum", "--image-root", "--strict", "--max_steps"} <= accepted_flags()


def test_train_help_lists_every_field_ours_first():
    text = train_help()
    for flag in ("--image-root", "--dynamic-sampling", "--curriculum", "--bonus-min-length", "--beta", "--max-steps"):
        assert f"  {flag} (default:" in text, flag
    titles = ("observe-r1", "TRL GRPOConfig", "transformers TrainingArguments")
    ours, trl, hf = (text.index(f"{t} fields:") for t in titles)
    assert ours < text.index("--dynamic-sampling") < trl < text.index("--num-generations") < hf
    assert hf < text.index("--learning-rate")
    result = CliRunner().invoke(app, ["train", "-h"])
    assert result.exit_code == 0 and "--dynamic-sampling" in result.output


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_without_vllm_is_one_line_naming_the_extra():
    with pytest.raises(ConfigError, match=r"use_vllm needs vLLM.*pip install 'observe-r1\[vllm\]'"):
        parse_train_args(["--config", str(ROOT / "recipes" / "observe_r1_qwen2_5_vl_3b.yaml")])
    for flags in (["--use-vllm"], ["--use_vllm", "true"], ["--use-vllm=true"]):
        with pytest.raises(ConfigError, match=r"use_vllm needs vLLM"):
            parse_train_args(["--config", str(ROOT / "recipes" / "tiny_cpu.yaml"), *flags])
    _, config = parse_train_args(["--config", str(ROOT / "recipes" / "tiny_cpu.yaml"), "--use-vllm=false"])
    assert not config.use_vllm
    from observe_r1.generation import make_generator

    with pytest.raises(ConfigError, match=r"--backend vllm needs vLLM"):
        make_generator("Qwen/Qwen2.5-VL-3B-Instruct", backend="vllm")


def test_a_multi_process_launch_that_is_not_distributed_is_refused(tmp_path):
    config = ObserveR1Config(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[])
    check_launch(config, environ={})  # a single process: fine
    with pytest.raises(ConfigError, match=r"launched as 2 processes \(WORLD_SIZE\) but the trainer sees 1"):
        check_launch(config, environ={"WORLD_SIZE": "2"})


def test_gpu_check_padding_free_update(tiny_model_dir):
    """The GPU check's padded-vs-packed update (docs/padding_free.md), on the tiny model and two MATH-V rows: both
    variants timed, fp32 log-probs equal, and the report row written."""
    from observe_r1.data import load_items, with_images
    from observe_r1.models import load_processor

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    records = [with_images(item) for item in load_items(benchmark_file("mathvision/data/test.jsonl"))[0][:2]]
    cpu = gpu_check.torch.device("cpu")
    packing = gpu_check.padding_free_update(tiny_model_dir, load_processor(tiny_model_dir), records, cpu, rows=2,
                                            new_tokens=8, repeats=1)  # fmt: skip
    assert packing["rows"] == 2 and 0 < packing["padding_fraction"] < 1 and packing["sdpa_speedup"] > 0
    assert packing["sdpa_padded"]["max_logprob_diff"] == 0 and packing["sdpa_packed"]["max_logprob_diff"] < 1e-5
    assert "flash_attention_2_packed" not in packing  # CUDA only
    assert "x), " in gpu_check._packing_cell(packing, "sdpa")


def test_gpu_check_uses_the_recipes_per_device_settings():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    checked = []
    for shape, settings in gpu_check.RECIPES.items():
        if settings["recipe"] is None:  # a shape without a recipe of its own
            continue
        checked.append(shape)
        recipe = load_recipe(ROOT / "recipes" / settings["recipe"])
        assert settings["micro_batch"] == recipe["per_device_train_batch_size"], shape
        # 16 prompts x 8 per GPU per generation: the check's default prompts per generation
        assert recipe["steps_per_generation"] * recipe["per_device_train_batch_size"] == 16 * 8, shape
        assert recipe["num_generations"] == 8, shape
        assert recipe["max_pixels"] == gpu_check.MAX_PIXELS[family_of(shaped_config(settings["size"])).name], shape
    assert checked == ["3b", "7b", "qwen3-vl-4b"]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_writes_every_field(tmp_path):
    """scripts/gpu_check.py at the 3B shape, truncated to one layer each, on MATH-V rows: every figure is written."""
    data = benchmark_file("mathvision/data/test.jsonl")
    out = tmp_path / "check"
    command = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--shape", "3b", "--device", "cpu",
               "--layers", "1", "--vision-layers", "1", "--max-pixels", "200704", "--new-tokens", "16",
               "--data", str(data), "--out", str(out), "--model-dir", str(tmp_path / "model")]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, timeout=600)
    result = json.loads((out / "gpu_check.json").read_text())
    assert (tmp_path / "model" / "config.json").is_file() and not (out / "gpu_check.partial.json").exists()
    training = result["training"]
    assert result["parameters_full"] == 3_754_622_976 and result["layers"] == 1 and result["vision_layers"] == 1
    assert training["generated_tokens"] == 2 * 16  # random weights never stop: every completion is full length
    assert training["trained_tokens"] > training["generated_tokens"]
    assert set(training["phases_s_per_step"]) == {"generation", "old_ref_logprobs", "scoring_and_other",
                                                  "loss_backward", "optimizer"}  # fmt: skip
    assert all(v > 0 for k, v in training["phases_s_per_step"].items() if k != "scoring_and_other")
    assert training["mfu"] is None and training["peak_memory"]["source"] == "rss"
    for key in ("s_per_step", "generated_tokens_per_s_per_gpu", "trained_tokens_per_s_per_gpu"):
        assert training[key] > 0
    assert 0 < result["logprobs"]["max_abs_diff"] < 1 and result["logprobs"]["mean_abs_diff"] > 0
    assert result["rating"]["items_per_s"] > 0 and result["eval"]["items_per_s"] > 0
    report = (out / "gpu_check.md").read_text()
    assert "| s/step |" in report and "| decoding at 2 sequences, eager / static compiled" in report
    engines = result["generation_engines"]
    for engine in ("eager", "static_compiled"):
        rate = engines[engine]["2"]
        assert rate["ms_per_decode_step"] > 0 and rate["tokens_per_s"] > 0 and rate["sequences"] == 2
    assert engines["eager"]["2"]["compilations"] == 0 and engines["static_compiled"]["2"]["compilations"] >= 1
    assert training["tokens_per_s_per_gpu"] == pytest.approx(training["trained_tokens"] / training["s_per_step"])
    assert result["micro_batch_sweep"] == [] and training["compile_generation"] is False  # CPU defaults
    assert "padding_free" not in result  # on CUDA only by default: test_gpu_check_padding_free_update runs it
