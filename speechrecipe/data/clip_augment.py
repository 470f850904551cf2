"""Keyword-clip and sid-crop augmentation, in place on a clip: random time shift and background-noise mixing (ks),
speed perturbation (sid, `SpeedClip` at the end).

As the Speech Commands literature trains its models (Warden 2018, arXiv:1804.03209, the
TensorFlow `speech_commands` recipe; Kim et al. 2021, BC-ResNet): each clip moves by up to
±`shift_ms` (zeros fill the gap) and, with probability `noise_prob`, gets a random stretch of a
background-noise recording added at a volume drawn uniformly from [0, `noise_volume`] of its
full scale; the sum is clipped to [-1, 1]. Every draw comes from the sample's own `rng`, so a
clip is augmented the same way whether it is read from its file or sliced from a pack, in any
worker, after any resume.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class ClipAugment:
    """Shift and noise for one clip (a float32 numpy array, changed in place)."""

    sample_rate: int
    shift_ms: float = 100.0
    noise_prob: float = 0.8
    noise_volume: float = 0.1
    noises: list[np.ndarray] = field(default_factory=list)  # float32 recordings at sample_rate

    def __call__(self, clip: np.ndarray, rng: random.Random) -> None:
        n = len(clip)
        shift = rng.randint(-self.max_shift, self.max_shift) if self.max_shift else 0
        shift = max(-n, min(n, shift))  # a clip shorter than the shift becomes silence
        if shift > 0:  # earlier: the clip's start is cut, zeros at its end
            clip[: n - shift] = clip[shift:].copy()
            clip[n - shift :] = 0.0
        elif shift < 0:
            clip[-shift:] = clip[: n + shift].copy()
            clip[:-shift] = 0.0
        if self.noises and rng.random() < self.noise_prob:
            volume = rng.uniform(0.0, self.noise_volume)
            noise = self.noises[rng.randrange(len(self.noises))]
            start = rng.randrange(max(len(noise) - n, 0) + 1)
            part = noise[start : start + n]
            if len(part) < n:
                part = np.resize(part, n)  # a recording shorter than the clip repeats
            clip += np.float32(volume) * part
            np.clip(clip, -1.0, 1.0, out=clip)

    @property
    def max_shift(self) -> int:
        return int(self.shift_ms * self.sample_rate / 1000)


def load_noises(files: Sequence[Path], sample_rate: int, region: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """The `region` (fractions of its length) of each recording, as float32 at `sample_rate`."""
    from speechrecipe.data.audio import read_audio

    noises = []
    for path in files:
        wav = read_audio(path, sample_rate=sample_rate).numpy().astype(np.float32)
        noises.append(wav[int(region[0] * len(wav)) : int(region[1] * len(wav))].copy())
    return [noise for noise in noises if len(noise)]


@dataclass
class SpeedClip:
    """Speed perturbation of one crop, in place: it plays at a speed drawn from `speeds` (resampled, so
    tempo, pitch and formants move together, as Kaldi's 0.9/1.0/1.1) and keeps its length: a slower
    one is cut to its middle, a faster one is repeated to fill it. The draw comes from the sample's rng."""

    sample_rate: int
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)

    def __call__(self, clip: np.ndarray, rng: random.Random) -> None:
        speed = rng.choice(self.speeds)
        if speed == 1.0 or len(clip) == 0:
            return
        import torch
        import torchaudio.functional as F

        played = F.resample(torch.from_numpy(clip.copy()), int(round(self.sample_rate * speed)), self.sample_rate).numpy()
        n = len(clip)
        if len(played) >= n:
            start = (len(played) - n) // 2
            clip[:] = played[start : start + n]
        else:
            clip[:] = np.resize(played, n)
