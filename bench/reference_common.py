"""What bench/reference_sid.py and bench/reference_intent.py share: plain PyTorch, no speechrecipe.

Log-mel features with per-utterance mean normalisation, a TDNN (1D convolutions, ReLU, batch norm),
statistics pooling over valid frames, Adam with a one-cycle learning rate, a bootstrap interval.
"""
from __future__ import annotations

import json
import time

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn

SAMPLE_RATE = 16000
HOP = 160  # 10 ms frames


def read_audio(path) -> torch.Tensor:
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == SAMPLE_RATE, f"{path}: {rate} Hz"
    return torch.from_numpy(audio)


class Features(nn.Module):
    """80 log-mel bins every 10 ms (25 ms windows), minus each utterance's mean over its valid frames."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=512, win_length=400, hop_length=HOP,
                                                        n_mels=80)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        x = (self.mel(audio) + 1e-6).log()  # (batch, mels, time)
        mask = (torch.arange(x.shape[-1]) < frames[:, None]).unsqueeze(1)
        mean = (x * mask).sum(-1, keepdim=True) / frames[:, None, None]
        return (x - mean) * mask


def tdnn(channels: int, kernels: tuple[int, ...], dilations: tuple[int, ...], n_mels: int = 80) -> nn.Sequential:
    """Conv1d + ReLU + BatchNorm per layer ('same' padding, so frame counts keep their meaning)."""
    layers, width = [], n_mels
    for k, d in zip(kernels, dilations):
        layers += [nn.Conv1d(width, channels, k, dilation=d, padding=d * (k - 1) // 2), nn.ReLU(), nn.BatchNorm1d(channels)]
        width = channels
    return nn.Sequential(*layers)


def stats_pool(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over each utterance's valid frames: (batch, 2 * channels)."""
    mask = (torch.arange(x.shape[-1]) < frames[:, None]).unsqueeze(1).float()
    n = frames[:, None].float()
    mean = (x * mask).sum(-1) / n
    var = ((x - mean.unsqueeze(-1)) ** 2 * mask).sum(-1) / n
    return torch.cat([mean, var.clamp(min=1e-5).sqrt()], dim=1)


def pad(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch and each clip's frame count."""
    audio = nn.utils.rnn.pad_sequence(clips, batch_first=True)
    return audio, torch.tensor([len(c) // HOP + 1 for c in clips])


def train(model: nn.Module, loss_of, next_batch, updates: int, max_lr: float) -> dict:
    """`updates` Adam updates with a one-cycle learning rate; loss_of(batch) -> scalar loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=updates)
    model.train()
    start, seen = time.perf_counter(), 0
    for step in range(1, updates + 1):
        batch = next_batch()
        loss = loss_of(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        seen += len(batch[0])
        if step % 50 == 0 or step == updates:
            print(f"update {step}/{updates}: loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    return {"train_seconds": round(seconds, 1), "train_utt_per_s": round(seen / seconds, 1), "utterances_seen": seen}


def interval(correct: np.ndarray, seed: int, resamples: int = 1000) -> list[float]:
    """95 % percentile bootstrap interval of the accuracy (%), resampling utterances."""
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(len(correct), size=(resamples, len(correct)))].mean(1)
    return [round(100 * float(np.percentile(means, q)), 1) for q in (2.5, 97.5)]


def epochs(n: int, batch_size: int, generator: torch.Generator):
    """Indices of shuffled batches, epoch after epoch (the last incomplete batch of each is dropped)."""
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def report(result: dict, out) -> None:
    print(json.dumps(result))
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n")
