"""The paced ladder (``curriculum: paced``, docs/curriculum.md): the ladder's order, following the policy.

* :class:`PacedCursor` — the prompt cursor that skips the rest of a level once a window of its groups reaches the
  threshold pass rate, remembers the levels mastered so, and leaves them out of the next epochs;
* :func:`training_cursor` — the cursor a training run reads its prompts with (dynamic sampling, paced ladder).

Every decision is made from pass rates of gathered groups, so each process decides the same without talking.
"""

from __future__ import annotations

import math
from collections import Counter

from datasets import Dataset

from observe_r1.dynamic import PromptCursor


class PacedCursor(PromptCursor):
    """The ladder order, with mastered levels skipped, within an epoch and from then on.

    ``levels[i]`` is the ladder level of prompt ``i`` (the ladder is in file order; a level is a run of equal
    values) and ``ids[i]`` its id. :meth:`record` takes each generated group's prompt and pass rate:

    * The **window** holds the pass rates of the last ``window`` groups of one level (a group of another level
      empties it). Each time it is full (``window`` groups, or every prompt of a smaller level), it decides
      whether its level is **mastered**: mean ≥ ``threshold``.
    * When the window's level is mastered and the cursor still stands inside it, the cursor jumps to the level's
      end: the rest of the level is **skipped** this epoch.
    * Each visit of a level starts where its previous visit stopped (its prompts in a rotating order): the prompts a
      skip jumped over come first next time, instead of the same first prompts of each level every epoch.
    * A level stays mastered until a later full window of it says otherwise. A new epoch leaves out the levels
      mastered when it starts (they are skipped as a whole). When fewer prompts than a window (or than one
      round, if larger) would be left, the memory is cleared instead: that epoch **re-checks** every level from
      the first, window by window. So an epoch never trains a handful of prompts over and over.

    Skipped prompts are reported once, by :meth:`pop_skipped`. The window and the memory travel in
    :meth:`state_dict`, so a resumed run makes the same decisions.

    >>> cursor = PacedCursor([0, 0, 0, 0, 1, 1, 1, 1], threshold=0.75, window=2, seed=0)
    >>> cursor.take(1, new_epoch=True), cursor.record([0], [1.0])  # window not full yet
    ([0], [])
    >>> cursor.take(1, new_epoch=False), cursor.record([1], [0.5])  # full, mean 0.75: skip prompts 2 and 3
    ([1], [2, 3])
    >>> cursor.take(4, new_epoch=False), cursor.record([4, 5, 6, 7], [0.5] * 4), cursor.pop_skipped()
    ([4, 5, 6, 7], [], [2, 3])
    >>> cursor.take(2, new_epoch=True), cursor.pop_skipped(), cursor.mastered  # level 0 stays mastered
    ([4, 5], [0, 1, 2, 3], {0})
    """

    def __init__(self, levels: list, *, threshold: float, window: int, seed: int, max_epochs: int | None = None,
                 ids: list | None = None):  # fmt: skip
        super().__init__(len(levels), shuffle=False, seed=seed, max_epochs=max_epochs)
        self.levels = list(levels)
        self.level_sizes = Counter(self.levels)
        self.runs: list[tuple] = []  # (level, its prompt indices): the ladder's runs of equal levels, in order
        for index, level in enumerate(self.levels):
            if not self.runs or self.runs[-1][0] != level:
                self.runs.append((level, []))
            self.runs[-1][1].append(index)
        self.ids = list(ids) if ids is not None else list(range(len(levels)))
        self.threshold, self.window = threshold, window
        self.window_level = None
        self.pass_rates: list[float] = []
        self.mastered: set = set()  # levels whose last full window reached the threshold
        self.left_out: list = []  # levels this epoch leaves out (mastered when it started)
        self.skipped_total = 0
        self.rechecks = 0  # epochs that cleared the memory and checked every level again
        self.taken: dict = {}  # prompts of each level generated for so far, every epoch
        self.rotation: dict = {}  # where each level starts this epoch (``taken`` when the epoch began)
        self._pending: list[int] = []  # skipped, not yet reported

    def order(self, epoch: int) -> list[int]:
        """The current epoch's prompts: ladder order by level, each level from where its last visit stopped,
        without the levels this epoch leaves out."""
        key = (epoch, tuple(self.left_out), tuple(sorted(self.rotation.items())))
        if self._order is None or self._order[0] != key:
            out, indices = set(self.left_out), []
            for level, run in self.runs:
                if level not in out:
                    start = self.rotation.get(level, 0) % len(run)
                    indices += run[start:] + run[:start]
            self._order = (key, indices)
        return self._order[1]

    def take(self, count: int, *, new_epoch: bool) -> list[int] | None:
        """The next ``count`` prompts (see :meth:`PromptCursor.take`), counted per level for the rotation."""
        indices = super().take(count, new_epoch=new_epoch)
        for index in indices or []:
            self.taken[self.levels[index]] = self.taken.get(self.levels[index], 0) + 1
        return indices

    def next_epoch(self, count: int) -> None:
        """A new epoch leaves out the mastered levels, unless fewer than a window (or ``count``) would be left."""
        super().next_epoch(count)
        if sum(level not in self.mastered for level in self.levels) < max(count, self.window):
            self.mastered, self.rechecks = set(), self.rechecks + 1
        self.left_out, self.rotation = sorted(self.mastered), dict(self.taken)
        self._skip([i for i, level in enumerate(self.levels) if level in self.mastered])

    def record(self, indices: list[int], pass_rates: list[float]) -> list[int]:
        """Groups just generated (prompt index, pass rate, in order); returns the prompts skipped after them."""
        for index, rate in zip(indices, pass_rates, strict=True):
            if self.levels[index] != self.window_level:
                self.window_level, self.pass_rates = self.levels[index], []
            self.pass_rates = [*self.pass_rates, float(rate)][-self.window :]
            if len(self.pass_rates) >= min(self.window, self.level_sizes[self.window_level]):  # full: it decides
                if self.window_pass_rate() >= self.threshold:
                    self.mastered.add(self.window_level)
                else:
                    self.mastered.discard(self.window_level)
        order = self.order(self.epoch)
        end = self.position
        if self.window_level in self.mastered:
            while end < len(order) and self.levels[order[end]] == self.window_level:
                end += 1
        skipped, self.position = order[self.position : end], end
        self._skip(skipped)
        return skipped

    def _skip(self, indices: list[int]) -> None:
        self._pending += indices
        self.skipped_total += len(indices)

    def pop_skipped(self) -> list:
        """Ids of the prompts skipped since the last call."""
        skipped, self._pending = [self.ids[i] for i in self._pending], []
        return skipped

    def metrics(self) -> dict[str, float]:
        """What the pace logs each step: prompts skipped so far, the window's pass rate, the level it is at, how
        many levels are mastered, and how many epochs re-checked every level."""
        order = self.order(self.epoch)
        level = self.levels[order[self.position]] if self.position < len(order) else self.levels[-1]
        return {"pace_skipped_total": float(self.skipped_total), "pace_window_pass_rate": self.window_pass_rate(),
                "pace_level": float(level), "pace_mastered_levels": float(len(self.mastered)),
                "pace_rechecks": float(self.rechecks)}  # fmt: skip

    def window_pass_rate(self) -> float:
        """Mean pass rate of the window (nan while it is empty)."""
        return sum(self.pass_rates) / len(self.pass_rates) if self.pass_rates else math.nan

    def state_dict(self) -> dict:
        """The cursor's position, the window and the memory."""
        return super().state_dict() | {"window_level": self.window_level, "pass_rates": list(self.pass_rates),
                                       "skipped_total": self.skipped_total, "mastered": sorted(self.mastered),
                                       "left_out": list(self.left_out), "rechecks": self.rechecks,
                                       "taken": _pairs(self.taken), "rotation": _pairs(self.rotation)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` (one written before the memory existed starts with none)."""
        if "pass_rates" not in state:
            raise ValueError(
                "this checkpoint was written without curriculum 'paced' (resume with the same curriculum)"
            )
        super().load_state_dict(state)
        self.window_level, self.pass_rates = state["window_level"], list(state["pass_rates"])
        self.skipped_total = int(state["skipped_total"])
        self.mastered, self.left_out = set(state.get("mastered", [])), list(state.get("left_out", []))
        self.rechecks = int(state.get("rechecks", 0))
        self.taken, self.rotation = dict(state.get("taken", [])), dict(state.get("rotation", []))
        self._order = None


def _pairs(counts: dict) -> list:
    """A level → count table as JSON keeps it: ``[[level, count], ...]`` (a level may be a float)."""
    return [[level, count] for level, count in sorted(counts.items())]


def training_cursor(dataset, args) -> PromptCursor | None:
    """The order a run's generation rounds read prompts in: a :class:`PacedCursor` over the rows' ``ladder_level``
    for ``curriculum: paced``, the file's (or a seeded shuffled) order with ``dynamic_sampling``, else None (TRL's
    data loader orders the prompts)."""
    if not (args.dynamic_sampling or args.curriculum == "paced"):
        return None
    feature = "dynamic_sampling" if args.dynamic_sampling else "curriculum 'paced'"
    if not isinstance(dataset, Dataset):  # an IterableDataset cannot be read by index
        raise ValueError(f"{feature} needs a map-style datasets.Dataset (rows read by index)")
    epochs = None if args.max_steps > 0 else math.ceil(args.num_train_epochs)
    if args.curriculum != "paced":
        return PromptCursor(len(dataset), shuffle=args.shuffle_dataset, seed=args.seed, max_epochs=epochs)
    columns = dataset.column_names
    levels = list(dataset["ladder_level"]) if "ladder_level" in columns else []
    unknown = [i for i, level in enumerate(levels) if level is None or level < 0]
    if not levels or unknown:
        raise ValueError(
            "curriculum 'paced' needs each row's ladder level (a 'stretch_level' or 'difficulty' field, as "
            "`observe-r1 ladder` writes them); "
            + (f"rows {unknown[:5]} have none" if levels else f"this dataset has only {columns}")
        )
    ids = list(dataset["id"]) if "id" in columns else None
    return PacedCursor(levels, threshold=args.pace_threshold, window=args.pace_window, seed=args.seed,
                       max_epochs=epochs, ids=ids)  # fmt: skip
