"""``ObserveR1Trainer``: TRL's ``GRPOTrainer`` with the Observe-R1 advantages (docs/method.md §4-§5). Launch::

    observe-r1 train --config recipes/tiny_cpu.yaml --max_steps 20
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m observe_r1.cli train \
        --config recipes/observe_r1_qwen2_5_vl_3b.yaml
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import gather, gather_object
from datasets import Dataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

from observe_r1 import checkpoints
from observe_r1.algo import group_advantages
from observe_r1.checkpoints import allow_indexed_cpu_location, finish_checkpoint, is_full_model_dir, load_full_weights
from observe_r1.dynamic import PromptCursor, RefillStep, gather_trained_rows
from observe_r1.generation import compilations, compile_config, suppress_vision_tokens
from observe_r1.jsonl import append_jsonl
from observe_r1.lora import freeze_parts, is_adapter_dir, lora_config, record_base
from observe_r1.metrics import OURS, GroupBatch, group_metrics, reward_stat_metrics, sampling_metrics
from observe_r1.models import image_token_types
from observe_r1.pace import training_cursor
from observe_r1.packing import packed_logps_and_entropies
from observe_r1.rewards import AccuracyReward, FormatReward


class ObserveR1Trainer(GRPOTrainer):
    """GRPO with the shortest-correct bonus and the dynamic weight, computed on whole (gathered) groups.

    Each override of a pinned, private TRL method calls ``super()`` and does one thing (docs/method.md lists them;
    ``tests/test_trl_hooks.py`` checks their signatures). With dynamic sampling or the paced ladder, prompts come
    from a cursor (``pace.training_cursor``). ``args.use_peft`` builds a LoRA config unless ``peft_config`` is given.
    """

    def __init__(self, model, args, reward_funcs=None, *, consumed_log: str | Path | None = None, **kwargs):
        """``reward_funcs`` default to the accuracy and format rewards, weighted by name (``args.weights_of``).
        ``consumed_log``: a JSONL file that gets, per training step, the ids of the prompts trained on."""
        if reward_funcs is None:
            reward_funcs = [AccuracyReward(args.reward_workers, args.reward_timeout), FormatReward()]
        processor = kwargs.get("processing_class")
        if processor is not None and not args.use_vllm:
            args = suppress_vision_tokens(args, processor)
        if processor is not None and hasattr(processor, "tokenizer"):
            processor.tokenizer.padding_side = "left"  # TRL's prompt_ids are left-padded; keep its side-paths so too
        if args.use_peft and kwargs.get("peft_config") is None:
            kwargs["peft_config"] = lora_config(args, model)
        super().__init__(model=model, args=args, reward_funcs=reward_funcs, **kwargs)
        if args.compile_generation and not args.use_vllm:  # TRL builds its GenerationConfig with compile disabled
            self.generation_config.disable_compile, self.generation_config.compile_config = False, compile_config()
        if args.freeze_vision_tower or args.freeze_merger:  # after TRL's PEFT wrapping, before the optimizer exists
            freeze_parts(self.model, vision_tower=args.freeze_vision_tower, merger=args.freeze_merger)
        self.reward_weights = torch.tensor(args.weights_of(self.reward_func_names), dtype=torch.float32)
        self._accuracy_index = self.reward_func_names.index("accuracy")
        self._gathered_lengths = self._gathered_rewards = None  # set by _calculate_rewards, read right after
        self.consumed_log = Path(consumed_log) if consumed_log else None
        self._cursor: PromptCursor | None = training_cursor(self.train_dataset, args)  # None: TRL's data loader
        self._cursor_at_generation = self._cursor.state_dict() if self._cursor is not None else None

    def _generate(self, prompts):
        # In training mode, gradient checkpointing drops the KV cache (each token recomputes the prefix): use eval mode
        training = self.model.training
        self.model.eval()
        try:
            return super()._generate(prompts)
        finally:
            self.model.train(training)
            if self.args.compile_generation:  # stays constant after warm-up when shapes are bounded
                self._metrics["train" if training else "eval"][OURS + "generation_compilations"].append(compilations())

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        if kwargs.get("mm_token_type_ids") is not None and self._image_pad_token_id is not None:
            image_ids = (self._image_pad_token_id, self._video_pad_token_id)
            kwargs["mm_token_type_ids"] = image_token_types(input_ids, *image_ids)
        if self.args.padding_free:  # one row per micro-batch, exact M-RoPE positions (observe_r1.packing)
            return packed_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args,
                                              autocast=self.accelerator.autocast, **kwargs)  # fmt: skip
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args,
                                                          **kwargs)  # fmt: skip

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=rewards_per_func.device)
        self._gathered_lengths = gather(lengths)
        self._gathered_rewards = rewards_per_func
        self._reward_stats = reward_stat_metrics(rewards_per_func.device)  # every process calls this
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self._cursor is not None and self.model.training:
            return self._generate_with_refills(len(inputs))
        output, groups = self._generate_round(inputs)
        self._log_groups("train" if self.model.training else "eval", groups)
        if self.model.training:
            self._log_consumed(ids=groups.group_ids())
        return output

    def _generate_round(self, inputs) -> tuple[dict, GroupBatch]:
        """TRL's generation and scoring of ``inputs`` (this process's rows) with the Observe-R1 advantages of the
        whole gathered groups; returns the output (this process's slice) and the gathered groups."""
        output = super()._generate_and_score_completions(inputs)
        G = self.num_generations if self.model.training else self.num_generations_eval
        rewards_per_func = self._gathered_rewards
        correct = (rewards_per_func[:, self._accuracy_index] > 0.5).view(-1, G)
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1).view(-1, G)
        lengths = self._gathered_lengths.view(-1, G)
        result = group_advantages(rewards, correct, lengths, **self.args.advantage_options())
        start = self.accelerator.process_index * len(inputs)  # this process's slice, as TRL slices
        output["advantages"] = result.advantages.flatten()[start : start + len(inputs)].to(output["advantages"].dtype)
        sources = gather_object([(x.get("id"), x.get("row", -1), x.get("difficulty", -1.0)) for x in inputs])
        return output, GroupBatch(result, correct, rewards_per_func, lengths, sources)

    def _generate_with_refills(self, local: int) -> dict:
        """Generation rounds for the cursor's next prompts (:class:`RefillStep`) until the step has its informative
        groups (one round without dynamic sampling); returns this process's rows of the trained groups."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        rounds_allowed = self.args.max_generation_rounds if self.args.dynamic_sampling else 1
        step = RefillStep(self._cursor, local * world // self.num_generations, self.num_generations, world,
                          rounds_allowed)  # fmt: skip
        self._cursor_at_generation = self._cursor.state_dict()
        outputs, rounds = [], []
        while (prompts := step.next_prompts()) is not None:
            output, groups = self._generate_round([self.train_dataset[i] for i in step.local_rows(prompts, rank)])
            outputs.append(output)
            rounds.append(groups)
            step.record(groups.informative().tolist())
            self._cursor.record(prompts, groups.result.pass_rate.tolist())  # a paced cursor may skip ahead
        trained, dropped, surplus = step.select()
        image_ids = (self._image_pad_token_id, self._video_pad_token_id) if "mm_token_type_ids" in outputs[0] else None
        merged = gather_trained_rows(self.accelerator, outputs, step.placement(trained), local,
                                     self._tokenizer.pad_token_id, image_ids)  # fmt: skip
        generated = GroupBatch.cat(rounds)
        self._log_groups("train", generated.take(step.group_index(trained)), generated, rounds=len(rounds))
        for key, value in self._cursor.metrics().items():
            self._metrics["train"][OURS + key].append(value)
        ids = generated.group_ids()
        trained, dropped, surplus = ([ids[i] for i in step.group_index(p)] for p in (trained, dropped, surplus))
        self._log_consumed(ids=trained, dropped=dropped, surplus=surplus, skipped=self._cursor.pop_skipped())
        if not self._cursor.can_take(step.target, new_epoch=True):
            self.control.should_training_stop = True  # num_train_epochs passes over the prompts are done
        return merged

    def _log_groups(self, mode: str, groups: GroupBatch, generated: GroupBatch | None = None, rounds: int = 1):
        """The Observe-R1 metrics of the trained ``groups`` (and, in training, the sampling metrics)."""
        size = len(self.train_dataset) if self.train_dataset is not None else None
        values = group_metrics(groups, self.reward_func_names, size) | self._reward_stats
        if mode == "train":
            values |= sampling_metrics(generated=generated or groups, trained=groups, rounds=rounds)
        for key, value in values.items():
            self._metrics[mode][key].append(value)

    def _log_consumed(self, **lists: list | None) -> None:
        """One line of ``consumed.jsonl``: the prompt ids this step trained on (``ids``) and, with a cursor, those it
        generated for and ``dropped`` (no signal), left over (``surplus``) or ``skipped`` (a mastered level)."""
        if self.consumed_log is not None and self.accelerator.is_main_process:
            lists = {key: value for key, value in lists.items() if value is not None}
            append_jsonl(self.consumed_log, [{"step": self.state.global_step, **lists}])

    def get_train_dataloader(self):
        """With a cursor (dynamic sampling, paced curriculum), prompts come from :class:`PromptCursor`; the data
        loader only paces the steps (it yields row numbers, so no image is decoded twice)."""
        if self._cursor is None:
            return super().get_train_dataloader()
        dataset = self.train_dataset
        self.train_dataset = Dataset.from_dict({"ticket": list(range(len(dataset)))})
        try:
            return super().get_train_dataloader()
        finally:
            self.train_dataset = dataset

    def _save_checkpoint(self, model, trial):
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotate once this one is complete
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and is_adapter_dir(folder):
            record_base(folder)  # a LoRA checkpoint loads (eval, merge) from any working directory
        if self._cursor is not None and self.args.should_save:
            # At a step boundary inside a generation block (num_iterations > 1) the block is generated again on
            # resume, so the cursor goes back to where that generation started.
            generate_every = self.args.steps_per_generation * self.num_iterations
            state = self._cursor.state_dict() if self._step % generate_every == 0 else self._cursor_at_generation
            self._cursor.save(folder, state)
        finish_checkpoint(self.accelerator, folder, self.args.should_save, limit, self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # TRL/transformers load a full model with strict=False and no key conversion (huggingface/transformers#43701)
        model = self.model if model is None else model
        if is_full_model_dir(resume_from_checkpoint) and not (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            load_full_weights(model, resume_from_checkpoint)  # refuses a checkpoint that leaves a weight unloaded
        else:  # LoRA adapters (PEFT's loader), FSDP (sharded or full, as written) and DeepSpeed shards
            checkpoints.check_fsdp_checkpoint(model, resume_from_checkpoint)  # no weight left silently unloaded
            with checkpoints.reading_fsdp_layout(self.accelerator, resume_from_checkpoint):
                super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if self.args.world_size > 1 and self.args.device.type == "cpu":
            allow_indexed_cpu_location()  # Trainer maps the optimizer state to args.device, cpu:N here
        with checkpoints.reading_fsdp_layout(self.accelerator, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
        if self._cursor is not None and checkpoint is not None:
            self._cursor.load(checkpoint)
