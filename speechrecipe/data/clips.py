"""Utterance-classification samples: a row's clip and its class index per label field.

A row's clip is the whole file, or, when the row has a "start", the `num_frames` frames of the
file from that frame on (e.g. a 1 s `_silence_` crop of a long noise recording). Both count
frames of the file at its own rate, as the manifest stores them. With a pack (data/packed.py) the
clip is sliced from it instead of read from the file: the same samples, without opening a file.
Each sample's seed drives, in this order, its random crop and its augmentation, so both paths give
the same samples; training batches carry the seeds ("seeds" [B]) for augmentation in the model.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from speechrecipe.data.audio import read_audio
from speechrecipe.data.packed import PackedClips
from speechrecipe.data.preprocessors import WaveformBatcher


@dataclass
class FieldLabels:
    """row → {"labels": [class index of row[field] for each field]}; picklable for DataLoader workers."""

    fields: tuple[str, ...]
    indexes: tuple[dict[str, int], ...]

    def __call__(self, row: dict) -> dict:
        return {"labels": [index[row[field]] for field, index in zip(self.fields, self.indexes)]}


@dataclass
class Clip(WaveformBatcher):
    """The row's clip with its labels; with `max_secs`, a longer clip is cropped at random to it, and with
    `augment` (a callable changing a float32 numpy clip in place from an rng) it is augmented (training)."""

    labels: FieldLabels | None = None
    max_secs: float | None = None
    packed: PackedClips | None = None
    augment: Callable[[np.ndarray, random.Random], None] | None = None

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        offset, frames = self._span(row, rng)
        if self.packed is None:
            wav = read_audio(row["path"], int(row.get("start", 0)) + offset, frames, self.sample_rate)
        else:
            wav = torch.from_numpy(self.packed.clip(row["id"], *self._packed_span(row, offset, frames)))
        if self.augment is not None:
            self.augment(wav.numpy(), rng)
        return {"id": row["id"], "wav": wav, **self._labels(row)}

    def make_batch(self, rows: list[dict], seeds: list[int]) -> dict:
        """With a pack, the padded batch is sliced from it in one pass (no per-clip tensors)."""
        if self.packed is None:
            batch = super().make_batch(rows, seeds)
        else:
            rngs = [random.Random(seed) for seed in seeds]
            spans = [(row["id"], *self._packed_span(row, *self._span(row, rng))) for row, rng in zip(rows, rngs)]
            wavs, lens = self.packed.batch(spans)
            if self.augment is not None:
                samples = wavs.numpy()
                for i, rng in enumerate(rngs):
                    self.augment(samples[i, : int(lens[i])], rng)
            batch = self.assemble([{"id": row["id"], **self._labels(row)} for row in rows], wavs, lens)
        batch["seeds"] = torch.tensor(seeds, dtype=torch.long)
        return batch

    def _span(self, row: dict, rng: random.Random | None) -> tuple[int, int]:
        """(offset into the row's clip, frames), in frames of the file; a random crop with max_secs."""
        offset, frames = 0, int(row["num_frames"])
        if self.max_secs is not None:
            want = int(self.max_secs * int(row["sample_rate"]))
            if frames > want:
                offset, frames = rng.randrange(frames - want + 1), want
        return offset, frames

    def _packed_span(self, row: dict, offset: int, frames: int) -> tuple[int, int]:
        """The span in frames of the pack, which holds the clip at the target rate (-1: to its end)."""
        if frames == int(row["num_frames"]):
            return 0, -1
        ratio = self.sample_rate / int(row["sample_rate"])
        return round(offset * ratio), int(frames * ratio)

    def _labels(self, row: dict) -> dict:
        return self.labels(row) if self.labels else {}
