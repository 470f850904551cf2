"""A manifest as a torch Dataset; the preprocessor turns rows into samples and batches."""
from __future__ import annotations

import random
from typing import Any, Iterable, Iterator, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from speechrecipe.data.sampler import EpochBatchSampler, resume_from


class Preprocessor(Protocol):
    """Picklable, CUDA-free: runs inside DataLoader workers."""

    def preprocessing(self, row: dict, rng: random.Random) -> dict: ...

    def collate_fn(self, samples: list[dict]) -> dict: ...

    def make_batch(self, rows: list[dict], seeds: list[int]) -> dict:
        """The batch of these rows (each with its sample seed): collate_fn of their samples, or faster."""
        ...

    def find_length(self, row: dict) -> int: ...


class ManifestDataset(Dataset):
    """Rows of a JSONL manifest; items are keyed by (index, sample seed)."""

    def __init__(self, rows: Sequence[dict], preprocessor: Preprocessor):
        self.rows = list(rows)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = _index_seed(key)
        return self.preprocessor.preprocessing(self.rows[index], random.Random(seed))

    def __getitems__(self, keys: list) -> dict:
        """A whole batch in one call (the DataLoader's batched fetch): lets a preprocessor vectorize it."""
        pairs = [_index_seed(key) for key in keys]
        return self.preprocessor.make_batch([self.rows[i] for i, _ in pairs], [seed for _, seed in pairs])

    def lengths(self) -> list[int]:
        return [self.preprocessor.find_length(row) for row in self.rows]


def _index_seed(key: int | tuple[int, int]) -> tuple[int, int]:
    return key if isinstance(key, tuple) else (key, 0)


def _collated(batch: dict) -> dict:
    """ManifestDataset.__getitems__ already returns the batch."""
    return batch


def make_loader(
    dataset: ManifestDataset,
    sampler: EpochBatchSampler,
    num_workers: int,
    epoch: int = 0,
    position: int = 0,
    endless: bool = False,
    pin_memory: bool = False,
    worker_init_fn=None,
) -> Iterable[dict]:
    """Batches of the sampler's keys; `endless` runs across epochs from (epoch, position).

    With workers, a DataLoader; without, the batches are made in this process by InlineLoader.
    """
    batches: Any = resume_from(sampler, epoch, position) if endless else sampler.epoch_batches(epoch)
    if num_workers == 0:
        return InlineLoader(dataset, batches, pin_memory)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=_collated,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4,
        # A private generator: creating a loader must not consume the global torch RNG.
        generator=torch.Generator(),
        multiprocessing_context="fork",
        worker_init_fn=worker_init_fn,
    )


class InlineLoader:
    """What a DataLoader with num_workers=0 yields, without its per-batch machinery.

    That machinery (fetcher, profiler hooks, index bookkeeping) costs ~0.15 ms a batch here,
    a few percent of a keyword-spotting step on a CPU (bench/RESULTS.md).
    """

    def __init__(self, dataset: ManifestDataset, batches: Iterable[list], pin_memory: bool = False):
        self.dataset, self.batches, self.pin_memory = dataset, batches, pin_memory

    def __iter__(self) -> Iterator[dict]:
        for keys in self.batches:
            batch = self.dataset.__getitems__(list(keys))
            yield _pinned(batch) if self.pin_memory else batch

    def __len__(self) -> int:
        return len(self.batches)


def _pinned(batch: Any) -> Any:
    """Tensors of a batch in page-locked memory, for asynchronous copies to the GPU."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    return batch
