"""SpecAugment (Park et al., 2019) on frame features [B, F, D]: frequency and time masks."""
from __future__ import annotations

import torchaudio
from torch import Tensor, nn


class SpecAugment(nn.Module):
    """`num_freq_masks` masks of up to `freq_mask_bins` feature bins and `num_time_masks` masks of
    up to `time_mask_frames` frames (at most `time_mask_max_ratio` of the frames each), drawn
    independently per utterance. Masked values become 0, the mean of mean-normalised features."""

    def __init__(
        self,
        freq_mask_bins: int = 27,
        num_freq_masks: int = 2,
        time_mask_frames: int = 40,
        num_time_masks: int = 2,
        time_mask_max_ratio: float = 0.2,
    ):
        super().__init__()
        self.num_freq_masks, self.num_time_masks = num_freq_masks, num_time_masks
        self.freq = torchaudio.transforms.FrequencyMasking(freq_mask_bins, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(time_mask_frames, iid_masks=True, p=time_mask_max_ratio)

    def forward(self, feats: Tensor) -> Tensor:
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, D, F]: iid masks need a channel axis
        for _ in range(self.num_freq_masks):
            x = self.freq(x)
        for _ in range(self.num_time_masks):
            x = self.time(x)
        return x.squeeze(1).transpose(1, 2)


class SeededSpecAugment(nn.Module):
    """SpecAugment whose masks come from each sample's own seed: features [B, F, D], lens [B], seeds [B].

    `num_freq_masks` masks of a width drawn from 0..`freq_mask_bins` bins and `num_time_masks` of
    0..`time_mask_frames` frames (within each sample's valid frames), set to 0. A sample gets the same
    masks in any batch, rank or worker, and after an exact resume (the seeds come from the sampler).
    """

    SALT = 0x5EC_A09  # masks draw from another stream than the waveform augmentation of the same seed

    def __init__(self, freq_mask_bins: int = 7, num_freq_masks: int = 2, time_mask_frames: int = 20,
                 num_time_masks: int = 2):
        super().__init__()
        self.freq_mask_bins, self.num_freq_masks = freq_mask_bins, num_freq_masks
        self.time_mask_frames, self.num_time_masks = time_mask_frames, num_time_masks

    def forward(self, feats: Tensor, lens: Tensor, seeds: Tensor) -> Tensor:
        import random

        import torch

        batch, frames, dim = feats.shape
        spans = []  # (sample, axis, start, end)
        for b, (seed, length) in enumerate(zip(seeds.tolist(), lens.tolist())):
            rng = random.Random(seed ^ self.SALT)
            for _ in range(self.num_freq_masks):
                width = rng.randint(0, min(self.freq_mask_bins, dim))
                start = rng.randint(0, dim - width)
                spans.append((b, 2, start, start + width))
            for _ in range(self.num_time_masks):
                width = rng.randint(0, min(self.time_mask_frames, max(int(length), 0)))
                start = rng.randint(0, max(int(length) - width, 0))
                spans.append((b, 1, start, start + width))
        keep = torch.ones(batch, frames, dim, dtype=torch.bool, device=feats.device)
        for b, axis, start, end in spans:
            if axis == 2:
                keep[b, :, start:end] = False
            else:
                keep[b, start:end, :] = False
        return feats * keep.to(feats.dtype)
