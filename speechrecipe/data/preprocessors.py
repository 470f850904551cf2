"""Preprocessors: manifest row → sample (in DataLoader workers) and samples → batch."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

import torch

from speechrecipe.data.audio import read_audio
from speechrecipe.data.augment import Augmenter, speed_perturb


def pad_waveforms(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest; returns ([B, T], lengths)."""
    lens = torch.tensor([w.numel() for w in wavs], dtype=torch.long)
    batch = torch.zeros(len(wavs), int(lens.max()) if wavs else 0)
    for i, wav in enumerate(wavs):
        batch[i, : wav.numel()] = wav
    return batch, lens


@dataclass
class WaveformBatcher:
    """Shared collate: ids, padded waveforms, lengths, audio seconds, and any `label_keys`."""

    sample_rate: int
    label_keys: tuple[str, ...] = ()

    @property
    def inputs_per_second(self) -> int:
        """Samples per second of audio: what batch lengths and evaluation budgets count."""
        return self.sample_rate

    def collate_fn(self, samples: list[dict]) -> dict:
        wavs, lens = pad_waveforms([s["wav"] for s in samples])
        return self.assemble(samples, wavs, lens)

    def assemble(self, samples: list[dict], wavs: torch.Tensor, lens: torch.Tensor) -> dict:
        """The batch dict of padded `wavs` [B, T] and the samples' ids and `label_keys`."""
        batch = {
            "ids": [s["id"] for s in samples],
            "wavs": wavs,
            "wav_lens": lens,
            "audio_seconds": float(lens.sum()) / self.sample_rate,
        }
        for key in self.label_keys:
            batch[key] = torch.tensor([s[key] for s in samples], dtype=torch.long)
        return batch

    def make_batch(self, rows: list[dict], seeds: list[int]) -> dict:
        return self.collate_fn([self.preprocessing(row, random.Random(seed)) for row, seed in zip(rows, seeds)])

    def find_length(self, row: dict) -> int:
        return int(row["num_frames"])


CROP_MODES = ("fixed", "max")


@dataclass
class RandomCrop(WaveformBatcher):
    """Training: a random `crop_secs` window, optional augmentation.

    mode "fixed": every crop is exactly `crop_secs` (a shorter utterance repeats to fill it), so
    batches need no padding. mode "max": s3prl's `max_secs`: only an utterance longer than
    `crop_secs` is cropped (at a random start); a shorter one stays whole, never repeated, and
    the batch pads it to its longest member.
    """

    crop_secs: float = 2.0
    labels: Callable[[dict], dict] | None = None  # row → {label_key: index}
    augmenter: Augmenter | None = None
    mode: str = "fixed"

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise ValueError(f"crop mode {self.mode!r}: choose one of {', '.join(CROP_MODES)}")

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        speed = self.augmenter.speed(rng) if self.augmenter else 1.0
        file_rate = int(row["sample_rate"])
        want = int(math.ceil(self.crop_secs * file_rate * speed))
        total = int(row["num_frames"])
        start = rng.randrange(total - want + 1) if total > want else 0
        wav = read_audio(row["path"], start, min(want, total), self.sample_rate)
        wav = speed_perturb(wav, speed, self.sample_rate)
        crop = int(self.crop_secs * self.sample_rate)
        if self.mode == "fixed" and wav.numel() < crop:
            wav = wav.repeat(math.ceil(crop / max(wav.numel(), 1)))
        wav = wav[:crop]
        if self.augmenter:
            wav = self.augmenter(wav, rng)
        return {"id": row["id"], "wav": wav, **(self.labels(row) if self.labels else {})}

    def find_length(self, row: dict) -> int:
        """The crop's length in frames of the file (before speed perturbation): what batching pads."""
        crop = int(self.crop_secs * int(row["sample_rate"]))
        return crop if self.mode == "fixed" else min(int(row["num_frames"]), crop)


@dataclass
class WholeUtterance(WaveformBatcher):
    """Evaluation: the whole utterance, no randomness."""

    labels: Callable[[dict], dict] | None = None

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        wav = read_audio(row["path"], sample_rate=self.sample_rate)
        return {"id": row["id"], "wav": wav, **(self.labels(row) if self.labels else {})}


@dataclass
class TranscribedUtterance(WaveformBatcher):
    """ASR: the whole utterance (never cropped: the transcript covers all of it) and, with
    `tokenize`, its token ids, padded with 0 into "targets" [B, L] with "target_lens"."""

    tokenize: Callable[[str], list[int]] | None = None  # text → token ids; None for decoding only

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        wav = read_audio(row["path"], sample_rate=self.sample_rate)
        return with_tokens({"id": row["id"], "wav": wav}, row, self.tokenize)

    def collate_fn(self, samples: list[dict]) -> dict:
        return with_targets(super().collate_fn(samples), samples, self.tokenize)


def with_tokens(sample: dict, row: dict, tokenize: Callable[[str], list[int]] | None) -> dict:
    """The sample with its transcript's token ids ("tokens"), when there is a tokenizer (training)."""
    if tokenize is not None:
        sample["tokens"] = tokenize(row["transcript"])
    return sample


def with_targets(batch: dict, samples: list[dict], tokenize: Callable[[str], list[int]] | None) -> dict:
    """The batch with the samples' tokens padded into "targets" [B, L] and "target_lens", when there is a tokenizer."""
    if tokenize is not None:
        batch["targets"], batch["target_lens"] = pad_tokens([s["tokens"] for s in samples])
    return batch


def pad_tokens(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists → (targets [B, L] padded with 0, lengths [B])."""
    lens = torch.tensor([len(tokens) for tokens in sequences], dtype=torch.long)
    targets = torch.zeros(len(sequences), int(lens.max()) if sequences else 0, dtype=torch.long)
    for i, tokens in enumerate(sequences):
        targets[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return targets, lens


@dataclass
class LabelLookup:
    """row[field] → {key: class index}; picklable for DataLoader workers."""

    field: str
    key: str
    index: dict[str, int]

    def __call__(self, row: dict) -> dict:
        return {self.key: self.index[row[self.field]]}
