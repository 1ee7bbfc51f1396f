"""Run with 2 processes (torchrun --nproc_per_node 2 tests/dist/fsdp.py TINY_MODEL OUT_DIR [TINY_QWEN3_MODEL]).

observe-r1's own training under real FSDP2 on CPU processes (accelerate made to shard by the test-only shim in
``shard_on_cpu.py``). Per mode (full fine-tune, frozen vision tower, LoRA, the full fine-tune with padding-free
updates, and, given a Qwen3-VL model, its full fine-tune): a 4-step run that saves checkpoint-2 and exports
``final/`` with ``save_final`` on every rank, then a run resumed from its checkpoint-2. Then the same 4 steps under
plain DDP. Each rank writes what it saw: whether parameters were sharded, whether every forward's image marks sat on
the image tokens, whether the resumed weights equal the uninterrupted run's (bit for bit), and how far DDP and FSDP2
ended apart. Rank 0 also writes each run's final full weights (``MODE/end.pt``).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from observe_r1.models import load_policy  # noqa: E402
from observe_r1.rewards import FormatReward  # noqa: E402
from observe_r1.train import build_trainer, end_processes, save_final  # noqa: E402
from tests.dist.shard_on_cpu import shard_on_cpu  # noqa: E402
from tests.helpers import (  # noqa: E402
    ImagePositionCheck,
    ParityAccuracy,
    StopAt,
    differing_weights,
    synth_dataset,
    tiny_config,
)

MODES = {"full": {}, "frozen_tower": {"freeze_vision_tower": True}, "lora": {"use_peft": True, "lora_r": 4},
         "qwen3": {}, "packed": {"padding_free": True}}  # fmt: skip


def full_weights(model) -> dict:
    """Every parameter as a whole tensor (sharded ones all-gathered: every rank calls this at the same point)."""
    return {
        n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone() for n, p in model.named_parameters()
    }


class Snapshots(StopAt):
    """``StopAt`` that copies whole weights (sharded ones all-gathered, on every rank at the same step)."""

    def _copy(self, model) -> dict:
        return full_weights(model)


def train(model_dir, dataset, out: Path, overrides: dict, callback, resume: str | None = None, fsdp=True):
    model, processor = load_policy(model_dir)
    check = ImagePositionCheck(model, processor)
    args = tiny_config(out, per_device_train_batch_size=6, num_generations=4, max_steps=4, save_strategy="steps",
                       save_steps=2, fsdp="full_shard" if fsdp else None, **overrides)  # fmt: skip
    trainer = build_trainer(model, processor, dataset, args, reward_funcs=[ParityAccuracy(), FormatReward()],
                            callbacks=[callback], concise_progress=False)  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    sharded = [p for p in trainer.model.parameters() if isinstance(p, DTensor)]
    record = {"engine": str(trainer.accelerator.distributed_type.value), "sharded": len(sharded),
              "rows": [(p.to_local().shape[0], p.shape[0]) for p in sharded],
              "params": sum(1 for _ in trainer.model.parameters()), "grad_forwards": check.grad_forwards,
              "misaligned": sum(check.misaligned)}  # fmt: skip
    return trainer, processor, record


def main(model_dir: str, out_dir: str, qwen3_dir: str | None = None) -> None:
    shard_on_cpu()
    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    _, dataset = synth_dataset(out / f"data-{rank}", n=24)
    report = {}
    for mode, overrides in MODES.items():
        if mode == "qwen3" and qwen3_dir is None:
            continue
        policy = qwen3_dir if mode == "qwen3" else model_dir
        straight = Snapshots(snapshot_at=2)
        trainer, processor, record = train(policy, dataset, out / mode / "straight", overrides, straight)
        end = full_weights(trainer.model)
        final = save_final(trainer, processor)  # every rank: the full state dict is gathered collectively
        record["final_files"] = sorted(p.name for p in final.iterdir())
        resumed = Snapshots()
        again_trainer, _, again = train(policy, dataset, out / mode / "resumed", overrides, resumed,
                                        resume=str(out / mode / "straight" / "checkpoint-2"))  # fmt: skip
        record |= {
            "resumed_engine": again["engine"],
            "moved_by_step_2": len(differing_weights(straight.at_start, straight.weights)),
            "moved_by_end": differing_weights(straight.at_start, end),
            "differ_at_restart": differing_weights(resumed.at_start, straight.weights),
            "differ_at_end": differing_weights(full_weights(again_trainer.model), end),
        }
        report[mode] = record
        if rank == 0:
            torch.save(end, out / mode / "end.pt")
    for name in [n for n in os.environ if n.startswith(("FSDP_", "ACCELERATE_USE_FSDP"))]:
        del os.environ[name]  # left by the FSDP runs' plugins; accelerate would build one from them
    trainer, _, record = train(model_dir, dataset, out / "ddp", {}, Snapshots(), fsdp=False)
    ddp_end = full_weights(trainer.model)
    fsdp_end = torch.load(out / "full" / "end.pt") if rank == 0 else None
    if rank == 0:
        record["max_abs_diff_to_fsdp"] = max((ddp_end[n] - fsdp_end[n]).abs().max().item() for n in ddp_end)
    report["ddp"] = record
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    end_processes(trainer)


if __name__ == "__main__":
    main(*sys.argv[1:4])
