"""Run observe-r1's own CLI with accelerate made to shard on CPU processes (tests only; the package never does this).

    torchrun --standalone --nproc_per_node 2 tests/dist/shard_on_cpu.py train --config ... --fsdp full_shard
    PARITY_REWARD=1 accelerate launch ... tests/dist/shard_on_cpu.py train ...   # scripted accuracy (see below)

accelerate turns a launch into FSDP only on accelerators: a CPU multi-process launch given an FSDP plugin is set
to MULTI_CPU and the plugin dropped, so Trainer runs plain DDP. ``torch.distributed.fsdp.fully_shard`` itself works
on CPU with gloo, so the shim below keeps the plugin and sets the distributed type to FSDP, as accelerate does on
GPUs. Everything after that (wrapping, DTensor parameters, collectives, saves) is accelerate's and torch's real code.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))


def shard_on_cpu() -> None:
    """Promote a CPU multi-process launch that carries an FSDP plugin to ``DistributedType.FSDP``."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = init


def parity_reward() -> None:
    """The CLI's accuracy reward replaced by ``tests.helpers.ParityAccuracy`` (odd-length completions are "right"):
    the tiny untrained model never writes a correct answer, so without it every group has zero advantage and no
    weight moves, and a resumed run would equal an uninterrupted one trivially."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import observe_r1.trainer
    from tests.helpers import ParityAccuracy

    observe_r1.trainer.AccuracyReward = lambda *args: ParityAccuracy()


if __name__ == "__main__":
    import os

    shard_on_cpu()
    if os.environ.get("PARITY_REWARD") == "1":
        parity_reward()
    from observe_r1.cli import main

    sys.argv = ["observe-r1", *sys.argv[1:]]
    main()
