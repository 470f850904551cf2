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
