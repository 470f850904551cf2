"""ECAPA-TDNN (Desplanques et al., Interspeech 2020) speaker embedding extractor."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechrecipe.errors import ConfigError
from speechrecipe.nn.pooling import AttentiveStatisticsPooling, MaskedBatchNorm1d, length_mask

# Padding invariance: convolutions are zero-padded ("same"), and every input of a
# convolution wider than one frame is multiplied by the frame mask, so a valid frame near
# the end reads zeros whether the utterance is alone or padded inside a batch. Means over
# time (SE, pooling) skip padded frames. Tensors inside are channels-first [B, C, F].


class _ConvBlock(nn.Module):
    """Conv1d + ReLU + BatchNorm; the input must already be masked when kernel > 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation,
                              padding=dilation * (kernel - 1) // 2)
        self.norm = MaskedBatchNorm1d(out_channels)

    def forward(self, x: Tensor, bn_mask: Tensor | None) -> Tensor:
        return self.norm(torch.relu(self.conv(x)), bn_mask)


class _SERes2Block(nn.Module):
    """1x1 conv, Res2Net dilated convs over `scale` channel groups, 1x1 conv, SE, residual."""

    def __init__(self, channels: int, scale: int, dilation: int, se_channels: int):
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.pre = _ConvBlock(channels, channels)
        self.res2 = nn.ModuleList(_ConvBlock(width, width, 3, dilation) for _ in range(scale - 1))
        self.post = _ConvBlock(channels, channels)
        self.se_down = nn.Linear(channels, se_channels)
        self.se_up = nn.Linear(se_channels, channels)

    def forward(self, x: Tensor, mask: Tensor, lens: Tensor, bn_mask: Tensor | None) -> Tensor:
        chunks = self.pre(x, bn_mask).chunk(self.scale, dim=1)
        outs = [chunks[0]]
        for i, conv in enumerate(self.res2):
            branch = chunks[i + 1] if i == 0 else chunks[i + 1] + outs[-1]
            outs.append(conv(branch * mask, bn_mask))
        y = self.post(torch.cat(outs, dim=1), bn_mask)
        mean = (y * mask).sum(dim=2) / lens[:, None]  # squeeze over valid frames only
        gate = torch.sigmoid(self.se_up(torch.relu(self.se_down(mean))))
        return x + y * gate[:, :, None]


class ECAPATDNN(nn.Module):
    """Conv, three SE-Res2Blocks (dilation 2/3/4, dense residual sums), multi-layer feature
    aggregation (1x1 conv to 3*channels), attentive statistics pooling, BatchNorm, linear to
    the embedding. forward: [B, F, D] -> [B, embedding_dim]."""

    def __init__(
        self,
        input_dim: int,
        channels: int = 512,
        embedding_dim: int = 192,
        scale: int = 8,
        se_channels: int = 128,
        attention_dim: int = 128,
    ):
        super().__init__()
        if channels % scale:
            raise ConfigError(f"channels={channels} must be divisible by scale={scale}")
        self.layer1 = _ConvBlock(input_dim, channels, 5)
        self.blocks = nn.ModuleList(_SERes2Block(channels, scale, d, se_channels) for d in (2, 3, 4))
        self.aggregate = _ConvBlock(3 * channels, 3 * channels)
        self.pooling = AttentiveStatisticsPooling(3 * channels, attention_dim, global_context=True)
        self.pool_norm = nn.BatchNorm1d(self.pooling.output_dim)
        self.embed = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, feats: Tensor, lens: Tensor) -> Tensor:
        """feats [B, F, D], lens [B] -> embeddings [B, embedding_dim]."""
        lens = lens.clamp(min=1)
        mask = length_mask(lens, feats.shape[1]).unsqueeze(1).to(feats.dtype)  # [B, 1, F]
        bn_mask = mask if self.training and bool((lens != feats.shape[1]).any()) else None
        x = self.layer1(feats.transpose(1, 2) * mask, bn_mask)
        outs = []
        for block in self.blocks:
            # as in the paper, each block reads the sum of all earlier frame-layer outputs
            outs.append(block(x + sum(outs) if outs else x, mask, lens.to(feats.dtype), bn_mask))
        x = self.aggregate(torch.cat(outs, dim=1), bn_mask)
        pooled = self.pooling(x.transpose(1, 2), lens)
        return self.embed(self.pool_norm(pooled))
