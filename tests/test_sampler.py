"""BucketBatchSampler: budget, exactly-once across ranks, equal batch counts, epoch shuffling, resume."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import DataLoader

from seq2seq.data.sampler import BucketBatchSampler

LENGTHS = [random.Random(0).randint(50, 1500) for _ in range(503)] + [5000]  # one longer than the budget


def rank_samplers(world: int, **kwargs) -> list[BucketBatchSampler]:
    return [
        BucketBatchSampler(LENGTHS, max_frames=4000, num_replicas=world, rank=r, **kwargs)
        for r in range(world)
    ]


def test_budget_respected_and_over_long_utterance_alone():
    sampler = BucketBatchSampler(LENGTHS, max_frames=4000)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        padded = len(batch) * max(LENGTHS[i] for i in batch)
        assert padded <= 4000 or len(batch) == 1
    assert [503] in batches
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("world", [2, 3])
def test_every_utterance_once_per_epoch_across_ranks(world):
    samplers = rank_samplers(world, seed=3)
    for epoch in range(2):
        seen = []
        counts = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            batches = list(sampler)
            counts.append(len(batches))
            seen.extend(i for b in batches for i in b)
        assert len(set(counts)) == 1 and counts[0] == len(samplers[0])  # ranks never wait on each other
        assert sorted(seen) == list(range(len(LENGTHS)))  # exactly once, no padding duplicates


def test_order_changes_between_epochs_but_is_reproducible():
    sampler = BucketBatchSampler(LENGTHS, max_frames=4000, seed=1)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1 and sorted(map(tuple, epoch0)) == sorted(map(tuple, epoch1))
    other = BucketBatchSampler(LENGTHS, max_frames=4000, seed=1)
    other.set_epoch(1)
    assert list(other) == epoch1


def test_no_shuffle_is_sorted_and_max_batch_size_caps():
    sampler = BucketBatchSampler(LENGTHS, max_frames=100_000, shuffle=False, max_batch_size=8)
    batches = list(sampler)
    assert max(len(b) for b in batches) == 8
    longest = [max(LENGTHS[i] for i in b) for b in batches]
    assert longest == sorted(longest)


def test_resume_mid_epoch_yields_exactly_the_remaining_batches():
    sampler = BucketBatchSampler(LENGTHS, max_frames=4000, seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    iterator = iter(sampler)
    consumed = [next(iterator) for _ in range(7)]
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["batches_yielded"] == 7 and consumed == full[:7]
    resumed = BucketBatchSampler(LENGTHS, max_frames=4000, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what the training loop does on restart: must keep the position
    assert list(resumed) == full[7:]
    assert list(resumed) == full  # the pass after that is a whole epoch again
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # a different epoch discards the position
    assert len(list(resumed)) == len(full)


def test_fewer_utterances_than_ranks_still_gives_every_rank_a_batch():
    samplers = [BucketBatchSampler([10, 20], 100, num_replicas=3, rank=r) for r in range(3)]
    assert [len(list(s)) for s in samplers] == [1, 1, 1]


def test_drop_last_drops_surplus_batches():
    samplers = rank_samplers(2, drop_last=True)
    full = len(BucketBatchSampler(LENGTHS, max_frames=4000)._batches)
    assert [len(list(s)) for s in samplers] == [full // 2, full // 2]


def test_works_as_dataloader_batch_sampler():
    dataset = [torch.zeros(n // 100 + 1) for n in LENGTHS]
    sampler = BucketBatchSampler(LENGTHS, max_frames=4000)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=len)
    sizes = list(loader)
    assert len(sizes) == len(sampler) and sum(sizes) == len(LENGTHS)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="max_frames"):
        BucketBatchSampler([1], 0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1], 10, num_replicas=2, rank=2)
