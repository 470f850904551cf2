"""Utterance-classification samples: a row's clip and its class index per label field.

A row's clip is the whole file, or, when the row has a "start", the `num_frames` frames of the
file from that frame on (e.g. a 1 s `_silence_` crop of a long noise recording). Both count
frames of the file at its own rate, as the manifest stores them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from speechrecipe.data.audio import read_audio
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
    """The row's clip with its labels; with `max_secs`, a longer clip is cropped at random to it (training)."""

    labels: FieldLabels | None = None
    max_secs: float | None = None

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        start, frames = int(row.get("start", 0)), int(row["num_frames"])
        if self.max_secs is not None:
            want = int(self.max_secs * int(row["sample_rate"]))
            if frames > want:
                start += rng.randrange(frames - want + 1)
                frames = want
        wav = read_audio(row["path"], start, frames, self.sample_rate)
        return {"id": row["id"], "wav": wav, **(self.labels(row) if self.labels else {})}
