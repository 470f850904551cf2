"""Deterministic, resumable batches: each epoch's batches are a pure function of (seed, epoch).

Every sample key carries its own seed, so crops and augmentation depend on
(seed, epoch, position) alone, never on which DataLoader worker ran them: resuming
at batch k of an epoch rebuilds exactly the batches an uninterrupted run would see.
"""
from __future__ import annotations

import copy
import random
from typing import Iterator, Sequence

Key = tuple[int, int]  # (row index, sample seed)
_MIX = 1_000_003


def sample_seed(seed: int, epoch: int, slot: int) -> int:
    return (seed * _MIX * _MIX + epoch * _MIX + slot) % (2**63)


class EpochBatchSampler:
    """Batches of (index, seed) keys.

    Either a fixed `batch_size`, or a `max_batch_length` budget on the padded size
    (longest item × count, in the units of `lengths`) over length-sorted buckets, so
    memory stays flat as lengths vary. `bucket` with a fixed `batch_size`: the shuffled
    order is cut into pools of `bucket_batches` batches, each pool sorted by length and
    cut into batches, and the batches shuffled, so a batch holds similar lengths (less
    padding) and each epoch still covers every item once. `weights` draws each epoch with replacement
    (class-balanced sampling). `rank`/`world_size` shard batches for torchrun.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        seed: int,
        batch_size: int | None = None,
        max_batch_length: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        weights: Sequence[float] | None = None,
        bucket_batches: int = 100,
        bucket: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if (batch_size is None) == (max_batch_length is None):
            raise ValueError("give exactly one of batch_size and max_batch_length")
        self.lengths = list(lengths)
        self.seed, self.batch_size, self.max_batch_length = seed, batch_size, max_batch_length
        self.shuffle, self.drop_last, self.weights = shuffle, drop_last, weights
        self.bucket_batches, self.bucket, self.rank, self.world_size = bucket_batches, bucket, rank, world_size
        self.complete = False  # shard(): keep the batches left over after equal shares
        self._cache: dict[int, list[list[Key]]] = {}

    def _order(self, rng: random.Random) -> list[int]:
        n = len(self.lengths)
        if self.weights is not None:
            return rng.choices(range(n), weights=self.weights, k=n)
        order = list(range(n))
        if self.shuffle:
            rng.shuffle(order)
        return order

    def _fixed(self, order: list[int], rng: random.Random) -> list[list[int]]:
        size = self.batch_size
        if not self.bucket:
            batches = [order[i : i + size] for i in range(0, len(order), size)]
        else:  # only the last pool can leave a short batch
            pool, batches = max(1, self.bucket_batches) * size, []
            for start in range(0, len(order), pool):
                chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
                batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches = [b for b in batches if len(b) == size]
        if self.bucket and self.shuffle:
            rng.shuffle(batches)
        return batches

    def _budget(self, order: list[int], rng: random.Random) -> list[list[int]]:
        budget, batches = self.max_batch_length, []
        bucket = max(1, self.bucket_batches) * 64
        for start in range(0, len(order), bucket):
            chunk = sorted(order[start : start + bucket], key=lambda i: self.lengths[i])
            current: list[int] = []
            for index in chunk:
                longest = max([self.lengths[i] for i in current] + [self.lengths[index]])
                if current and longest * (len(current) + 1) > budget:
                    batches.append(current)
                    current = []
                current.append(index)
            if current:
                batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def epoch_batches(self, epoch: int) -> list[list[Key]]:
        """This epoch's batches (for this rank), each key with its sample seed."""
        cached = self._cache.get(epoch)
        if cached is None:  # a pure function of (seed, epoch): the loader's thread may compute it too
            rng = random.Random(sample_seed(self.seed, epoch, -1))
            order = self._order(rng)
            batches = self._fixed(order, rng) if self.batch_size else self._budget(order, rng)
            keyed, slot = [], 0
            for batch in batches:
                keyed.append([(i, sample_seed(self.seed, epoch, slot + j)) for j, i in enumerate(batch)])
                slot += len(batch)
            even = self.world_size > 1 and not self.complete
            usable = len(keyed) - len(keyed) % self.world_size if even else len(keyed)
            cached = keyed[self.rank : usable : self.world_size]
            # Keep two epochs: the loader prefetches the next while the trainer counts this one.
            self._cache = {**{e: b for e, b in self._cache.items() if e == epoch - 1}, epoch: cached}
        return cached

    def shard(self, rank: int, world_size: int, complete: bool = False) -> "EpochBatchSampler":
        """The same batches, this rank's share of them (every world_size-th): equal counts per rank (training),
        or, `complete`, every batch on some rank (evaluation)."""
        shard = copy.copy(self)
        shard.rank, shard.world_size, shard.complete, shard._cache = rank, world_size, complete, {}
        return shard

    def num_batches(self, epoch: int) -> int:
        return len(self.epoch_batches(epoch))

    def iterate(self, epoch: int = 0, position: int = 0) -> Iterator[list[Key]]:
        """Batches from (epoch, position) onwards, across epochs, forever."""
        while True:
            batches = self.epoch_batches(epoch)
            if not batches:
                raise ValueError("the sampler produced no batch: is the training set empty?")
            yield from batches[position:]
            epoch, position = epoch + 1, 0

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.epoch_batches(0))

    def __len__(self) -> int:
        return self.num_batches(0)


class _From:
    """An iterable over sampler.iterate(epoch, position), for DataLoader's batch_sampler."""

    def __init__(self, sampler: EpochBatchSampler, epoch: int, position: int):
        self.sampler, self.epoch, self.position = sampler, epoch, position

    def __iter__(self) -> Iterator[list[Key]]:
        return self.sampler.iterate(self.epoch, self.position)


def resume_from(sampler: EpochBatchSampler, epoch: int, position: int) -> _From:
    return _From(sampler, epoch, position)
