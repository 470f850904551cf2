"""A manifest as a torch Dataset; the preprocessor turns rows into samples and batches."""
from __future__ import annotations

import random
from typing import Any, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from speechrecipe.data.sampler import EpochBatchSampler, resume_from


class Preprocessor(Protocol):
    """Picklable, CUDA-free: runs inside DataLoader workers."""

    def preprocessing(self, row: dict, rng: random.Random) -> dict: ...

    def collate_fn(self, samples: list[dict]) -> dict: ...

    def find_length(self, row: dict) -> int: ...


class ManifestDataset(Dataset):
    """Rows of a JSONL manifest; items are keyed by (index, sample seed)."""

    def __init__(self, rows: Sequence[dict], preprocessor: Preprocessor):
        self.rows = list(rows)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        return self.preprocessor.preprocessing(self.rows[index], random.Random(seed))

    def lengths(self) -> list[int]:
        return [self.preprocessor.find_length(row) for row in self.rows]


def make_loader(
    dataset: ManifestDataset,
    sampler: EpochBatchSampler,
    num_workers: int,
    epoch: int = 0,
    position: int = 0,
    endless: bool = False,
    pin_memory: bool = False,
    worker_init_fn=None,
) -> DataLoader:
    """A DataLoader over the sampler's batches; `endless` runs across epochs from (epoch, position)."""
    batches: Any = resume_from(sampler, epoch, position) if endless else sampler.epoch_batches(epoch)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=dataset.preprocessor.collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        # A private generator: creating a loader must not consume the global torch RNG.
        generator=torch.Generator(),
        multiprocessing_context="fork" if num_workers > 0 else None,
        worker_init_fn=worker_init_fn,
    )
