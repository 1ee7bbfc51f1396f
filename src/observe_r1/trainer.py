"""``ObserveR1Trainer``: TRL's ``GRPOTrainer`` with the Observe-R1 advantages (docs/method.md §4-§5).

Launch (the same code on a laptop and a cluster)::

    observe-r1 train --config recipes/tiny_cpu.yaml --max_steps 20
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m observe_r1.cli train \
        --config recipes/observe_r1_qwen2_5_vl_3b.yaml
"""

from __future__ import annotations

import copy
import math
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate.utils import gather, gather_object, send_to_device
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import ProgressCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

from observe_r1.algo import GroupAdvantages, group_advantages
from observe_r1.dynamic import PromptCursor, merge_rows, refill_size, select_groups, split_rows
from observe_r1.jsonl import append_jsonl
from observe_r1.lora import freeze_parts, is_adapter_dir, lora_config, record_base
from observe_r1.mathpool import REWARD_STATS
from observe_r1.models import VISION_TOKENS
from observe_r1.rewards import AccuracyReward, FormatReward

REWARD_STAT_KEYS = ("timeout", "unparseable_gold")  # logged as totals over every process


def image_token_types(input_ids: torch.Tensor, image_pad_id: int, video_pad_id: int | None = None) -> torch.Tensor:
    """``mm_token_type_ids`` read off the token ids themselves: 1 at image-pad tokens, 2 at video-pad, else 0.

    Qwen2.5-VL places image features and rope positions where these ids say; rebuilding them from the very ids
    the forward sees keeps them aligned whatever padding side, length or image size a batch has.
    """
    types = torch.zeros_like(input_ids)
    types[input_ids == image_pad_id] = 1
    if video_pad_id is not None:
        types[input_ids == video_pad_id] = 2
    return types


class ObserveR1Trainer(GRPOTrainer):
    """GRPO with the shortest-correct bonus and the dynamic weight, computed on whole (gathered) groups.

    Four private methods of TRL are overridden, each calling ``super()`` (the TRL version is pinned, and
    ``tests/test_trl_hooks.py`` checks their signatures and the keys used here):

    * ``_calculate_rewards`` returns the rewards gathered from all processes (rank-major, groups contiguous);
      the override also gathers each completion's length, in the same order, for the bonus.
    * ``_generate_and_score_completions`` computes TRL's outputs; the override replaces ``advantages`` with
      ``group_advantages`` on the gathered batch, then keeps this process's slice, exactly as TRL slices.
    * ``_get_per_token_logps_and_entropies`` (every forward: old, reference and loss log-probs) rebuilds
      ``mm_token_type_ids`` from the ``input_ids`` it is given. TRL 1.16 builds them with a processor call padded
      on the tokenizer's default side while ``prompt_ids`` are left-padded (huggingface/trl#5785): with a
      right-padding tokenizer every prompt shorter than its batch's longest had its image positions shifted onto
      text or padding (wrong logits and gradients), or the rope index crashed on differently sized images.
    * ``_generate`` runs TRL's generation with the policy in eval mode: in training mode, gradient checkpointing
      makes every layer drop its KV cache, so each new token recomputed the whole prompt.

    Correctness (for the bonus and the pass rate) is the accuracy reward, never the weighted total.

    With ``dynamic_sampling`` (docs/dynamic_sampling.md) prompts come from a :class:`PromptCursor` instead of the
    data loader, a step runs several generation rounds, keeps the first informative groups and regroups their rows
    across processes; the cursor is saved in each checkpoint (``_save_checkpoint``) and restored on resume
    (``_load_optimizer_and_scheduler``, where TRL restores its own extras).

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
            # TRL suppresses only <|image_pad|>; a sampled <|vision_start|> or <|video_pad|> breaks the next forward.
            vision_ids = [i for i in processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS) if i is not None]
            generation_kwargs = dict(args.generation_kwargs or {})
            generation_kwargs["suppress_tokens"] = sorted(set(generation_kwargs.get("suppress_tokens") or []) |
                                                          set(vision_ids))  # fmt: skip
            args = copy.copy(args)  # the caller's config stays as it was
            args.generation_kwargs = generation_kwargs
        if processor is not None and hasattr(processor, "tokenizer"):
            processor.tokenizer.padding_side = "left"  # TRL's prompt_ids are left-padded; keep its side-paths so too
        if args.use_peft and kwargs.get("peft_config") is None:
            kwargs["peft_config"] = lora_config(args)
        super().__init__(model=model, args=args, reward_funcs=reward_funcs, **kwargs)
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
        if args.dynamic_sampling:
            if not isinstance(self.train_dataset, Dataset):  # an IterableDataset cannot be read by index
                raise ValueError("dynamic_sampling needs a map-style datasets.Dataset (rows read by index)")
            epochs = None if args.max_steps > 0 else math.ceil(args.num_train_epochs)
            self._cursor = PromptCursor(len(self.train_dataset), shuffle=args.shuffle_dataset, seed=args.seed,
                                        max_epochs=epochs)  # fmt: skip
            self._cursor_at_generation = self._cursor.state_dict()

    def _generate(self, prompts):
        # TRL generates (without vLLM) with the policy in training mode; under gradient checkpointing every decoder
        # layer then drops its KV cache, so each new token recomputes the whole prefix. Generate in eval mode.
        training = self.model.training
        self.model.eval()
        try:
            return super()._generate(prompts)
        finally:
            self.model.train(training)

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
        if self.args.dynamic_sampling and self.model.training:
            return self._generate_with_refills(len(inputs))
        output, groups = self._generate_round(inputs)
        mode = "train" if self.model.training else "eval"
        self._log_observe_r1(mode, groups)
        if mode == "train":
            self._log_sampling(generated=groups, trained=groups, rounds=1)
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
        rows = gather_object([(x.get("id"), x.get("row", -1), x.get("difficulty", -1.0)) for x in inputs])
        return output, GroupBatch(result, correct, rewards_per_func, lengths, rows)

    def _generate_with_refills(self, local: int) -> dict:
        """Dynamic sampling: rounds of generation for the next prompts of :class:`PromptCursor` until the step
        has ``generation_batch_size / G`` informative groups or ``max_generation_rounds`` is reached; returns this
        process's rows of the trained groups (see observe_r1.dynamic)."""
        G, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        target = local * world // G
        self._cursor_at_generation = self._cursor.state_dict()
        outputs, batches, sizes, flags = [], [], [], []  # flags[r][g]: group g of round r is informative
        while len(batches) < self.args.max_generation_rounds:
            informative, generated = sum(map(sum, flags)), sum(map(len, flags))
            if informative >= target:
                break
            count = refill_size(target, informative, generated, G, world)
            indices = self._cursor.take(count, new_epoch=not batches)
            if indices is None:  # the epoch ends: train on what there is
                break
            size = count * G // world  # this process's rows in this round
            rows = [i for i in indices for _ in range(G)][rank * size : (rank + 1) * size]
            output, groups = self._generate_round([self.train_dataset[i] for i in rows])
            outputs.append(output)
            batches.append(groups)
            sizes.append(size)
            flags.append(groups.informative().tolist())
        if not batches:
            raise RuntimeError("dynamic sampling: no prompts left to generate for (the epoch limit is reached)")
        trained, dropped, surplus = select_groups(flags, target)
        merged = self._gather_rows(outputs, sizes, trained, local)
        everything = GroupBatch.cat(batches)
        offsets = [sum(map(len, flags[:r])) for r in range(len(flags))]
        chosen = everything.take([offsets[r] + g for r, g in trained])
        self._log_observe_r1("train", chosen)
        self._log_sampling(generated=everything, trained=chosen, rounds=len(batches))
        ids = everything.group_ids()

        def named(pairs):
            return [ids[offsets[r] + g] for r, g in pairs]

        self._log_consumed(trained=named(trained), dropped=named(dropped), surplus=named(surplus))
        if not self._cursor.can_take(target, new_epoch=True):
            self.control.should_training_stop = True  # num_train_epochs passes over the prompts are done
        return merged

    def _gather_rows(self, outputs: list[dict], sizes: list[int], trained: list[tuple[int, int]], local: int) -> dict:
        """This process's ``local`` rows of the trained groups, laid out as TRL lays out a generation batch
        (row ``j`` of the selection goes to process ``j // local``). Round ``r`` left ``sizes[r]`` rows on each
        process; rows generated on another process are sent through ``gather_object`` (on CPU)."""
        G, rank = self.num_generations, self.accelerator.process_index
        # (round, owner process, row on the owner) of each trained completion, in trained order
        wanted = [(r, (g * G + m) // sizes[r], (g * G + m) % sizes[r]) for r, g in trained for m in range(G)]
        rows = {r: split_rows(output) for r, output in enumerate(outputs)}
        mine = wanted[rank * local : (rank + 1) * local]
        if self.accelerator.num_processes > 1:
            send = [((r, i), send_to_device(rows[r][i], "cpu"))
                    for j, (r, owner, i) in enumerate(wanted) if owner == rank and j // local != rank]  # fmt: skip
            received = dict(gather_object(send))
            device = self.accelerator.device
            picked = [rows[r][i] if owner == rank else send_to_device(received[(r, i)], device)
                      for r, owner, i in mine]  # fmt: skip
        else:
            picked = [rows[r][i] for r, _, i in mine]
        merged = merge_rows(picked, self._tokenizer.pad_token_id)
        if "mm_token_type_ids" in outputs[0]:
            ids = torch.cat([merged["prompt_ids"], merged["completion_ids"]], dim=1)
            merged["mm_token_type_ids"] = image_token_types(ids, self._image_pad_token_id, self._video_pad_token_id)
        loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return merged

    def _log_observe_r1(self, mode, groups: GroupBatch):
        """Log what :func:`group_advantages` used (bonus, weight, pass rate) on the trained groups."""
        metrics = self._metrics[mode]
        result, correct, lengths, rewards_per_func = groups.result, groups.correct, groups.lengths, groups.rewards
        advantages = result.advantages
        metrics["observe_r1/advantage_abs_mean"].append(advantages.abs().mean().item())
        metrics["observe_r1/advantage_std"].append(advantages.std().item())
        metrics["observe_r1/accuracy"].append(correct.float().mean().item())
        if "format" in self.reward_func_names:
            fmt = rewards_per_func[:, self.reward_func_names.index("format")]
            metrics["observe_r1/format_rate"].append(torch.nanmean(fmt).item())
        metrics["observe_r1/bonus_rate"].append((result.bonus > 0).any(dim=1).float().mean().item())
        metrics["observe_r1/dyna_weight_mean"].append(result.weight.mean().item())
        G = correct.shape[1]
        histogram = Counter(round(p * G) for p in result.pass_rate.tolist())
        for k in range(G + 1):
            metrics[f"observe_r1/pass_rate_hist/{k}of{G}"].append(histogram[k] / len(result.pass_rate))
        for name, mask in (("correct", correct), ("incorrect", ~correct)):
            if mask.any():
                metrics[f"observe_r1/length_{name}"].append(lengths[mask].float().mean().item())
        difficulties = [d for _, _, d in groups.rows if d is not None and d >= 0]
        if difficulties:
            metrics["observe_r1/curriculum_difficulty"].append(sum(difficulties) / len(difficulties))
        positions = [r for _, r, _ in groups.rows if r is not None and r >= 0]
        if positions and self.train_dataset is not None:
            metrics["observe_r1/curriculum_position"].append((max(positions) + 1) / len(self.train_dataset))
        for key, total in zip(REWARD_STAT_KEYS, self._reward_stat_totals, strict=True):
            metrics[f"observe_r1/reward_{key}_total"].append(total)

    def _log_sampling(self, generated: GroupBatch, trained: GroupBatch, rounds: int) -> None:
        """Dynamic-sampling metrics of a training step (also without dynamic sampling, for comparison)."""
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/zero_std_generated"].append(1.0 - generated.informative().float().mean().item())
        metrics["dynamic_sampling/zero_std_trained"].append(1.0 - trained.informative().float().mean().item())
        metrics["dynamic_sampling/generation_rounds"].append(float(rounds))
        metrics["dynamic_sampling/prompts_consumed"].append(float(generated.correct.shape[0]))

    def _log_consumed(self, trained: list, dropped: list | None = None, surplus: list | None = None) -> None:
        """One line of ``consumed.jsonl``: the prompt ids this step trained on (and, with dynamic sampling, the
        ids it generated for and dropped: uninformative groups, and informative ones beyond the batch)."""
        if self.consumed_log is None or not self.accelerator.is_main_process:
            return
        row = {"step": self.state.global_step, "ids": trained}
        if dropped is not None:
            row |= {"dropped": dropped, "surplus": surplus or []}
        append_jsonl(self.consumed_log, [row])

    def get_train_dataloader(self):
        """With dynamic sampling, prompts come from :class:`PromptCursor`; the data loader only paces the steps
        (it yields row numbers, so no image is decoded twice)."""
        if not self.args.dynamic_sampling:
            return super().get_train_dataloader()
        dataset = self.train_dataset
        self.train_dataset = Dataset.from_dict({"ticket": list(range(len(dataset)))})
        try:
            return super().get_train_dataloader()
        finally:
            self.train_dataset = dataset

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and is_adapter_dir(folder):
            record_base(folder)  # a LoRA checkpoint loads (eval, merge) from any working directory
        if self.args.dynamic_sampling and self.args.should_save:
            # At a step boundary inside a generation block (num_iterations > 1) the block is generated again on
            # resume, so the cursor goes back to where that generation started.
            generate_every = self.args.steps_per_generation * self.num_iterations
            state = self._cursor.state_dict() if self._step % generate_every == 0 else self._cursor_at_generation
            self._cursor.save(folder, state)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.args.dynamic_sampling and checkpoint is not None:
            self._cursor.load(checkpoint)


class GroupBatch(NamedTuple):
    """Gathered groups of one generation round (or a selection of groups): what the advantages were made of."""

    result: GroupAdvantages  # (n, G) advantages, bonus; (n,) weight, pass rate
    correct: torch.Tensor  # (n, G) bool
    rewards: torch.Tensor  # (n * G, num_reward_funcs), unweighted
    lengths: torch.Tensor  # (n, G)
    rows: list  # (id, row, difficulty) of each of the n * G completions

    def informative(self) -> torch.Tensor:
        """``(n,)`` bool: the group has a non-zero advantage (so it moves the policy)."""
        return (self.result.advantages != 0).any(dim=1)

    def group_ids(self) -> list:
        """The prompt id of each group."""
        G = self.correct.shape[1]
        return [row[0] for row in self.rows[::G]]

    def take(self, groups: list[int]) -> GroupBatch:
        """These groups only."""
        G = self.correct.shape[1]
        index = torch.tensor(groups, dtype=torch.long)
        flat = (index[:, None] * G + torch.arange(G)).flatten()
        result = GroupAdvantages(*(t[index.to(t.device)] for t in self.result))
        rows = [self.rows[i] for i in flat.tolist()]
        return GroupBatch(result, self.correct[index], self.rewards[flat.to(self.rewards.device)],
                          self.lengths[index], rows)  # fmt: skip

    @staticmethod
    def cat(batches: list[GroupBatch]) -> GroupBatch:
        """Groups of several batches, in order."""
        result = GroupAdvantages(*(torch.cat(parts) for parts in zip(*(b.result for b in batches), strict=True)))
        return GroupBatch(result, torch.cat([b.correct for b in batches]), torch.cat([b.rewards for b in batches]),
                          torch.cat([b.lengths for b in batches]), [r for b in batches for r in b.rows])  # fmt: skip


class ConciseProgress(ProgressCallback):
    """The progress bar plus one readable line per log: reward, accuracy, advantages' weight, ladder level."""

    FIELDS = [("reward", "reward"), ("acc", "observe_r1/accuracy"), ("fmt", "observe_r1/format_rate"),
              ("bonus", "observe_r1/bonus_rate"), ("weight", "observe_r1/dyna_weight_mean"),
              ("|adv|", "observe_r1/advantage_abs_mean"),
              ("zero-std", "dynamic_sampling/zero_std_generated"), ("rounds", "dynamic_sampling/generation_rounds"),
              ("len", "completions/mean_length"),
              ("level d", "observe_r1/curriculum_difficulty"), ("kl", "kl")]  # fmt: skip

    def on_train_begin(self, args, state, control, **kwargs):
        """The bar only on a terminal: in a log file its carriage returns glue it to the step lines."""
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, disable=not sys.stderr.isatty())
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Print one line per training log through the progress bar."""
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "reward" not in logs:  # end-of-training summary
            return super().on_log(args, state, control, logs=logs, **kwargs)
        parts = [f"{name} {logs[key]:.3g}" for name, key in self.FIELDS if key in logs]
        self.training_bar.write(f"step {state.global_step:4d} | " + " | ".join(parts))


def use_concise_progress(trainer) -> None:
    """Replace the Trainer's log printer (a dict of ~40 numbers per step) with :class:`ConciseProgress`."""
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ConciseProgress())


class MetricsJsonl(TrainerCallback):
    """Append every log of the main process to ``metrics.jsonl`` under stable, short names."""

    ALIASES = {
        "accuracy": "observe_r1/accuracy",
        "format_rate": "observe_r1/format_rate",
        "bonus_rate": "observe_r1/bonus_rate",
        "dyna_weight_mean": "observe_r1/dyna_weight_mean",
        "completion_length": "completions/mean_length",
        "curriculum_difficulty": "observe_r1/curriculum_difficulty",
        "curriculum_position": "observe_r1/curriculum_position",
        "length_correct": "observe_r1/length_correct",
        "length_incorrect": "observe_r1/length_incorrect",
        "zero_std_generated": "dynamic_sampling/zero_std_generated",
        "zero_std_trained": "dynamic_sampling/zero_std_trained",
        "generation_rounds": "dynamic_sampling/generation_rounds",
        "prompts_consumed": "dynamic_sampling/prompts_consumed",
    }

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """One line per training log; aliased metrics appear once, under their short name."""
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        long_names = {v: k for k, v in self.ALIASES.items()}
        row = {"step": state.global_step, **{long_names.get(k, k): v for k, v in logs.items()}}
        append_jsonl(self.path, [row])
