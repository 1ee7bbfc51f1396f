"""Dynamic sampling: groups that teach nothing are replaced by groups for the next prompts (docs/dynamic_sampling.md).

A group whose advantages are all zero (all its shaped rewards equal, or, with the dynamic weight, all right or
all wrong) adds nothing to the policy gradient. With ``dynamic_sampling`` on, ``ObserveR1Trainer`` generates
another round for the *next* prompts of the training order until the step has its full number of informative
groups or ``max_generation_rounds`` is reached, then trains on the first informative groups in order (filled up
with the earliest zero-advantage ones when the rounds ran out).

This module holds the parts that do not touch TRL's trainer state:

* :class:`PromptCursor` — the training order as a cursor that every generation round advances, so a prompt is
  drawn once per epoch however many rounds a step needs, and whose position is saved in checkpoints;
* :func:`select_groups` — which generated groups are trained, dropped or left over;
* :func:`split_rows` / :func:`merge_rows` — one generation output as per-completion rows and back, so that rows
  from different rounds (and processes) can be put into one batch;
* :class:`RefillStep` — one step's rounds (next prompts, record a round, select) and
  :func:`gather_trained_rows` — the selected rows laid out as TRL lays out a generation batch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from accelerate.utils import gather_object, send_to_device
from trl.trainer.utils import pad, split_pixel_values_by_grid

from observe_r1.models import image_token_types

STATE_FILE = "dynamic_sampling.json"

# Keys of TRL's generation output, by how a row of them is re-padded when rows of different rounds are merged.
PROMPT_SIDE = {"prompt_ids": "pad", "prompt_mask": 0}  # left-padded
COMPLETION_SIDE = {  # right-padded; padded positions are masked out by completion_mask
    "completion_ids": "pad",
    "completion_mask": 0,
    "old_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "importance_sampling_ratio": 0.0,
    "tool_mask": 1,
}
PER_ROW = {"advantages", "num_images"}
PER_IMAGE = {"pixel_values", "image_grid_thw"}  # a row's images, concatenated in row order
REBUILT = {"num_items_in_batch", "mm_token_type_ids"}  # recomputed for the merged batch
_FILL = {**PROMPT_SIDE, **COMPLETION_SIDE}


class PromptCursor:
    """The order in which prompts are trained, read by generation rounds instead of by the data loader.

    Epoch ``e`` visits ``range(n)`` (ordered curriculum) or ``torch.randperm(n)`` seeded with ``seed + e``
    (shuffled; epoch 0 is the order of TRL's sampler for the same seed). A round takes the next ``count``
    prompts; when fewer than ``count`` are left in the epoch, a first round starts the next epoch (those last
    prompts are not used, as TRL's sampler drops an incomplete last batch) and a refill round gets nothing.

    >>> cursor = PromptCursor(5, shuffle=False, seed=0)
    >>> cursor.take(2, new_epoch=True), cursor.take(2, new_epoch=False), cursor.take(2, new_epoch=False)
    ([0, 1], [2, 3], None)
    >>> cursor.take(2, new_epoch=True), cursor.state_dict()
    ([0, 1], {'epoch': 1, 'position': 2})
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, max_epochs: int | None = None):
        self.n, self.shuffle, self.seed, self.max_epochs = n, shuffle, seed, max_epochs
        self.epoch = 0
        self.position = 0
        self._order: tuple[int, list[int]] | None = None

    def order(self, epoch: int) -> list[int]:
        """Prompt indices of one epoch, in training order."""
        if self._order is None or self._order[0] != epoch:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                indices = torch.randperm(self.n, generator=generator).tolist()
            else:
                indices = list(range(self.n))
            self._order = (epoch, indices)
        return self._order[1]

    def can_take(self, count: int, *, new_epoch: bool) -> bool:
        """Whether :meth:`take` would return prompts."""
        if count <= self.remaining():
            return True
        return new_epoch and count <= self.n and (self.max_epochs is None or self.epoch + 1 < self.max_epochs)

    def remaining(self) -> int:
        """Prompts left in this epoch's order."""
        return len(self.order(self.epoch)) - self.position

    def take(self, count: int, *, new_epoch: bool) -> list[int] | None:
        """The next ``count`` prompt indices, or None when this epoch has too few left and ``new_epoch`` is
        false (or the epoch limit is reached)."""
        if count > self.n:
            raise ValueError(f"a generation round needs {count} prompts but the dataset has {self.n}")
        if not self.can_take(count, new_epoch=new_epoch):
            return None
        if count > self.remaining():
            self.next_epoch(count)
        indices = self.order(self.epoch)[self.position : self.position + count]
        self.position += count
        return indices

    def next_epoch(self, count: int) -> None:
        """Start the next epoch (``count``: the prompts its first round takes)."""
        self.epoch, self.position = self.epoch + 1, 0

    def record(self, indices: list[int], pass_rates: list[float]) -> list[int]:
        """The groups of a generated round (prompt index, pass rate); a paced cursor may skip ahead (returns the
        prompts skipped). The plain cursor ignores them."""
        return []

    def pop_skipped(self) -> list | None:
        """Prompt ids skipped since the last call (None: this cursor never skips)."""
        return None

    def metrics(self) -> dict[str, float]:
        """Values the cursor logs each step (none for the plain cursor)."""
        return {}

    def state_dict(self) -> dict:
        """Where the cursor is: enough to continue the same order after a restart."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def save(self, checkpoint_dir: str | Path, state: dict | None = None) -> None:
        """Write ``state`` (default: the current one) into a checkpoint directory."""
        (Path(checkpoint_dir) / STATE_FILE).write_text(json.dumps(state or self.state_dict()))

    def load(self, checkpoint_dir: str | Path) -> None:
        """Continue from the state saved in a checkpoint directory."""
        path = Path(checkpoint_dir) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: this checkpoint was written without dynamic sampling or a paced curriculum "
                "(resume with the settings it was written with) or its save was interrupted (resume from the "
                "previous checkpoint)"
            )
        self.load_state_dict(json.loads(path.read_text()))


def select_groups(
    informative: list[list[bool]], target: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
    """Which generated groups a step trains on, as ``(round, group)`` pairs.

    ``informative[r][g]``: group ``g`` of round ``r`` has a non-zero advantage. Trained: the first ``target``
    informative groups in generation order, then (if there are fewer) the earliest uninformative ones. Returns
    ``(trained, dropped, surplus)``: dropped are the uninformative groups not trained, surplus the informative
    groups beyond ``target`` (their round was needed, but not all of it).

    >>> select_groups([[False, True, False], [True, True, False]], target=3)
    ([(0, 1), (1, 0), (1, 1)], [(0, 0), (0, 2), (1, 2)], [])
    >>> select_groups([[True, True, True], [True, False]], target=3)
    ([(0, 0), (0, 1), (0, 2)], [(1, 1)], [(1, 0)])
    >>> select_groups([[False, True], [False, False]], target=2)  # rounds ran out: one uninformative group fills
    ([(0, 1), (0, 0)], [(1, 0), (1, 1)], [])
    """
    useful = [(r, g) for r, flags in enumerate(informative) for g, ok in enumerate(flags) if ok]
    useless = [(r, g) for r, flags in enumerate(informative) for g, ok in enumerate(flags) if not ok]
    trained = useful[:target]
    fill = useless[: target - len(trained)]
    return trained + fill, useless[len(fill) :], useful[target:]


def refill_size(target: int, informative: int, generated: int, num_generations: int, world: int) -> int:
    """Prompts to generate for in the next round of a step that needs ``target`` informative groups and has
    ``informative`` of ``generated`` so far.

    The first round (and any round before an informative group was seen) is a full batch; later rounds ask for
    the missing groups divided by the informative rate seen so far (so they usually fill the batch without a
    large surplus), at most a full batch, rounded up so that every process gets the same number of completions.

    >>> refill_size(8, 0, 0, 8, 1), refill_size(8, 6, 8, 8, 1), refill_size(8, 1, 8, 8, 1)
    (8, 3, 8)
    >>> refill_size(3, 2, 3, 4, 8)  # 8 processes, groups of 4: prompts come in pairs
    2
    """
    if informative == 0:
        return target
    unit = world // math.gcd(world, num_generations)  # prompts whose completions split evenly over processes
    wanted = math.ceil((target - informative) * generated / informative)
    return min(target, unit * math.ceil(wanted / unit))


def split_rows(output: dict) -> list[dict]:
    """A generation output of TRL (this process's rows) as one dict per completion, images included."""
    unsupported = set(output) - set(PROMPT_SIDE) - set(COMPLETION_SIDE) - PER_ROW - PER_IMAGE - REBUILT
    if unsupported:
        raise NotImplementedError(
            f"dynamic_sampling cannot regroup the generation outputs {sorted(unsupported)} of this model; it "
            "supports text-only models and image_grid_thw models (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). Set "
            "--dynamic_sampling false."
        )
    batch = split_pixel_values_by_grid(output)
    rows = [{} for _ in range(len(batch["advantages"]))]
    for key, value in batch.items():
        if key in REBUILT:
            continue
        for row, item in zip(rows, value, strict=True):
            row[key] = item
    return rows


def merge_rows(rows: list[dict], pad_token_id: int) -> dict:
    """The inverse of :func:`split_rows` for rows of any rounds: prompts left-padded and completions
    right-padded to the longest row, images concatenated in row order. ``num_items_in_batch`` and
    ``mm_token_type_ids`` are not rebuilt here (they depend on the other processes and the model)."""
    out: dict = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if key in PROMPT_SIDE or key in COMPLETION_SIDE:
            fill = _FILL[key]
            side = "left" if key in PROMPT_SIDE else "right"
            out[key] = pad(values, padding_value=pad_token_id if fill == "pad" else fill, padding_side=side)
        elif key == "advantages":
            out[key] = torch.stack(values)
        elif key == "num_images":
            out[key] = values
        else:  # PER_IMAGE
            out[key] = torch.cat(values)
    return out


class RefillStep:
    """One dynamic-sampling step: generation rounds for the cursor's next prompts until ``target`` informative
    groups, then the selection. The trainer loops ``while (prompts := step.next_prompts()) is not None``,
    generates a round for them and :meth:`record` s it; :meth:`select` says which groups train.

    Rounds are laid out as TRL lays out a generation batch: prompt ``p`` of a round is repeated ``G`` times and
    each of the ``world`` processes holds ``rows`` consecutive completions of it.
    """

    def __init__(self, cursor: PromptCursor, target: int, num_generations: int, world: int, max_rounds: int):
        self.cursor, self.target, self.G, self.world, self.max_rounds = (
            cursor,
            target,
            num_generations,
            world,
            max_rounds,
        )
        self.flags: list[list[bool]] = []  # flags[r][g]: group g of round r is informative
        self.per_process: list[int] = []  # completions each process holds, per round

    def next_prompts(self) -> list[int] | None:
        """Dataset indices of the next round's prompts (each once; repeat them ``G`` times), or None when the step
        has its informative groups, the rounds ran out, or the epoch ends."""
        informative, generated = sum(map(sum, self.flags)), sum(map(len, self.flags))
        if len(self.flags) >= self.max_rounds or informative >= self.target:
            return None
        count = refill_size(self.target, informative, generated, self.G, self.world)
        indices = self.cursor.take(count, new_epoch=not self.flags)
        if indices is not None:
            self.per_process.append(count * self.G // self.world)
        return indices

    def local_rows(self, indices: list[int], rank: int) -> list[int]:
        """The dataset index of each completion process ``rank`` generates in this round."""
        size = self.per_process[-1]
        return [i for i in indices for _ in range(self.G)][rank * size : (rank + 1) * size]

    def record(self, informative: list[bool]) -> None:
        """The generated round's groups: which are informative."""
        self.flags.append(list(informative))

    def select(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
        """``(trained, dropped, surplus)`` as ``(round, group)`` pairs (see :func:`select_groups`)."""
        if not self.flags:
            raise RuntimeError("dynamic sampling: no prompts left to generate for (the epoch limit is reached)")
        return select_groups(self.flags, self.target)

    def group_index(self, pairs: list[tuple[int, int]]) -> list[int]:
        """``(round, group)`` pairs as indices into all the step's groups, rounds concatenated."""
        offsets = [sum(map(len, self.flags[:r])) for r in range(len(self.flags))]
        return [offsets[r] + g for r, g in pairs]

    def placement(self, trained: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """``(round, owner process, row on the owner)`` of each trained completion, in trained order."""
        G, size = self.G, self.per_process
        return [(r, (g * G + m) // size[r], (g * G + m) % size[r]) for r, g in trained for m in range(G)]


def gather_trained_rows(accelerator, outputs: list[dict], wanted: list[tuple[int, int, int]], local: int,
                        pad_token_id: int, image_token_ids: tuple | None = None) -> dict:  # fmt: skip
    """This process's ``local`` rows of the trained completions (``wanted``: :meth:`RefillStep.placement`), merged
    into one generation output; row ``j`` goes to process ``j // local``, as TRL slices a generation batch. Rows
    generated on another process travel by ``gather_object`` (on CPU). ``mm_token_type_ids`` are rebuilt from
    the ids (``image_token_ids``: the image- and video-pad ids) and ``num_items_in_batch`` counted over processes."""
    rank = accelerator.process_index
    rows = {r: split_rows(output) for r, output in enumerate(outputs)}
    mine = wanted[rank * local : (rank + 1) * local]
    if accelerator.num_processes > 1:
        send = [((r, i), send_to_device(rows[r][i], "cpu"))
                for j, (r, owner, i) in enumerate(wanted) if owner == rank and j // local != rank]  # fmt: skip
        received = dict(gather_object(send))
        picked = [rows[r][i] if owner == rank else send_to_device(received[(r, i)], accelerator.device)
                  for r, owner, i in mine]  # fmt: skip
    else:
        picked = [rows[r][i] for r, _, i in mine]
    merged = merge_rows(picked, pad_token_id)
    if image_token_ids is not None:
        ids = torch.cat([merged["prompt_ids"], merged["completion_ids"]], dim=1)
        merged["mm_token_type_ids"] = image_token_types(ids, *image_token_ids)
    loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
    merged["num_items_in_batch"] = accelerator.gather(loss_mask.sum()).sum()
    return merged
