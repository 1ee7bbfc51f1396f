import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from typer.testing import CliRunner

from observe_r1.cli import app
from observe_r1.families import family_of
from observe_r1.models import VISION_TOKENS, ObserveR1VLProcessor, build_tiny_model, load_policy
from observe_r1.prompts import build_messages
from observe_r1.synth import generate_items


def _inputs(processor, n_images=1):
    item = generate_items(1, seed=3)[0]
    text = processor.apply_chat_template(build_messages(item["problem"], n_images), add_generation_prompt=True)
    return processor(text=[text], images=[item["image"]] * n_images, return_tensors="pt")


def test_auto_classes_reload_tiny_model(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert isinstance(processor, ObserveR1VLProcessor)
    assert processor.image_processor is not None
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2_5_vl"


def test_auto_classes_reload_tiny_qwen3(tiny_qwen3_dir):
    processor = AutoProcessor.from_pretrained(tiny_qwen3_dir)  # no torchvision: the image-only processor
    assert type(processor).__name__ == "ObserveR1Qwen3VLProcessor" and processor.image_processor is not None
    assert (processor.image_processor.patch_size, processor.image_processor.merge_size) == (16, 2)
    assert list(processor.image_processor.image_mean) == [0.5] * 3  # Qwen3-VL's normalisation, not CLIP's
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen3_dir)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and family_of(model).name == "qwen3-vl"
    # one deepstack merger (block 0 -> after language-model layer 0): none may feed the last layer's output
    assert list(model.config.vision_config.deepstack_visual_indexes) == [0]
    assert len(model.model.visual.deepstack_merger_list) == model.config.text_config.num_hidden_layers - 1 == 1


def test_unsupported_architecture_is_one_line_listing_the_supported(tmp_path):
    from transformers import AutoConfig

    AutoConfig.for_model("llava").save_pretrained(tmp_path / "llava")
    with pytest.raises(ValueError) as error:
        load_policy(tmp_path / "llava")
    message = str(error.value)
    assert "\n" not in message and message.startswith("unsupported architecture llava")
    assert "qwen2.5-vl (Qwen2_5_VLForConditionalGeneration)" in message
    assert "qwen3-vl (Qwen3VLForConditionalGeneration)" in message


def test_generate_on_image_and_question_returns_text(tiny_model_dir):
    model, processor = load_policy(tiny_model_dir)
    inputs = _inputs(processor)
    out = model.generate(**inputs, max_new_tokens=16, do_sample=True, min_new_tokens=16)
    text = processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert isinstance(text, str) and len(text) > 0


def test_generation_never_emits_vision_tokens(family_model_dir):
    model, processor = load_policy(family_model_dir)
    vision_ids = processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS)
    # Push the vision tokens to the top of every distribution: only the saved suppression can stop them.
    index = torch.tensor(vision_ids)

    def boost(module, args, logits):
        return logits.index_add(-1, index, torch.full((*logits.shape[:-1], len(vision_ids)), 50.0))

    model.lm_head.register_forward_hook(boost)
    inputs = _inputs(processor)
    out = model.generate(**inputs, max_new_tokens=24, min_new_tokens=24, do_sample=True)
    generated = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert not set(generated) & set(vision_ids)
    # the oracle is sound: without the saved suppression the boosted tokens do come out
    model.generation_config.suppress_tokens = None
    out = model.generate(**inputs, max_new_tokens=8, do_sample=True)
    assert set(out[0, inputs["input_ids"].shape[1] :].tolist()) & set(vision_ids)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=7)
    b = build_tiny_model(tmp_path / "b", seed=7)
    c = build_tiny_model(tmp_path / "c", seed=8)
    sa, sb, sc = (load_policy(p)[0].state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


@pytest.mark.parametrize("n_images", [1, 2])
def test_processor_round_trip_counts_image_tokens(family_model_dir, n_images):
    processor = AutoProcessor.from_pretrained(family_model_dir)
    inputs = _inputs(processor, n_images)
    # Qwen2.5-VL: 84x84 -> 6x6 patches of 14 px; Qwen3-VL: resized to 96x96 (32-px units) -> 6x6 patches of 16 px;
    # both merged 2x2 -> 9 tokens per image
    grid = inputs["image_grid_thw"]
    assert grid.tolist() == [[1, 6, 6]] * n_images
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == 9 * n_images
    model = AutoModelForImageTextToText.from_pretrained(family_model_dir)
    with torch.no_grad():
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


# preprocessor_config.json as the published checkpoints have it: the stock processor, the fast image processor
PUBLISHED_PREPROCESSOR = {
    "qwen2_5_vl": {"processor_class": "Qwen2_5_VLProcessor", "image_processor_type": "Qwen2VLImageProcessor",
                   "patch_size": 14, "min_pixels": 3136, "max_pixels": 12845056, "merge_size": 2,
                   "temporal_patch_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711]},
    "qwen3_vl": {"processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
                 "patch_size": 16, "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "merge_size": 2,
                 "temporal_patch_size": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
}  # fmt: skip


def test_a_published_checkpoint_loads_with_its_image_settings(family_model_dir, tmp_path):
    """A hub checkpoint names the stock processor (torchvision for video and the fast image processor): loaded here,
    it is the family's image-only processor with the checkpoint's own image settings, never a bare tokenizer."""
    import json
    import shutil

    published = shutil.copytree(family_model_dir, tmp_path / "published")
    (published / "processor_config.json").unlink()
    model_type = json.loads((published / "config.json").read_text())["model_type"]
    settings = PUBLISHED_PREPROCESSOR[model_type]
    (published / "preprocessor_config.json").write_text(json.dumps(settings))
    model, processor = load_policy(published)
    assert processor.image_processor.patch_size == settings["patch_size"]
    assert list(processor.image_processor.image_mean) == pytest.approx(settings["image_mean"])
    assert processor.chat_template and processor.image_token_id == processor.tokenizer.convert_tokens_to_ids(
        "<|image_pad|>"
    )
    inputs = _inputs(processor)  # 84x84 at the published minimum: upscaled (3,136 px: 9 tokens; 65,536: 64)
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == (9 if model_type == "qwen2_5_vl" else 64)
    with torch.no_grad():
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_loader_error_names_missing_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_policy(missing)


def test_loader_refuses_bare_tokenizer(family_model_dir, tmp_path, monkeypatch):
    import observe_r1.models as models

    monkeypatch.setattr(models.AutoProcessor, "from_pretrained", lambda *a, **k: object())
    with pytest.raises(RuntimeError, match="without an image processor"):
        load_policy(family_model_dir)


def test_cli_tiny_model(tmp_path):
    result = CliRunner().invoke(app, ["tiny-model", "--out", str(tmp_path / "m"), "--size", "tiny", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output
    assert (tmp_path / "m" / "config.json").is_file()


def test_cli_tiny_model_qwen3(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["tiny-model", "--out", str(tmp_path / "q3"), "--family", "qwen3-vl"])
    assert result.exit_code == 0, result.output
    assert "tiny qwen3-vl (" in result.output
    assert load_policy(tmp_path / "q3")[0].config.model_type == "qwen3_vl"
    result = runner.invoke(app, ["tiny-model", "--out", str(tmp_path / "x"), "--size", "qwen3-vl-2b", "--family",
                                 "qwen2.5-vl"])  # fmt: skip
    assert result.exit_code != 0 and "is a qwen3-vl shape" in result.output
    result = runner.invoke(app, ["tiny-model", "--out", str(tmp_path / "y"), "--family", "llava"])
    assert result.exit_code != 0 and "unknown family 'llava'" in result.output


def test_cli_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("tiny-model", "synth", "train", "eval", "compare", "ladder", "demo"):
        assert command in result.output


def test_every_cli_option_has_help():
    import typer.main

    def commands(group, prefix=""):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    missing = [f"{name} {param.name}" for name, command in commands(typer.main.get_command(app))
               for param in command.params if not getattr(param, "help", None) and param.name != "help"]  # fmt: skip
    assert missing == []
