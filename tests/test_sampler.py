"""The resumable batch sampler: deterministic per (seed, epoch), resumable, length-budgeted, balanced."""
from __future__ import annotations

import itertools
from collections import Counter

from speechrecipe.data.sampler import EpochBatchSampler


def take(iterator, n):
    return list(itertools.islice(iterator, n))


def test_same_seed_same_batches_and_other_epoch_differs():
    a = EpochBatchSampler(list(range(100)), seed=3, batch_size=8)
    b = EpochBatchSampler(list(range(100)), seed=3, batch_size=8)
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)


def test_resume_at_any_position_continues_the_same_stream():
    sampler = EpochBatchSampler([1] * 50, seed=1, batch_size=7)
    full = take(sampler.iterate(0, 0), 30)
    per_epoch = sampler.num_batches(0)
    for consumed in (0, 3, per_epoch - 1, per_epoch, per_epoch + 2):
        epoch, position = divmod(consumed, per_epoch)
        assert take(sampler.iterate(epoch, position), 30 - consumed) == full[consumed:]


def test_each_sample_key_has_its_own_seed():
    keys = [k for batch in EpochBatchSampler([1] * 64, seed=0, batch_size=8).epoch_batches(0) for k in batch]
    assert len({seed for _, seed in keys}) == len(keys)
    assert sorted(i for i, _ in keys) == list(range(64))


def test_length_budget_bounds_padded_size():
    lengths = [(i * 37) % 500 + 10 for i in range(1000)]
    sampler = EpochBatchSampler(lengths, seed=0, max_batch_length=2000)
    batches = sampler.epoch_batches(0)
    assert sorted(i for b in batches for i, _ in b) == list(range(1000))
    for batch in batches:
        longest = max(lengths[i] for i, _ in batch)
        assert longest * len(batch) <= 2000 or len(batch) == 1


def test_weights_balance_classes():
    labels = [0] * 900 + [1] * 100
    weights = [1 / 900 if y == 0 else 1 / 100 for y in labels]
    sampler = EpochBatchSampler([1] * 1000, seed=0, batch_size=10, weights=weights)
    counts = Counter(labels[i] for b in sampler.epoch_batches(0) for i, _ in b)
    assert 400 < counts[1] < 600


def test_ranks_get_disjoint_equal_shares():
    lengths = [1] * 103
    shards = [EpochBatchSampler(lengths, seed=0, batch_size=4, rank=r, world_size=2).epoch_batches(0) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    ids = [[i for b in s for i, _ in b] for s in shards]
    assert not set(ids[0]) & set(ids[1])


def padding_fraction(sampler: EpochBatchSampler, lengths: list[int], epoch: int = 0) -> float:
    padded = sum(max(lengths[i] for i, _ in b) * len(b) for b in sampler.epoch_batches(epoch))
    return 1 - sum(lengths[i] for b in sampler.epoch_batches(epoch) for i, _ in b) / padded


def test_bucketed_batches_cover_every_item_once_per_epoch_with_similar_lengths():
    lengths = [(i * 7919) % 4000 + 2000 for i in range(1003)]  # 2000..5999, in no order
    for epoch in range(3):
        bucketed = EpochBatchSampler(lengths, seed=5, batch_size=10, bucket=True, bucket_batches=20)
        batches = bucketed.epoch_batches(epoch)
        assert sorted(i for b in batches for i, _ in b) == list(range(1003))
        assert sorted(len(b) for b in batches)[1:] == [10] * 100  # one short batch, from the last pool
        plain = EpochBatchSampler(lengths, seed=5, batch_size=10)
        assert padding_fraction(bucketed, lengths, epoch) < 0.1 * padding_fraction(plain, lengths, epoch)
    dropped = EpochBatchSampler(lengths, seed=5, batch_size=10, bucket=True, drop_last=True).epoch_batches(0)
    kept = [i for b in dropped for i, _ in b]
    assert len(kept) == len(set(kept)) == 1000 and all(len(b) == 10 for b in dropped)


def test_bucketed_batches_are_seeded_shuffled_and_resumable():
    lengths = [(i * 31) % 97 for i in range(500)]
    make = lambda seed: EpochBatchSampler(lengths, seed=seed, batch_size=8, bucket=True, bucket_batches=10)
    sampler = make(1)
    assert sampler.epoch_batches(0) == make(1).epoch_batches(0)
    assert sampler.epoch_batches(0) != make(2).epoch_batches(0)
    assert sampler.epoch_batches(0) != sampler.epoch_batches(1)
    longest = [max(lengths[i] for i, _ in b) for b in sampler.epoch_batches(0)]
    assert longest != sorted(longest)  # batch order is shuffled, not short-to-long
    full = take(sampler.iterate(0, 0), 200)
    per_epoch = sampler.num_batches(0)
    for consumed in (1, 17, per_epoch, per_epoch + 5):
        epoch, position = divmod(consumed, per_epoch)
        assert take(make(1).iterate(epoch, position), 200 - consumed) == full[consumed:]
