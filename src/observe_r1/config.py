"""Configuration: ``ObserveR1Config`` (a TRL ``GRPOConfig``) and the script arguments of ``observe-r1 train``.

Both are read by TRL's parser, so a YAML recipe (``--config recipes/x.yaml``) and ``--field value`` overrides work
the same way as for ``trl grpo``. Defaults reproduce the paper (docs/method.md §3-§6); the ablations are one flag away:

    --use_bonus false --use_dyna_weight false --curriculum shuffled     # plain GRPO baseline
    --curriculum shuffled                                               # random-order ablation
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from observe_r1.prompts import SYSTEM_PROMPT


class ConfigError(ValueError):
    """A training configuration that can't run (unknown flag, missing extra, a launch that isn't distributed);
    the command line prints its message in one line."""


@dataclass
class ObserveR1Config(GRPOConfig):
    """``GRPOConfig`` plus the Observe-R1 recipe. Advantages come from ``observe_r1.algo.group_advantages``."""

    use_bonus: bool = field(
        default=True, metadata={"help": "Pay `bonus_coef` to the shortest correct response of each group (§4)."}
    )
    bonus_coef: float = field(default=0.2, metadata={"help": "Size of the shortest-correct bonus (§4)."})
    bonus_min_length: int = field(
        default=100,
        metadata={
            "help": "The bonus is paid only if the shortest correct response is longer than this many tokens, so "
            "it never rewards degenerate brevity (§4; scale it to the task's response lengths)."
        },
    )
    use_dyna_weight: bool = field(
        default=True,
        metadata={"help": "Multiply each group's advantages by 4·σ·p·(1−p), p = the group's pass rate (§5)."},
    )
    dyna_sigma: float = field(default=1.8, metadata={"help": "σ of the dynamic weight; its peak value at p = ½."})
    accuracy_weight: float = field(default=1.0, metadata={"help": "Weight of the accuracy reward (§3)."})
    format_weight: float = field(default=0.5, metadata={"help": "Weight of the observe/think/answer format reward."})
    curriculum: str = field(
        default="ordered",
        metadata={
            "help": "`ordered`: consume the dataset in file order (the NeuraLadder curriculum, §2.7), across "
            "processes and resumes; `shuffled`: random order (the random-order ablation and plain GRPO); "
            "`paced`: file order, but the rest of a ladder level is skipped once the policy masters it "
            "(pace_window, pace_threshold; docs/curriculum.md)."
        },
    )
    pace_window: int = field(
        default=16,
        metadata={
            "help": "With curriculum paced: how many recent groups of the current ladder level the pass rate is "
            "averaged over (groups, not steps: a step has generation_batch_size / num_generations groups)."
        },
    )
    pace_threshold: float = field(
        default=0.75,
        metadata={
            "help": "With curriculum paced: once the window's mean pass rate reaches this, the rest of the level "
            "is skipped this epoch (0 skips after every full window; above 1 never skips)."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "Drop groups whose advantages are all zero and generate groups for the next prompts of the "
            "training order instead, up to max_generation_rounds per step (docs/dynamic_sampling.md)."
        },
    )
    max_generation_rounds: int = field(
        default=4,
        metadata={
            "help": "With dynamic_sampling: at most this many generation rounds per step; when they run out, the "
            "step trains on the informative groups it has, filled up with the earliest uninformative ones."
        },
    )
    # What trains (docs/lora.md). The paper trains the whole model, so all four default to off.
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Freeze the vision tower: its patch embedding and transformer blocks (the projector is "
            "freeze_merger). Its weights stay bit-identical; no gradients or optimizer state are kept for them."
        },
    )
    freeze_merger: bool = field(
        default=False,
        metadata={
            "help": "Freeze the vision-language projectors: `visual.merger`, and Qwen3-VL's deepstack mergers "
            "(`visual.deepstack_merger_list`: they feed vision features into the first language-model layers)."
        },
    )
    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters instead of the whole model (TRL's name). The base weights stay frozen; "
            "checkpoints and final/ hold the adapter; `observe-r1 merge` (or train --merge) writes a merged model."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (TRL's name and default)."})
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA alpha; the update is scaled by lora_alpha / lora_r (TRL's default)."}
    )
    lora_dropout: float = field(
        default=0.05, metadata={"help": "Dropout on the LoRA branch's input (TRL's default; 0 turns it off)."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules that get adapters, by name (default: the language model's linear layers q_proj "
            "k_proj v_proj o_proj gate_proj up_proj down_proj). A plain name is matched inside the language model "
            "only; prefix it with `visual.` to adapt the vision tower's modules of that name (visual.qkv, "
            "visual.attn.proj, visual.merger.mlp.0; Qwen3-VL's vision MLPs: visual.linear_fc1, visual.linear_fc2). "
            "A name matching no module is refused."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Loss-side forwards (old, reference and policy log-probs) without padding: each micro-batch's "
            "sequences in one row, with their exact M-RoPE positions from the model's rope index "
            "(docs/padding_free.md). Same log-probs within float rounding; needs a Qwen2.5-VL / Qwen3-VL model. "
            "On a GPU use attn_implementation flash_attention_2 (sdpa builds an N x N mask over the packed row)."
        },
    )
    system_prompt: str = field(
        default=SYSTEM_PROMPT, metadata={"help": "System prompt asking for <observe>, <think> and <answer>."}
    )
    reward_workers: int = field(
        default=2, metadata={"help": "Worker processes that verify math answers (each with a per-item timeout)."}
    )
    reward_timeout: float = field(
        default=3.0, metadata={"help": "Seconds per answer verification before it scores 0."}
    )
    compile_generation: bool = field(
        default=False,
        metadata={
            "help": "Rollouts without vLLM: compile the one-token decoding step (torch.compile) on a static KV "
            "cache (sets cache_implementation 'static'; prompts are left-padded to a multiple of 64 tokens so the "
            "compiled step sees few shapes; docs/gpu.md). Off by default until measured on the GPU check."
        },
    )
    # Paper settings that differ from TRL's defaults (§6): lr 1e-6, 8 rollouts per prompt, KL 0.01. TRL's default
    # loss_type 'dapo' already is the paper's token-mean loss.
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate (paper: 1e-6, cosine)."})
    num_generations: int | None = field(default=8, metadata={"help": "Responses per prompt, G (paper: 8)."})
    beta: float = field(
        default=0.01,
        metadata={
            "help": "KL coefficient (paper: 0.01, applied by the reference code as a k1 reward penalty; TRL adds "
            "a k3 term to the loss)."
        },
    )

    def __post_init__(self):
        if self.curriculum not in ("ordered", "shuffled", "paced"):
            raise ValueError(f"curriculum must be 'ordered', 'shuffled' or 'paced'; got {self.curriculum!r}")
        if self.pace_window < 1 or self.pace_threshold < 0:
            raise ValueError(
                f"pace_window must be >= 1 and pace_threshold >= 0; got {self.pace_window}, {self.pace_threshold}"
            )
        self.shuffle_dataset = self.curriculum == "shuffled"
        if self.dyna_sigma <= 0:
            raise ValueError(
                f"dyna_sigma must be > 0; got {self.dyna_sigma} (use --use_dyna_weight false to turn off)"
            )
        if self.bonus_coef < 0 or self.bonus_min_length < 0:
            raise ValueError("bonus_coef and bonus_min_length must be >= 0 (use --use_bonus false to turn it off)")
        if self.compile_generation:
            if self.cache_implementation not in (None, "static"):
                raise ValueError(f"compile_generation needs cache_implementation 'static'; got "
                                 f"{self.cache_implementation!r}")  # fmt: skip
            self.cache_implementation = "static"
        if self.max_generation_rounds < 1:
            raise ValueError(f"max_generation_rounds must be >= 1; got {self.max_generation_rounds}")
        if self.use_peft and (self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1):
            raise ValueError(
                f"LoRA needs lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1; got lora_r={self.lora_r}, "
                f"lora_alpha={self.lora_alpha}, lora_dropout={self.lora_dropout}"
            )
        if self.lora_target_modules is not None and not self.use_peft:
            raise ValueError("lora_target_modules is set but use_peft is false: add --use_peft true")
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError("lora_target_modules is empty: name at least one module, or leave it unset")
        if self.reward_weights is not None:
            raise ValueError(
                "set accuracy_weight / format_weight instead of reward_weights (weights follow the reward "
                "functions' names, not their positions)"
            )
        if self.scale_rewards != "group" or self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "Observe-R1 normalises the summed reward per group (§5): keep scale_rewards='group' and "
                "multi_objective_aggregation='sum_then_normalize'"
            )
        super().__post_init__()
        if self.compile_generation and self.pad_to_multiple_of is None:
            self.pad_to_multiple_of = 64  # left-padded prompts: a bounded number of shapes for the compiled step

    def advantage_options(self) -> dict:
        """The keyword arguments of ``algo.group_advantages`` this config sets (bonus and dynamic weight)."""
        return {"use_bonus": self.use_bonus, "bonus_coef": self.bonus_coef, "bonus_min_length": self.bonus_min_length,
                "use_dyna_weight": self.use_dyna_weight, "sigma": self.dyna_sigma}  # fmt: skip

    def weights_of(self, reward_names: list[str]) -> list[float]:
        """Each reward function's weight, by name: ``accuracy`` → ``accuracy_weight``, ``format`` →
        ``format_weight``, any other name → 1.0. Observe-R1 needs a function named ``accuracy``."""
        if "accuracy" not in reward_names:
            raise ValueError(f"Observe-R1 needs a reward function named 'accuracy'; got {reward_names}")
        by_name = {"accuracy": self.accuracy_weight, "format": self.format_weight}
        return [by_name.get(name, 1.0) for name in reward_names]


@dataclass
class TrainScriptArguments:
    """What ``observe-r1 train`` needs besides the trainer config."""

    model_name_or_path: str = field(
        default="Qwen/Qwen2.5-VL-3B-Instruct", metadata={"help": "Hub id or local directory of the policy."}
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "Training data: JSONL, Parquet or a datasets directory (see observe_r1.data)."}
    )
    skip_bad_rows: bool = field(
        default=False, metadata={"help": "Skip and count unusable rows instead of stopping at the first one."}
    )
    strict: bool = field(
        default=False,
        metadata={"help": "Stop at a row whose gold answer no rule can score (default: drop it, count it, warn)."},
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder where relative image paths are looked for first (then the data file's folder "
            "and its parents)."
        },
    )
    layout: str | None = field(
        default=None, metadata={"help": "Force a data layout (canonical, mathvision, mathvista, …); default: detect."}
    )
    resume: str = field(
        default="false",
        metadata={
            "help": "true: continue from the newest complete checkpoint in output_dir (same curriculum position; "
            "an error if there is none). auto: the same, or start fresh when there is none (for job schedulers "
            "that requeue a preempted job with the same command). A bare --resume means true."
        },
    )
    merge: bool = field(
        default=False,
        metadata={
            "help": "With use_peft: also write output_dir/merged, the adapter merged into its base model (a whole "
            "model, as vLLM and other tools load it; `observe-r1 merge` does the same afterwards)."
        },
    )
    min_pixels: int = field(default=3136, metadata={"help": "Images are upscaled to at least this many pixels."})
    max_pixels: int = field(default=2_560_000, metadata={"help": "Images are downscaled to at most this many pixels."})
