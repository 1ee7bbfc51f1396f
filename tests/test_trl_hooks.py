"""ObserveR1Trainer overrides private TRL hooks: fail loudly if TRL changes them."""

import inspect
import re

import trl
from trl import GRPOTrainer

from observe_r1.dynamic import COMPLETION_SIDE, PER_IMAGE, PER_ROW, PROMPT_SIDE, REBUILT


def test_trl_version_is_the_pinned_one():
    assert trl.__version__ == "1.16.0", "ObserveR1Trainer was written against TRL 1.16.0: re-check the hooks"


def test_calculate_rewards_signature():
    params = list(inspect.signature(GRPOTrainer._calculate_rewards).parameters)
    assert params == ["self", "inputs", "prompts", "completions", "completion_ids_list"]


def test_generate_and_score_signature():
    params = list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters)
    assert params == ["self", "inputs"]


def test_trl_slices_gathered_advantages_by_process_index():
    # our override slices the gathered advantages the same way; check TRL still does it like this
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in source
    assert "self.accelerator.process_index * len(prompts)" in source
    assert '"advantages": advantages' in source


def test_forward_hook_signature_and_image_pad_ids():
    # ObserveR1Trainer rebuilds mm_token_type_ids here (huggingface/trl#5785); every forward goes through it
    params = list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)
    assert params[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    assert "mm_token_type_ids" in params
    source = inspect.getsource(GRPOTrainer.__init__)
    assert "self._image_pad_token_id" in source and "self._video_pad_token_id" in source
    loss_source = inspect.getsource(GRPOTrainer._compute_loss)
    assert "self._get_per_token_logps_and_entropies(" in loss_source


def test_dynamic_sampling_relies_on_these_trl_internals():
    # ObserveR1Trainer saves/loads its prompt cursor next to TRL's own checkpoint extras, regroups TRL's
    # generation outputs by key, and knows where a generation block starts from TRL's micro-step counter.
    assert list(inspect.signature(GRPOTrainer._save_checkpoint).parameters) == ["self", "model", "trial"]
    assert list(inspect.signature(GRPOTrainer._load_optimizer_and_scheduler).parameters) == ["self", "checkpoint"]
    prepare = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "self._step % generate_every == 0" in prepare
    assert "generation_batch = self._generate_and_score_completions(generation_batch)" in prepare
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    keys = set(re.findall(r'output\["(\w+)"\] =', source)) | set(re.findall(r'^\s+"(\w+)": \w+,$', source, re.M))
    known = set(PROMPT_SIDE) | set(COMPLETION_SIDE) | PER_ROW | PER_IMAGE | REBUILT
    # every output key TRL can produce is either regrouped or refused by name (split_rows raises for the rest)
    assert {"prompt_ids", "completion_ids", "advantages", "pixel_values", "image_grid_thw", "num_images"} <= keys
    assert keys - known <= {"pixel_attention_mask", "spatial_shapes", "image_sizes", "token_type_ids",
                            "image_position_ids", "num_tiles"}  # fmt: skip
    loader = inspect.getsource(GRPOTrainer.get_train_dataloader)
    assert "dataset = self.train_dataset" in loader


def test_checkpoint_hooks_rely_on_these_trainer_internals():
    # ObserveR1Trainer loads full-model checkpoints itself (huggingface/transformers#43701), writes a completion
    # marker after Trainer's save and rotates only then (it hides save_total_limit from Trainer's own rotation)
    from transformers import Trainer

    assert list(inspect.signature(Trainer._load_from_checkpoint).parameters) == ["self", "resume_from_checkpoint",
                                                                                 "model"]  # fmt: skip
    save = inspect.getsource(Trainer._save_checkpoint)
    assert "save_total_limit=self.args.save_total_limit" in save and "rotate_checkpoints(" in save
    # compiled rollouts: TRL's HF generation path keeps its GenerationConfig on self.generation_config
    assert "self.generation_config = GenerationConfig(**generation_kwargs, disable_compile=True)" in inspect.getsource(
        GRPOTrainer.__init__
    )
