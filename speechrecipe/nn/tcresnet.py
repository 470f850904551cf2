"""TC-ResNet (Choi et al., "Temporal Convolution for Real-time Keyword Spotting on Mobile Devices",
Interspeech 2019, arXiv:1904.03814): a residual network of 1D convolutions over time that takes the
feature bins as channels, so every layer is a short sequence of few channels, cheap on a CPU.

TC-ResNet8: a 3-tap convolution to 16k channels, then 3 residual blocks of two 9-tap convolutions
(24k, 32k, 48k channels, each block halving the frames); TC-ResNet14 has 6 blocks (24k, 24k, 32k,
32k, 48k, 48k; every other block halves the frames); k is the width multiplier. Written from the
paper's description. Padding in a batch never changes a clip's scores: frames past each clip's length
are zeroed after every convolution (as a clip alone sees zero padding), and the average pooling
counts only valid frames.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechrecipe.errors import ConfigError
from speechrecipe.nn.pooling import length_mask

BLOCKS = {8: ((24, 2), (32, 2), (48, 2)), 14: ((24, 2), (24, 1), (32, 2), (32, 1), (48, 2), (48, 1))}  # (channels, stride)
FIRST_CHANNELS = 16
KERNEL = 9


def _masked(x: Tensor, lens: Tensor) -> Tensor:
    return x * length_mask(lens, x.shape[2]).unsqueeze(1).to(x.dtype)


class TCResBlock(nn.Module):
    """conv(9, stride) BN ReLU conv(9) BN, plus the input (through a 1x1 conv, BN, ReLU when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv1d(in_channels, out_channels, KERNEL, stride, KERNEL // 2, bias=False)
        self.norm1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, KERNEL, 1, KERNEL // 2, bias=False)
        self.norm2 = nn.BatchNorm1d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm1d(out_channels), nn.ReLU())

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, F] (zero past lens) -> ([B, C', F'], lens')."""
        out_lens = torch.div(lens + self.stride - 1, self.stride, rounding_mode="floor")
        y = _masked(torch.relu(self.norm1(self.conv1(x))), out_lens)
        y = self.norm2(self.conv2(y))
        residual = x if self.shortcut is None else self.shortcut(x)
        return _masked(torch.relu(y + residual), out_lens), out_lens


class TCResNet(nn.Module):
    """TC-ResNet`depth`-`width` over features [B, F, D]: one logits tensor per label field."""

    def __init__(self, input_dim: int, num_classes: int | list[int], depth: int = 8, width: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        if depth not in BLOCKS:
            raise ConfigError(f"TC-ResNet depth {depth}: choose {' or '.join(map(str, BLOCKS))}")
        channels = int(round(FIRST_CHANNELS * width))
        self.first = nn.Conv1d(input_dim, channels, 3, padding=1, bias=False)
        blocks = []
        for out, stride in BLOCKS[depth]:
            out = int(round(out * width))
            blocks.append(TCResBlock(channels, out, stride))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        sizes = [num_classes] if isinstance(num_classes, int) else list(num_classes)
        self.classifiers = nn.ModuleList(nn.Linear(channels, n) for n in sizes)
        self.embedding_dim = channels

    def forward(self, feats: Tensor, lens: Tensor) -> list[Tensor]:
        """feats [B, F, D], lens [B] -> one logits [B, num_classes_k] per field."""
        lens = lens.clamp(min=1)
        x = _masked(self.first(_masked(feats.transpose(1, 2), lens)), lens)
        for block in self.blocks:
            x, lens = block(x, lens)
        pooled = self.dropout(x.sum(dim=2) / lens.to(x.dtype)[:, None])
        return [classifier(pooled) for classifier in self.classifiers]
