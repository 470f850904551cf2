"""BC-ResNet (Kim et al., "Broadcasted Residual Learning for Efficient Keyword Spotting", Interspeech 2021).

A small 2D-convolution keyword model on log-mel features: each block runs a frequency-wise
depthwise convolution (with SubSpectralNorm), averages over frequency, runs a dilated temporal
depthwise-separable convolution on that 1D signal and broadcasts it back over frequency. BC-ResNet-1
has about 9k parameters and reaches 96.9 % on Speech Commands v0.02 (12 classes) in the paper.

Written from the paper's description; the layout (stages of 2, 2, 4, 4 blocks; channels 2c, c, 1.5c,
2c, 2.5c, 4c for width c = 8 * scale; frequency strides in stages 2 and 3; temporal dilation 2^stage)
follows it. Padding in a batch never changes a clip's scores: frames past each clip's length are
zeroed before every temporal convolution (as a clip alone sees zero padding), and the classifier
averages over valid frames only. Input [B, F, D] features with D a multiple of 40 (40 or 80 mel bins).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechrecipe.errors import ConfigError
from speechrecipe.nn.pooling import length_mask

BLOCKS_PER_STAGE = (2, 2, 4, 4)
STRIDED_STAGES = (1, 2)  # stages whose first block halves the frequency axis
SUB_BANDS = 5  # SubSpectralNorm groups


class SubSpectralNorm(nn.Module):
    """BatchNorm with separate statistics for each of `groups` frequency sub-bands: x [B, C, D, F]."""

    def __init__(self, channels: int, groups: int = SUB_BANDS):
        super().__init__()
        self.groups = groups
        self.norm = nn.BatchNorm2d(channels * groups)

    def forward(self, x: Tensor) -> Tensor:
        b, c, d, f = x.shape
        return self.norm(x.reshape(b, c * self.groups, d // self.groups, f)).reshape(b, c, d, f)


class BCResBlock(nn.Module):
    """One broadcasted residual block; a transition block (channels change) has no identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stage: int, freq_stride: int, dropout: float):
        super().__init__()
        self.transition = in_channels != out_channels
        layers: list[nn.Module] = []
        if self.transition:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]
        layers += [nn.Conv2d(out_channels, out_channels, (3, 1), (freq_stride, 1), (1, 0), groups=out_channels, bias=False),
                   SubSpectralNorm(out_channels)]
        self.frequency = nn.Sequential(*layers)
        dilation = 2**stage
        self.temporal = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                      groups=out_channels, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, C, D, F] (zero past each clip's frames), mask [B, 1, 1, F] -> [B, C', D', F]."""
        two_d = self.frequency(x)
        one_d = self.temporal(two_d.mean(dim=2, keepdim=True) * mask)
        out = two_d + one_d if self.transition else x + two_d + one_d
        return torch.relu(out) * mask


class BCResNet(nn.Module):
    """BC-ResNet-`scale` over features [B, F, D]: one logits tensor per label field (UtteranceClassifier's interface)."""

    def __init__(self, input_dim: int, num_classes: int | list[int], scale: float = 1.0, dropout: float = 0.1):
        super().__init__()
        if input_dim % (8 * SUB_BANDS):
            raise ConfigError(f"BC-ResNet halves the feature bins 3 times into {SUB_BANDS} sub-bands, so it needs "
                              f"a multiple of {8 * SUB_BANDS}; got {input_dim}: use 40 or 80 mel bins")
        base = max(int(round(8 * scale)), 1)
        c = [2 * base, base, int(1.5 * base), 2 * base, int(2.5 * base), 4 * base]
        self.head = nn.Sequential(nn.Conv2d(1, c[0], 5, (2, 1), 2, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU())
        blocks = []
        for stage, count in enumerate(BLOCKS_PER_STAGE):
            for i in range(count):
                stride = 2 if stage in STRIDED_STAGES and i == 0 else 1
                blocks.append(BCResBlock(c[stage] if i == 0 else c[stage + 1], c[stage + 1], stage, stride, dropout))
        self.blocks = nn.ModuleList(blocks)
        bins = input_dim // 8
        self.tail = nn.Sequential(
            nn.Conv2d(c[4], c[4], (bins, 5), padding=(0, 2), groups=c[4], bias=False),
            nn.Conv2d(c[4], c[5], 1, bias=False), nn.BatchNorm2d(c[5]), nn.ReLU(),
        )
        sizes = [num_classes] if isinstance(num_classes, int) else list(num_classes)
        self.classifiers = nn.ModuleList(nn.Linear(c[5], n) for n in sizes)
        self.embedding_dim = c[5]

    def forward(self, feats: Tensor, lens: Tensor) -> list[Tensor]:
        """feats [B, F, D], lens [B] -> one logits [B, num_classes_k] per field."""
        lens = lens.clamp(min=1)
        mask = length_mask(lens, feats.shape[1]).to(feats.dtype)[:, None, None, :]  # [B, 1, 1, F]
        x = self.head(feats.transpose(1, 2).unsqueeze(1) * mask) * mask  # [B, 1, D, F]
        for block in self.blocks:
            x = block(x, mask)
        x = self.tail(x) * mask  # [B, C, 1, F]
        pooled = x.sum(dim=(2, 3)) / lens.to(x.dtype)[:, None]
        return [classifier(pooled) for classifier in self.classifiers]

