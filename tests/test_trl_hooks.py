"""ObserveR1Trainer overrides private TRL hooks: fail loudly if TRL changes them."""

import inspect

import trl
from trl import GRPOTrainer


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
