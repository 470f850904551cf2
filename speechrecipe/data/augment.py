"""On-the-fly waveform augmentation: speed perturbation, additive noise, reverberation.

Every random choice comes from the per-sample `rng`, so augmentation is reproducible
and independent of DataLoader workers.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from speechrecipe.data.audio import read_audio
from speechrecipe.data.scan import find_audio


@dataclass
class Augmenter:
    """Applies the configured augmentations to a mono waveform."""

    sample_rate: int
    speeds: tuple[float, ...] = ()
    noises: list[tuple[str, int]] = field(default_factory=list)  # (path, num_frames)
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (5.0, 20.0)
    rirs: list[str] = field(default_factory=list)
    reverb_prob: float = 0.0

    def speed(self, rng: random.Random) -> float:
        return rng.choice(self.speeds) if self.speeds else 1.0

    def __call__(self, wav: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if self.rirs and rng.random() < self.reverb_prob:
            wav = self._reverb(wav, rng)
        if self.noises and rng.random() < self.noise_prob:
            wav = self._noise(wav, rng)
        return wav

    def _noise(self, wav: torch.Tensor, rng: random.Random) -> torch.Tensor:
        path, frames = rng.choice(self.noises)
        length = wav.numel()
        start = rng.randrange(max(frames - length, 0) + 1)
        noise = read_audio(path, start, min(length, frames), self.sample_rate)
        if noise.numel() < length:
            noise = noise.repeat(math.ceil(length / max(noise.numel(), 1)))
        noise = noise[:length]
        snr = rng.uniform(*self.snr_db)
        power = wav.pow(2).mean().clamp_min(1e-10)
        noise_power = noise.pow(2).mean().clamp_min(1e-10)
        return wav + noise * torch.sqrt(power / (noise_power * 10 ** (snr / 10)))

    def _reverb(self, wav: torch.Tensor, rng: random.Random) -> torch.Tensor:
        import torchaudio.functional as F

        rir = read_audio(rng.choice(self.rirs), sample_rate=self.sample_rate)
        rir = rir / rir.norm().clamp_min(1e-8)
        peak = int(rir.abs().argmax())
        return F.fftconvolve(wav, rir)[peak : peak + wav.numel()]


def speed_perturb(wav: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
    """Play `factor` times faster by resampling (tempo and pitch change together)."""
    if factor == 1.0:
        return wav
    import torchaudio.functional as F

    return F.resample(wav, int(round(sample_rate * factor)), sample_rate)


def build_augmenter(conf, sample_rate: int) -> Augmenter | None:
    """An Augmenter from the `augment` config section, or None when all is off."""
    noises, rirs = [], []
    if conf.noise_dir:
        noises = [(str(p), _usable(p, "noise_dir").num_frames) for p in _audio_in(conf.noise_dir, "noise_dir")]
    if conf.rir_dir:
        rirs = [str(p) for p in _audio_in(conf.rir_dir, "rir_dir")]
        for path in rirs:
            _usable(Path(path), "rir_dir")
    speeds = tuple(conf.speeds) if conf.speed_perturb else ()
    if not (noises or rirs or speeds):
        return None
    return Augmenter(sample_rate, speeds, noises, float(conf.noise_prob), tuple(conf.snr_db), rirs, float(conf.reverb_prob))


def _usable(path: Path, key: str):
    """The file's AudioInfo; an unusable file stops the run before training, naming it."""
    from speechrecipe.data.audio import probe_audio
    from speechrecipe.errors import DataError

    info = probe_audio(path, full=True)
    if info.problem:
        raise DataError(f"build_dataset.augment.{key}: {path}: {info.problem}; remove it or point {key} elsewhere")
    return info


def _audio_in(folder: str, key: str) -> list[Path]:
    from speechrecipe.errors import ConfigError

    found = find_audio(Path(folder)) if Path(folder).is_dir() else []
    if not found:
        raise ConfigError(f"build_dataset.augment.{key}: {folder} holds no .wav or .flac files")
    return found
