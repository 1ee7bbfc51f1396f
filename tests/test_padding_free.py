"""Padding-free loss-side forwards (observe_r1.packing, docs/padding_free.md): the packed path equals TRL's padded
one, its guard refuses the wrong variants, and training packed ends where training padded does.

Tolerances (fp32, tiny model): per-token log-probs and entropies 1e-5 absolute (measured 4.8e-7), gradients 1e-5
relative to the largest gradient entry (measured 1.2e-6 absolute at a largest entry of 6.4); parameters after 2
training steps at lr 1e-2 within 2e-4 (measured 4.6e-5: Adam divides by sqrt(v), so rounding in a near-zero
gradient moves a weight by a visible fraction of the learning rate).
"""

import pytest
import torch
from PIL import Image

from observe_r1.config import ConfigError
from observe_r1.models import load_policy
from observe_r1.packing import check_packed_inputs, pack, packed_logps_and_entropies, rope_index, unpack
from observe_r1.trainer import ObserveR1Trainer
from tests.helpers import ImagePositionCheck, ParityAccuracy, synth_dataset, tiny_config

ATOL = 1e-5
# (width, height) of each row's image and its completion length: different image grids, prompt and completion lengths
ROWS = [((56, 56), 3), ((224, 112), 9), ((112, 168), 1), ((168, 224), 6)]


def _batch(processor, rows=ROWS, seed=0, pad_to=10):
    """A padded batch as TRL builds it: left-padded prompts with one image each, right-padded random completions."""
    rng = torch.Generator().manual_seed(seed)
    images = [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=rng, dtype=torch.uint8).numpy())
              for (w, h), _ in rows]  # fmt: skip
    message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many sides?"}]}]
    text = processor.apply_chat_template(message, add_generation_prompt=True)
    processor.tokenizer.padding_side = "left"
    prompt = processor(text=[text] * len(rows), images=[[im] for im in images], return_tensors="pt", padding=True)
    first_plain = max(processor.tokenizer.all_special_ids) + 1
    completion = torch.randint(first_plain, len(processor.tokenizer), (len(rows), pad_to), generator=rng)
    completion_mask = (torch.arange(pad_to)[None] < torch.tensor([n for _, n in rows])[:, None]).long()
    completion = completion.masked_fill(completion_mask == 0, processor.tokenizer.pad_token_id)
    return {
        "input_ids": torch.cat([prompt["input_ids"], completion], 1),
        "attention_mask": torch.cat([prompt["attention_mask"], completion_mask], 1),
        "logits_to_keep": pad_to,
        "pixel_values": prompt["pixel_values"],
        "image_grid_thw": prompt["image_grid_thw"],
        "num_images": [1] * len(rows),
        "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(completion)], 1),
    }


def _trainer(model_dir, tmp_path, **overrides):
    model, processor = load_policy(model_dir)
    _, dataset = synth_dataset(tmp_path, n=4)
    args = tiny_config(tmp_path / "out", temperature=0.7, **overrides)  # the fused head divides by it
    trainer = ObserveR1Trainer(model=model, args=args, reward_funcs=[ParityAccuracy()], train_dataset=dataset,
                               processing_class=processor)  # fmt: skip
    return trainer, processor


def _logps(trainer, batch, padding_free, batch_size=None):
    """``(logps, entropies, {name: grad})`` of one loss-side forward and a backward of a weighted sum."""
    trainer.args.padding_free = padding_free
    trainer.model.zero_grad()
    b = dict(batch)
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, b.pop("input_ids"), b.pop("attention_mask"), b.pop("logits_to_keep"), batch_size=batch_size,
        compute_entropy=True, **b)  # fmt: skip
    weights = torch.linspace(-1, 1, logps.numel()).view_as(logps)
    ((logps * weights).sum() + entropies.sum()).backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), grads


def _assert_same(padded, packed, mask):
    (lp, ep, gp), (lq, eq, gq) = padded, packed
    assert lq.shape == lp.shape and eq.shape == ep.shape
    assert torch.equal(lq[mask == 0], torch.zeros_like(lq[mask == 0]))  # padding scores 0, as in TRL
    assert (lq - lp).abs().max() < ATOL and (eq - ep).abs().max() < ATOL
    assert gp.keys() == gq.keys() and len(gp) > 0
    scale = max(g.abs().max() for g in gp.values())
    assert max((gp[n] - gq[n]).abs().max() for n in gp) < ATOL * scale


@pytest.fixture(scope="module", params=["qwen2.5-vl", "qwen3-vl"])
def trainer_and_batch(request, tmp_path_factory):
    """A trainer on each family's tiny model (Qwen3-VL: deepstack features enter the first layers at the image
    tokens of the packed row) and a padded batch of 4 rows."""
    model_dir = request.getfixturevalue("tiny_model_dir" if request.param == "qwen2.5-vl" else "tiny_qwen3_dir")
    trainer, processor = _trainer(model_dir, tmp_path_factory.mktemp("pf"))
    return trainer, processor, _batch(processor)


@pytest.mark.parametrize("batch_size", [None, 3], ids=["one_chunk", "chunks_of_3"])
def test_packed_logps_entropies_and_gradients_equal_padded(trainer_and_batch, batch_size):
    trainer, processor, batch = trainer_and_batch
    assert len(set(batch["image_grid_thw"].prod(-1).tolist())) == len(ROWS)  # every row a different image size
    padded = _logps(trainer, batch, False, batch_size)
    packed = _logps(trainer, batch, True, batch_size)
    _assert_same(padded, packed, batch["attention_mask"][:, -batch["logits_to_keep"] :])
    assert padded[0].abs().sum() > 0 and padded[1].abs().sum() > 0


def test_image_marks_hold_on_the_packed_forward(trainer_and_batch):
    """The forward hook of test_image_positions sees the packed row: image marks on the image tokens, and each
    sequence (row 0 restarting at 0) holds as many image tokens as its image has merged patches."""
    trainer, processor, batch = trainer_and_batch
    check = PackedImageCheck(trainer.model, processor)
    try:
        _logps(trainer, batch, True)
    finally:
        check.handle.remove()
    assert check.forwards == 1 and check.misaligned == [0]
    merge = processor.image_processor.merge_size**2
    assert check.per_sequence == [(batch["image_grid_thw"].prod(-1) // merge).tolist()]


class PackedImageCheck(ImagePositionCheck):
    """:class:`ImagePositionCheck` plus, on a packed row, the image-token count of each sequence."""

    def __init__(self, model, processor):
        super().__init__(model, processor)
        self.per_sequence: list[list[int]] = []

    def __call__(self, module, args, kwargs):
        super().__call__(module, args, kwargs)
        positions = kwargs.get("position_ids")
        if positions is not None and positions.shape[0] == 4:
            sequence = torch.cumsum(positions[0, 0] == 0, 0) - 1
            pads = (kwargs["input_ids"][0] == self.pad_id).long()
            self.per_sequence.append(torch.zeros(int(sequence.max()) + 1, dtype=torch.long)
                                     .index_add(0, sequence, pads).tolist())  # fmt: skip


def _packed_inputs(trainer, batch):
    """The inputs of one packed forward, built as the trainer builds them, and the sequence lengths."""
    mask, types = batch["attention_mask"], batch["mm_token_type_ids"]
    rope = rope_index(trainer.model)(batch["input_ids"], mm_token_type_ids=types,
                                     image_grid_thw=batch["image_grid_thw"], attention_mask=mask)[0]  # fmt: skip
    packed = pack(batch["input_ids"], mask, batch["logits_to_keep"], rope, types)
    vision = {"pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}
    return {**packed, **vision, "use_cache": False}, mask.sum(1)


def _wrong(inputs, variant):
    positions = inputs["position_ids"]
    if variant == "1d_rope_rows":  # M-RoPE rows replaced by the per-sequence text position
        return {**inputs, "position_ids": positions[:1].expand(4, -1, -1).clone()}
    if variant == "no_text_row":  # the model's 3 rows only: no sequence boundaries
        return {**inputs, "position_ids": positions[1:]}
    if variant == "global_text_row":  # text positions running on across sequences
        return {**inputs, "position_ids": torch.cat([torch.arange(positions.shape[-1]).view(1, 1, -1), positions[1:]])}
    if variant == "cache_on":
        return {**inputs, "use_cache": True}
    if variant == "attention_mask":
        return {**inputs, "attention_mask": torch.ones_like(inputs["input_ids"])}
    raise AssertionError(variant)


VARIANTS = ["1d_rope_rows", "no_text_row", "global_text_row", "cache_on", "attention_mask"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_guard_refuses_the_wrong_variants(trainer_and_batch, variant):
    trainer, _, batch = trainer_and_batch
    inputs, lengths = _packed_inputs(trainer, batch)
    check_packed_inputs(inputs, lengths)  # the right inputs pass
    with pytest.raises(ValueError, match="packed"):
        check_packed_inputs(_wrong(inputs, variant), lengths)


@pytest.mark.parametrize("variant", ["1d_rope_rows", "no_text_row", "global_text_row"])
def test_the_wrong_variants_run_and_give_wrong_logps(trainer_and_batch, variant):
    """Why the guard exists: unguarded, each variant runs without an error and returns wrong log-probs."""
    trainer, _, batch = trainer_and_batch
    inputs, _ = _packed_inputs(trainer, batch)
    mask, keep = batch["attention_mask"], batch["logits_to_keep"]
    padded = _logps(trainer, batch, False)[0]
    with torch.no_grad():
        right = unpack(trainer.model(**inputs, fused_lm_head=True).log_probs, mask, keep)
        wrong = unpack(trainer.model(**_wrong(inputs, variant), fused_lm_head=True).log_probs, mask, keep)
    assert (right - padded).abs().max() < ATOL
    assert (wrong - padded).abs().max() > 1e-3


def test_a_model_without_rope_index_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="padding_free false"):
        rope_index(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="image_sizes"):
        packed_logps_and_entropies(torch.nn.Linear(2, 2), torch.ones(1, 3), torch.ones(1, 3), 1,
                                   image_sizes=torch.ones(1, 2))  # fmt: skip


def test_unpack_puts_each_sequence_back_at_its_padded_place():
    # two sequences: [p p c c] with one left pad and [p c] with two left pads and one right pad
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 0]])
    # fused-head values of the packed row (N = 6 tokens -> 5 values); value j scores packed token j + 1
    values = torch.tensor([[10.0, 11.0, 12.0, 13.0, 14.0]])
    # completion = last 2 columns: row 0 tokens at packed 2, 3 -> values 11, 12; row 1 token at packed 5 -> 14
    assert unpack(values, mask, 2).tolist() == [[11.0, 12.0], [14.0, 0.0]]
    packed = pack(torch.arange(10).view(2, 5), mask, 2)
    assert packed["input_ids"].tolist() == [[1, 2, 3, 4, 7, 8]]
    assert packed["position_ids"][:, 0].tolist() == [[0, 1, 2, 3, 0, 1]] * 4
    assert packed["labels"].tolist() == [[-100, -100, 3, 4, -100, 8]]


@pytest.mark.parametrize(
    "overrides",
    [{"use_peft": True, "lora_dropout": 0.0}, {"freeze_vision_tower": True}, {"gradient_checkpointing": True}],
    ids=["lora", "frozen_tower", "gradient_checkpointing"],
)
def test_packed_equals_padded_with_lora_frozen_tower_and_checkpointing(tiny_model_dir, tmp_path, overrides):
    trainer, processor = _trainer(tiny_model_dir, tmp_path, **overrides)
    if overrides.get("gradient_checkpointing"):
        trainer.model.gradient_checkpointing_enable()
    trainer.model.train()
    batch = _batch(processor, ROWS[:3], seed=1)
    padded, packed = _logps(trainer, batch, False), _logps(trainer, batch, True)
    _assert_same(padded, packed, batch["attention_mask"][:, -batch["logits_to_keep"] :])
    if overrides.get("freeze_vision_tower"):
        assert not any("visual.blocks" in n for n in packed[2])
    if overrides.get("use_peft"):
        assert all("lora_" in n for n in packed[2])
    # the reference model under LoRA: the same forward with the adapter disabled
    if overrides.get("use_peft"):
        with trainer.model.disable_adapter(), torch.no_grad():
            trainer.args.padding_free = True
            b = dict(batch)
            ref, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, b.pop("input_ids"),
                                                                   b.pop("attention_mask"), b.pop("logits_to_keep"),
                                                                   **b)  # fmt: skip
        assert (ref - packed[0]).abs().max() < ATOL  # LoRA's B starts at zero: the base model's log-probs


def test_training_packed_ends_where_training_padded_does(tiny_model_dir, tmp_path):
    """2 steps with old and reference log-probs (beta > 0, two iterations per generation): every forward the loss
    sees is packed, and the parameters end within 1e-4 of the padded run's."""
    ends, forwards = {}, {}
    for padding_free in (False, True):
        torch.manual_seed(0)
        trainer, processor = _trainer(tiny_model_dir, tmp_path / str(padding_free), padding_free=padding_free,
                                      beta=0.04, num_iterations=2, steps_per_generation=2,
                                      per_device_train_batch_size=4, max_steps=2)  # fmt: skip
        seen = []  # per loss-side forward (TRL's fused head), policy and reference model: was it packed?

        def record(module, args, kwargs, seen=seen):
            if kwargs.get("fused_lm_head"):
                seen.append(kwargs.get("attention_mask") is None)

        handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in (trainer.model, trainer.ref_model)]
        trainer.train()
        for handle in handles:
            handle.remove()
        ends[padding_free] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        forwards[padding_free] = seen
    # one generation of 8 rows: old and reference log-probs in 2 chunks of 4 each, then 2 loss forwards
    assert len(forwards[True]) == 6 and all(forwards[True]) and not any(forwards[False])
    start = {n: p.detach() for n, p in load_policy(tiny_model_dir)[0].named_parameters()}
    assert max((ends[True][n] - start[n]).abs().max() for n in start) > 1e-3  # it trained (lr 1e-2)
    assert max((ends[True][n] - ends[False][n]).abs().max() for n in start) < 2e-4  # measured 4.6e-5


def test_the_trl_internals_the_packed_path_mirrors():
    """packed_logps_and_entropies takes TRL's arguments by name, and unpack relies on the fused head scoring token
    j + 1 at position j (labels shifted by one, all in one row)."""
    import inspect

    from trl import GRPOTrainer
    from trl.trainer import utils

    ours = set(inspect.signature(packed_logps_and_entropies).parameters)
    trl = list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)[1:]
    assert {"batch_size", "compute_entropy", "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images",
            "mm_token_type_ids"} <= ours & set(trl)  # fmt: skip
    fused = inspect.getsource(utils.add_fused_lm_head)
    assert "hidden_states = backbone_outputs.last_hidden_state[:, :-1]" in fused and "labels = labels[:, 1:]" in fused


def test_per_sequence_sdpa_equals_transformers_masked_packed_row(trainer_and_batch):
    """On sdpa the packed forward attends per sequence (no N x N mask); transformers' own block-diagonal mask on
    the same packed row gives the same log-probs, and a padded forward after the switch is plain sdpa."""
    from observe_r1.packing import PER_SEQUENCE_SDPA

    trainer, _, batch = trainer_and_batch
    per_sequence = _logps(trainer, batch, True)[0]
    text_config = trainer.model.config.get_text_config()
    assert text_config._attn_implementation == PER_SEQUENCE_SDPA
    assert PER_SEQUENCE_SDPA not in trainer.model.config.to_json_string()  # checkpoints load without observe_r1
    inputs, _ = _packed_inputs(trainer, batch)
    mask, keep = batch["attention_mask"], batch["logits_to_keep"]
    try:
        text_config._attn_implementation = "sdpa"
        with torch.no_grad():
            masked = unpack(trainer.model(**inputs, fused_lm_head=True).log_probs, mask, keep)
    finally:
        text_config._attn_implementation = PER_SEQUENCE_SDPA
    assert (masked - per_sequence).abs().max() < ATOL and masked.abs().sum() > 0
    assert (_logps(trainer, batch, False)[0] - per_sequence).abs().max() < ATOL  # the padded path, after the switch


def test_dynamic_sampling_trains_the_same_groups_packed(tiny_model_dir, tmp_path):
    """Dynamic sampling regroups rows of several generation rounds before the update: packed, the same prompts are
    trained (advantages do not depend on the layout) and the parameters end where the padded run's do."""
    from observe_r1.jsonl import read_jsonl
    from tests.helpers import ScriptedGroups, train_spied

    runs = {}
    for padding_free in (False, True):
        torch.manual_seed(0)
        out = tmp_path / str(padding_free)
        trainer, *_ = train_spied(tiny_model_dir, out, ScriptedGroups({0, 3}), max_steps=2, dynamic_sampling=True,
                                  padding_free=padding_free)  # fmt: skip
        consumed = read_jsonl(out / "out" / "consumed.jsonl")
        runs[padding_free] = consumed, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert runs[True][0] == runs[False][0] and runs[True][0][0]["dropped"]  # a refill happened
    ends = runs[True][1], runs[False][1]
    assert max((ends[0][n] - ends[1][n]).abs().max() for n in ends[0]) < 2e-4
