"""Fast HF rollouts (issue #28, docs/gpu.md): a static KV cache and a compiled decoding step give the dynamic cache's
greedy tokens, compile a bounded number of times, and keep the training rollouts' rules (vision tokens suppressed,
EOS ends a completion); the loss's log-probs are the full model's on the completion positions."""

import pytest
import torch
from PIL import Image

from observe_r1.config import ConfigError, ObserveR1Config
from observe_r1.generation import Decoding, HFGenerator, compilations, make_generator
from observe_r1.models import VISION_TOKENS, load_policy
from observe_r1.synth import generate_items
from tests.helpers import ParityAccuracy, train_spied


def _records(n: int) -> list[dict]:
    """Prompts of different lengths (extra words) with images of different sizes (different image-token counts)."""
    out = []
    for i, item in enumerate(generate_items(n, seed=3)):
        image = Image.new("RGB", (56 + 28 * (i % 3), 56 + 28 * (i % 2)), (20 * i % 255, 100, 50))
        out.append({"problem": item["problem"] + " with more words" * (i % 4), "images": [image]})
    return out


def test_static_cache_gives_the_dynamic_caches_greedy_tokens(family_model_dir):
    model, processor = load_policy(family_model_dir)
    records = _records(8)
    dynamic = HFGenerator(model, processor, batch_size=4, max_new_tokens=16).generate(records)
    static = HFGenerator(model, processor, batch_size=4, max_new_tokens=16, decoding=Decoding("static", False))
    assert static.generate(records) == dynamic
    assert len({len(r["problem"]) for r in records}) > 1 and len({r["images"][0].size for r in records}) > 1


@pytest.mark.slow
def test_compiled_decoding_keeps_greedy_tokens_and_compiles_once(tiny_model_dir):
    model, processor = load_policy(tiny_model_dir)
    records = _records(12)
    expected = HFGenerator(model, processor, batch_size=4, max_new_tokens=16).generate(records)
    compiled = HFGenerator(model, processor, batch_size=4, max_new_tokens=16, decoding=Decoding("static", True))
    before = compilations()
    assert compiled.generate(records[:5]) == expected[:5]  # a short last batch is filled to the batch's shape
    warm = compilations()
    assert warm > before  # it did compile
    for start in (1, 2, 5):  # other prompt lengths (same 64-token bucket), other batches: nothing compiles again
        assert compiled.generate(records[start:]) == expected[start:]
    assert compilations() == warm


@pytest.mark.slow
def test_training_with_compiled_rollouts(tiny_model_dir, tmp_path):
    trainer, outputs, _, processor, moved = train_spied(tiny_model_dir, tmp_path, ParityAccuracy(), n=32,
                                                        max_steps=4, compile_generation=True)  # fmt: skip
    assert trainer.args.cache_implementation == "static" and trainer.args.pad_to_multiple_of == 64
    assert moved
    logged = [row["observe_r1/generation_compilations"] for row in trainer.state.log_history if
              "observe_r1/generation_compilations" in row]  # fmt: skip
    assert len(logged) == 4 and logged[0] >= 1 and len(set(logged)) == 1  # compiled at step 1, never again
    vision = set(processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS))
    eos = trainer.eos_token_ids
    for output in outputs:
        ids, mask = output["completion_ids"], output["completion_mask"].bool()
        assert not vision & set(ids[mask].tolist())  # sampled rollouts still never emit a vision token
        for row, row_mask in zip(ids, mask, strict=True):
            kept = row[row_mask].tolist()
            assert all(t not in eos for t in kept[:-1])  # a completion ends at its first EOS
        assert output["prompt_ids"].shape[1] % 64 == 0  # prompts padded to the bucket


@pytest.mark.parametrize(
    "cache, compile_, device, expected",
    [
        ("auto", None, "cpu", Decoding()),  # CPU: transformers' default
        ("auto", None, "cuda", Decoding("static", True)),  # CUDA: static cache, compiled decoding step
        ("static", None, "cpu", Decoding("static", False)),
        ("static", True, "cpu", Decoding("static", True)),
        ("dynamic", None, "cuda", Decoding()),
        ("auto", True, "cpu", Decoding("static", True)),  # asking to compile brings the static cache
        ("auto", False, "cuda", Decoding("static", False)),
    ],
)
def test_decoding_choices(cache, compile_, device, expected):
    assert Decoding.parse(cache, compile_, device) == expected


def test_decoding_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="needs cache_implementation 'static'"):
        Decoding.parse("dynamic", True, "cpu")
    with pytest.raises(ValueError, match="dynamic, static or auto"):
        Decoding.parse("paged", None, "cpu")
    with pytest.raises(ValueError, match="compile_generation needs cache_implementation 'static'"):
        ObserveR1Config(output_dir="/tmp/x", use_cpu=True, bf16=False, compile_generation=True,
                        cache_implementation="dynamic")  # fmt: skip
    config = ObserveR1Config(output_dir="/tmp/x", use_cpu=True, bf16=False, compile_generation=True)
    assert config.cache_implementation == "static" and config.pad_to_multiple_of == 64
    # before any model is loaded: a model that does not exist is not even looked for
    with pytest.raises(ConfigError, match="needs cache_implementation 'static'"):
        make_generator("/nonexistent/model", cache_implementation="dynamic", compile_generation=True)


def test_loss_logprobs_equal_the_full_models_on_completion_positions(tiny_model_dir, tmp_path):
    trainer, outputs, _, _, _ = train_spied(tiny_model_dir, tmp_path, ParityAccuracy(), max_steps=1)
    output = outputs[0]
    input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    keep = output["completion_ids"].shape[1]
    fields = ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")
    extra = {k: output[k] for k in fields if k in output}
    model = trainer.model.eval()
    with torch.no_grad():
        fused, _, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, keep, **extra)
        inputs = {k: v for k, v in extra.items() if k != "num_images"}
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **inputs).logits[:, -keep - 1 : -1]
    reference = torch.log_softmax(logits.float() / trainer.temperature, -1)
    reference = reference.gather(-1, output["completion_ids"][..., None]).squeeze(-1)
    mask = output["completion_mask"].bool()
    assert fused.shape == output["completion_ids"].shape
    assert torch.allclose(fused[mask], reference[mask], atol=1e-5)
