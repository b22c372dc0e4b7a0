"""Length-bucketed batches under a padded-frame budget, sharded across ranks, resumable mid-epoch."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any


class BucketBatchSampler:
    """Batches of similar-length utterances whose padded size stays within a frame budget.

    Utterances are sorted by length and cut greedily into batches so that
    ``batch_size * longest <= max_frames`` (an utterance longer than the budget gets a batch of its own).
    Batch composition is fixed by ``seed``; the order of batches is shuffled every epoch from
    ``seed + epoch``. The number of batches therefore never changes between epochs, which keeps Lightning's
    epoch length and LR schedules exact.

    With several ranks each rank takes every ``num_replicas``-th batch of the shuffled list. To give every
    rank the same number of batches (a rank that runs out first would hang DDP's all-reduce) the largest
    batches are split in two until the count divides evenly, so every utterance is still seen exactly once
    per epoch. Only when there are fewer utterances than ranks are batches repeated. With ``drop_last`` the
    surplus batches are dropped instead of split.

    Use it as ``DataLoader(dataset, batch_sampler=sampler)``; call ``set_epoch`` before each epoch.

    Args:
        lengths: length of every utterance (e.g. feature frames).
        max_frames: budget of padded frames per batch (batch size x longest length).
        shuffle: shuffle the batch order each epoch.
        seed: seed for batch composition (tie-breaking) and order.
        num_replicas: number of ranks (world size).
        rank: this rank, in ``[0, num_replicas)``.
        drop_last: drop surplus batches instead of splitting batches to even out ranks.
        max_batch_size: optional cap on utterances per batch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        max_batch_size: int | None = None,
    ) -> None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be > 0, got {max_frames}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
        self.lengths = [int(n) for n in lengths]
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.max_batch_size = max_batch_size
        self.epoch = 0
        self.batches_yielded = 0  # in the current pass, including skipped ones when resuming
        self._skip = 0
        self._batches = self._even_out(self._fill_batches())

    def _fill_batches(self) -> list[list[int]]:
        """Greedy batches over the length-sorted utterances."""
        tie_break = random.Random(self.seed)
        keys = [tie_break.random() for _ in self.lengths]
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], keys[i]))
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in order:
            # Sorted ascending, so the newcomer is the longest of the batch.
            longest_if_added = max(longest, self.lengths[index])
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or (len(current) + 1) * longest_if_added > self.max_frames):
                batches.append(current)
                current, longest_if_added = [], self.lengths[index]
            current.append(index)
            longest = longest_if_added
        if current:
            batches.append(current)
        return batches

    def _even_out(self, batches: list[list[int]]) -> list[list[int]]:
        """Split the largest batches until the batch count divides evenly among ranks."""
        if self.drop_last or not batches:
            return batches
        while len(batches) % self.num_replicas:
            largest = max(range(len(batches)), key=lambda i: len(batches[i]))
            if len(batches[largest]) < 2:
                # Fewer utterances than ranks: repeat batches so no rank is left without work.
                shortfall = -len(batches) % self.num_replicas
                return batches + [list(batches[i % len(batches)]) for i in range(shortfall)]
            batch = batches.pop(largest)
            half = len(batch) // 2
            batches[largest:largest] = [batch[:half], batch[half:]]
        return batches

    def epoch_batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch, in order."""
        batches = list(self._batches)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(batches)
        if self.drop_last:
            batches = batches[: len(batches) - len(batches) % self.num_replicas]
        return batches[self.rank :: self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order to produce; a different epoch discards any resume position."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._skip = 0
            self.batches_yielded = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches()
        start, self._skip = self._skip, 0
        self.batches_yielded = start
        for batch in batches[start:]:
            self.batches_yielded += 1
            yield list(batch)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the full epoch, even when resuming part-way)."""
        total = len(self._batches)
        if self.drop_last:
            total -= total % self.num_replicas
        return total // self.num_replicas

    @property
    def resume_position(self) -> int:
        """Batches the next pass will skip (set by ``load_state_dict``)."""
        return self._skip

    def state_dict(self) -> dict[str, Any]:
        """Position to resume from: the epoch and how many of its batches were already produced."""
        return {"epoch": self.epoch, "batches_yielded": self.batches_yielded, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next pass produces only the batches after ``batches_yielded`` of ``epoch``."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler uses {self.seed}")
        self.epoch = int(state["epoch"])
        self._skip = int(state["batches_yielded"])
        self.batches_yielded = self._skip
