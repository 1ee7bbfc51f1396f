"""``ObserveR1Trainer``: TRL's ``GRPOTrainer`` with the Observe-R1 advantages (docs/method.md §4-§5).

Launch (the same code on a laptop and a cluster)::

    observe-r1 train --config recipes/tiny_cpu.yaml --max_steps 20
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m observe_r1.cli train \
        --config recipes/observe_r1_qwen2_5_vl_3b.yaml
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from accelerate.utils import gather, gather_object
from datasets import Dataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import GRPOTrainer

from observe_r1.algo import group_advantages
from observe_r1.checkpoints import allow_indexed_cpu_location, is_full_model_dir, load_full_weights, mark_complete
from observe_r1.dynamic import PacedCursor, PromptCursor, RefillStep, gather_trained_rows
from observe_r1.generation import compilations, compile_config
from observe_r1.jsonl import append_jsonl
from observe_r1.lora import freeze_parts, is_adapter_dir, lora_config, record_base
from observe_r1.mathpool import REWARD_STATS
from observe_r1.metrics import OURS, REWARD_STAT_KEYS, GroupBatch, group_metrics, reward_stat_metrics, sampling_metrics
from observe_r1.models import VISION_TOKENS, image_token_types
from observe_r1.rewards import AccuracyReward, FormatReward


def suppress_vision_tokens(args, processor):
    """A copy of ``args`` whose generation never samples a vision token: TRL suppresses only ``<|image_pad|>``,
    and a sampled ``<|vision_start|>`` or ``<|video_pad|>`` breaks the next forward."""
    vision_ids = [i for i in processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS) if i is not None]
    generation_kwargs = dict(args.generation_kwargs or {})
    suppressed = set(generation_kwargs.get("suppress_tokens") or []) | set(vision_ids)
    generation_kwargs["suppress_tokens"] = sorted(suppressed)
    args = copy.copy(args)  # the caller's config stays as it was
    args.generation_kwargs = generation_kwargs
    return args


class ObserveR1Trainer(GRPOTrainer):
    """GRPO with the shortest-correct bonus and the dynamic weight, computed on whole (gathered) groups.

    Four private methods of TRL are overridden, each calling ``super()`` (the TRL version is pinned, and
    ``tests/test_trl_hooks.py`` checks their signatures and the keys used here):

    * ``_calculate_rewards`` returns the rewards gathered from all processes (rank-major, groups contiguous);
      the override also gathers each completion's length, in the same order, for the bonus.
    * ``_generate_and_score_completions`` computes TRL's outputs; the override replaces ``advantages`` with
      ``group_advantages`` on the gathered batch, then keeps this process's slice, exactly as TRL slices.
    * ``_get_per_token_logps_and_entropies`` (every forward) rebuilds ``mm_token_type_ids`` from its ``input_ids``:
      TRL 1.16 pads them on the tokenizer's side, its ``prompt_ids`` on the left (huggingface/trl#5785), which
      shifted image positions of shorter prompts onto text (or crashed the rope index on mixed image sizes).
    * ``_generate`` generates in eval mode: in training mode, gradient checkpointing drops the KV cache.

    Correctness (for the bonus and the pass rate) is the accuracy reward, never the weighted total.

    Checkpoints (docs/resume.md): ``_save_checkpoint`` writes a completion marker last and rotates only then;
    ``_load_from_checkpoint`` restores a full model through ``observe_r1.checkpoints.load_full_weights`` (key
    conversion, every weight found); ``_load_optimizer_and_scheduler`` also restores the prompt cursor.

    With ``dynamic_sampling`` (docs/dynamic_sampling.md) prompts come from a :class:`PromptCursor`; a step loops
    over a :class:`RefillStep`'s rounds and trains on the groups it selects. The cursor is saved in checkpoints
    (``_save_checkpoint``) and restored where TRL restores its own extras (``_load_optimizer_and_scheduler``).

    ``args.use_peft`` hands TRL a LoRA config built from ``args`` (``observe_r1.lora.lora_config``) unless the
    caller passes ``peft_config``; ``args.freeze_vision_tower`` / ``freeze_merger`` stop those parts' gradients.
    """

    def __init__(self, model, args, reward_funcs=None, *, consumed_log: str | Path | None = None, **kwargs):
        """``reward_funcs`` default to the accuracy and format rewards; each function's weight comes from its name
        (``accuracy`` → ``args.accuracy_weight``, ``format`` → ``args.format_weight``, any other name → 1.0).
        ``consumed_log``: a JSONL file that gets, per training step, the ids of the prompts trained on."""
        if reward_funcs is None:
            reward_funcs = [AccuracyReward(args.reward_workers, args.reward_timeout), FormatReward()]
        processor = kwargs.get("processing_class")
        if processor is not None and not args.use_vllm:
            args = suppress_vision_tokens(args, processor)
        if processor is not None and hasattr(processor, "tokenizer"):
            processor.tokenizer.padding_side = "left"  # TRL's prompt_ids are left-padded; keep its side-paths so too
        if args.use_peft and kwargs.get("peft_config") is None:
            kwargs["peft_config"] = lora_config(args)
        super().__init__(model=model, args=args, reward_funcs=reward_funcs, **kwargs)
        if args.compile_generation and not args.use_vllm:  # TRL builds its GenerationConfig with compile disabled
            self.generation_config.disable_compile = False
            self.generation_config.compile_config = compile_config()
        if args.freeze_vision_tower or args.freeze_merger:  # after TRL's PEFT wrapping, before the optimizer exists
            freeze_parts(self.model, vision_tower=args.freeze_vision_tower, merger=args.freeze_merger)
        if "accuracy" not in self.reward_func_names:
            raise ValueError(f"Observe-R1 needs a reward function named 'accuracy'; got {self.reward_func_names}")
        by_name = {"accuracy": args.accuracy_weight, "format": args.format_weight}
        self.reward_weights = torch.tensor([by_name.get(n, 1.0) for n in self.reward_func_names], dtype=torch.float32)
        self._accuracy_index = self.reward_func_names.index("accuracy")
        self._gathered_lengths: torch.Tensor | None = None  # set by _calculate_rewards, read right after
        self._gathered_rewards: torch.Tensor | None = None
        self.consumed_log = Path(consumed_log) if consumed_log else None
        self._cursor: PromptCursor | None = None
        if args.dynamic_sampling or args.curriculum == "paced":
            self._cursor = self._make_cursor(args)
            self._cursor_at_generation = self._cursor.state_dict()

    def _make_cursor(self, args) -> PromptCursor:
        """The training order read by generation rounds (dynamic sampling, paced curriculum)."""
        feature = "dynamic_sampling" if args.dynamic_sampling else "curriculum 'paced'"
        if not isinstance(self.train_dataset, Dataset):  # an IterableDataset cannot be read by index
            raise ValueError(f"{feature} needs a map-style datasets.Dataset (rows read by index)")
        epochs = None if args.max_steps > 0 else math.ceil(args.num_train_epochs)
        if args.curriculum != "paced":
            return PromptCursor(len(self.train_dataset), shuffle=args.shuffle_dataset, seed=args.seed,
                                max_epochs=epochs)  # fmt: skip
        columns = self.train_dataset.column_names
        levels = list(self.train_dataset["ladder_level"]) if "ladder_level" in columns else []
        unknown = [i for i, level in enumerate(levels) if level is None or level < 0]
        if not levels or unknown:
            raise ValueError(
                "curriculum 'paced' needs each row's ladder level (a 'stretch_level' or 'difficulty' field, as "
                "`observe-r1 ladder` writes them); "
                + (f"rows {unknown[:5]} have none" if levels else f"this dataset has only {columns}")
            )
        self._prompt_ids = list(self.train_dataset["id"]) if "id" in columns else list(range(len(levels)))
        return PacedCursor(levels, threshold=args.pace_threshold, window=args.pace_window, seed=args.seed,
                           max_epochs=epochs)  # fmt: skip

    def _generate(self, prompts):
        # TRL generates (without vLLM) with the policy in training mode; under gradient checkpointing every decoder
        # layer then drops its KV cache, so each new token recomputes the whole prefix. Generate in eval mode.
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
            kwargs["mm_token_type_ids"] = image_token_types(
                input_ids, self._image_pad_token_id, self._video_pad_token_id
            )
        return super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=rewards_per_func.device)
        self._gathered_lengths = gather(lengths)
        self._gathered_rewards = rewards_per_func
        # REWARD_STATS counts this process's scoring events: sum them over processes (every rank calls this)
        local = torch.tensor([float(REWARD_STATS[k]) for k in REWARD_STAT_KEYS], device=rewards_per_func.device)
        self._reward_stat_totals = gather(local[None]).sum(dim=0).tolist()
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self._cursor is not None and self.model.training:
            return self._generate_with_refills(len(inputs))
        output, groups = self._generate_round(inputs)
        self._log_groups("train" if self.model.training else "eval", groups)
        if self.model.training:
            self._log_consumed(trained=groups.group_ids())
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
        args = self.args
        result = group_advantages(
            rewards,
            correct,
            lengths,
            use_bonus=args.use_bonus,
            bonus_coef=args.bonus_coef,
            bonus_min_length=args.bonus_min_length,
            use_dyna_weight=args.use_dyna_weight,
            sigma=args.dyna_sigma,
        )
        advantages = result.advantages.flatten()
        local = len(inputs)
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local].to(output["advantages"].dtype)
        sources = gather_object([(x.get("id"), x.get("row", -1), x.get("difficulty", -1.0)) for x in inputs])
        return output, GroupBatch(result, correct, rewards_per_func, lengths, sources)

    def _generate_with_refills(self, local: int) -> dict:
        """Dynamic sampling: generation rounds for the cursor's next prompts (:class:`RefillStep`) until the step
        has ``generation_batch_size / G`` informative groups; returns this process's rows of the trained groups.
        Without dynamic sampling (a paced curriculum) a step is one round whose groups are all trained. A paced
        cursor sees every round's pass rates (the same gathered values on every process) and may skip ahead."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        max_rounds = self.args.max_generation_rounds if self.args.dynamic_sampling else 1
        step = RefillStep(self._cursor, local * world // self.num_generations, self.num_generations, world,
                          max_rounds)  # fmt: skip
        self._cursor_at_generation = self._cursor.state_dict()
        outputs, rounds, skipped = [], [], []
        while (prompts := step.next_prompts()) is not None:
            output, groups = self._generate_round([self.train_dataset[i] for i in step.local_rows(prompts, rank)])
            outputs.append(output)
            rounds.append(groups)
            step.record(groups.informative().tolist())
            if isinstance(self._cursor, PacedCursor):
                skipped += self._cursor.record(prompts, groups.result.pass_rate.tolist())
        trained, dropped, surplus = step.select()
        image_ids = (self._image_pad_token_id, self._video_pad_token_id) if "mm_token_type_ids" in outputs[0] else None
        merged = gather_trained_rows(self.accelerator, outputs, step.placement(trained), local,
                                     self._tokenizer.pad_token_id, image_ids)  # fmt: skip
        generated = GroupBatch.cat(rounds)
        chosen = generated.take(step.group_index(trained))
        self._log_groups("train", chosen, generated, rounds=len(rounds))
        ids = generated.group_ids()
        trained_ids, dropped_ids, surplus_ids = (
            [ids[i] for i in step.group_index(p)] for p in (trained, dropped, surplus)
        )
        skipped_ids = None
        if isinstance(self._cursor, PacedCursor):
            skipped_ids = [self._prompt_ids[i] for i in skipped]
            for key, value in self._cursor.metrics().items():
                self._metrics["train"][OURS + key].append(value)
        self._log_consumed(trained=trained_ids, dropped=dropped_ids, surplus=surplus_ids, skipped=skipped_ids)
        if not self._cursor.can_take(step.target, new_epoch=True):
            self.control.should_training_stop = True  # num_train_epochs passes over the prompts are done
        return merged

    def _log_groups(self, mode: str, groups: GroupBatch, generated: GroupBatch | None = None, rounds: int = 1):
        """The Observe-R1 metrics of the trained ``groups`` (and, in training, the sampling metrics)."""
        size = len(self.train_dataset) if self.train_dataset is not None else None
        values = group_metrics(groups, self.reward_func_names, size) | reward_stat_metrics(self._reward_stat_totals)
        if mode == "train":
            values |= sampling_metrics(generated=generated or groups, trained=groups, rounds=rounds)
        for key, value in values.items():
            self._metrics[mode][key].append(value)

    def _log_consumed(self, trained: list, dropped: list | None = None, surplus: list | None = None,
                      skipped: list | None = None) -> None:  # fmt: skip
        """One line of ``consumed.jsonl``: the prompt ids this step trained on (and, with dynamic sampling, the
        ids it generated for and dropped: uninformative groups, and informative ones beyond the batch; with a
        paced curriculum, the ids it skipped: the rest of a mastered level)."""
        if self.consumed_log is None or not self.accelerator.is_main_process:
            return
        row = {"step": self.state.global_step, "ids": trained}
        if dropped is not None:
            row |= {"dropped": dropped, "surplus": surplus or []}
        if skipped is not None:
            row["skipped"] = skipped
        append_jsonl(self.consumed_log, [row])

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
        run_dir = self._get_output_dir(trial=trial)
        folder = Path(run_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and is_adapter_dir(folder):
            record_base(folder)  # a LoRA checkpoint loads (eval, merge) from any working directory
        if self._cursor is not None and self.args.should_save:
            # At a step boundary inside a generation block (num_iterations > 1) the block is generated again on
            # resume, so the cursor goes back to where that generation started.
            generate_every = self.args.steps_per_generation * self.num_iterations
            state = self._cursor.state_dict() if self._step % generate_every == 0 else self._cursor_at_generation
            self._cursor.save(folder, state)
        self.accelerator.wait_for_everyone()  # every process's shards are written before the marker
        if self.args.should_save:
            mark_complete(folder, self.state.global_step)
            rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # TRL/transformers load a full model with strict=False and no key conversion (huggingface/transformers#43701)
        model = self.model if model is None else model
        if is_full_model_dir(resume_from_checkpoint) and not (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            load_full_weights(model, resume_from_checkpoint)  # refuses a checkpoint that leaves a weight unloaded
        else:  # LoRA adapters (PEFT's loader), FSDP and DeepSpeed shards
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if self.args.world_size > 1 and self.args.device.type == "cpu":
            allow_indexed_cpu_location()  # Trainer maps the optimizer state to args.device, cpu:N here
        super()._load_optimizer_and_scheduler(checkpoint)
        if self._cursor is not None and checkpoint is not None:
            self._cursor.load(checkpoint)
