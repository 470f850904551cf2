"""Diarization samples: chunks of recordings with per-frame speaker-activity targets.

Targets are made here, per chunk, from the manifest's RTTM segments on the upstream's frame grid
(frame i covers samples [i*hop, i*hop + win) and is labelled by who speaks at its centre).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from speechrecipe.data.audio import read_audio
from speechrecipe.data.preprocessors import WaveformBatcher


@dataclass(frozen=True)
class FrameGrid:
    """Where an upstream's frames fall, in samples at `sample_rate`."""

    sample_rate: int
    hop_samples: int
    win_samples: int

    def num_frames(self, samples: int) -> int:
        return max(0, (samples - self.win_samples) // self.hop_samples + 1)

    def centres_secs(self, start_sample: int, frames: int) -> np.ndarray:
        return (start_sample + np.arange(frames) * self.hop_samples + self.win_samples / 2) / self.sample_rate

    def frame_start_secs(self, frame: int) -> float:
        """Start of the span frame `frame` stands for (hop-long, centred on its window)."""
        return (frame * self.hop_samples + (self.win_samples - self.hop_samples) / 2) / self.sample_rate


def activity(segments: list, speakers: list[str], centres: np.ndarray) -> np.ndarray:
    """[frames, len(speakers)] float32: 1 where the speaker's segment covers the frame centre.
    Speakers not in `speakers` (beyond the model's outputs) are left out."""
    index = {s: i for i, s in enumerate(speakers)}
    labels = np.zeros((len(centres), len(speakers)), dtype=np.float32)
    for start, end, speaker in segments:
        if speaker in index:
            labels[(centres >= start) & (centres < end), index[speaker]] = 1.0
    return labels


def read_span(row: dict, start: int, samples: int, sample_rate: int) -> torch.Tensor:
    """`samples` samples at `sample_rate` from sample `start` of the row's file (fewer at its end)."""
    ratio = int(row["sample_rate"]) / sample_rate
    wav = read_audio(row["path"], int(round(start * ratio)), int(math.ceil(samples * ratio)), sample_rate)
    return wav[:samples]


@dataclass
class DiarizationChunks(WaveformBatcher):
    """Training: one random `chunk_secs` chunk per recording (the whole recording when shorter), its
    targets [B, F, num_speakers] in "labels" with "label_lens" (column k = the recording's k-th speaker
    in `order`, the stage-1 encoder)."""

    grid: FrameGrid | None = None
    chunk_secs: float = 4.0
    order: dict = field(default_factory=dict)  # recording → its speakers in output order
    num_speakers: int = 2

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        total = int(round(row["duration"] * self.sample_rate))
        chunk = int(self.chunk_secs * self.sample_rate)
        start = rng.randrange(total - chunk + 1) if total > chunk else 0
        wav = read_span(row, start, min(chunk, total), self.sample_rate)
        speakers = list(self.order.get(row["id"], []))[: self.num_speakers]
        labels = activity(row["segments"], speakers, self.grid.centres_secs(start, self.grid.num_frames(wav.numel())))
        padded = np.zeros((len(labels), self.num_speakers), dtype=np.float32)
        padded[:, : labels.shape[1]] = labels
        return {"id": row["id"], "wav": wav, "labels": torch.from_numpy(padded)}

    def collate_fn(self, samples: list[dict]) -> dict:
        batch = super().collate_fn(samples)
        lens = torch.tensor([len(s["labels"]) for s in samples], dtype=torch.long)
        labels = torch.zeros(len(samples), int(lens.max()) if samples else 0, self.num_speakers)
        for i, sample in enumerate(samples):
            labels[i, : len(sample["labels"])] = sample["labels"]
        batch["labels"], batch["label_lens"] = labels, lens
        return batch


@dataclass
class RecordingChunks(WaveformBatcher):
    """Inference: the span a chunk row names ({"start", "samples"} at `sample_rate`), no randomness."""

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        return {"id": row["id"], "wav": read_span(row, int(row["start"]), int(row["samples"]), self.sample_rate)}

    def find_length(self, row: dict) -> int:
        return int(row["samples"])
