"""The x-vector TDNN (Snyder et al. 2018), as the SUPERB speaker-verification downstream."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechrecipe.nn.pooling import MaskedBatchNorm1d, StatisticsPooling, length_mask

# (kernel frames, dilation) of the five frame-level layers: contexts [-2,2], {-2,0,2},
# {-3,0,3}, {0}, {0}; 14 frames of context in all.
TDNN_LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))


class XVector(nn.Module):
    """Five TDNN layers (Conv1d + ReLU + BatchNorm), statistics pooling, one segment layer.

    The convolutions are unpadded ("valid"), as in Kaldi: a frame's output reads only its
    own context, so valid frames never read padding and need no masking; the 14 edge frames
    are dropped. Utterances shorter than 15 frames are zero-padded to one output frame.
    BatchNorm statistics in training skip padded frames.
    """

    def __init__(
        self,
        input_dim: int,
        channels: int = 512,
        embedding_dim: int = 512,
        stats_channels: int = 1500,
        dropout: float = 0.0,
    ):
        super().__init__()
        dims = [input_dim] + [channels] * (len(TDNN_LAYERS) - 1) + [stats_channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], kernel, dilation=dilation)
            for i, (kernel, dilation) in enumerate(TDNN_LAYERS)
        )
        self.norms = nn.ModuleList(MaskedBatchNorm1d(d) for d in dims[1:])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.context = sum((kernel - 1) * dilation for kernel, dilation in TDNN_LAYERS)
        self.pooling = StatisticsPooling(stats_channels)
        self.segment = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def frame_lens(self, lens: Tensor) -> Tensor:
        """Frames left after the unpadded TDNN layers (at least 1)."""
        return (lens - self.context).clamp(min=1)

    def forward(self, feats: Tensor, lens: Tensor) -> Tensor:
        """feats [B, F, D], lens [B] -> embeddings [B, embedding_dim]."""
        need = self.context + 1 - feats.shape[1]
        if need > 0:
            feats = F.pad(feats, (0, 0, 0, need))
        if bool((lens <= self.context).any()):  # short ones read padding: make it zeros
            feats = feats * length_mask(lens, feats.shape[1]).unsqueeze(-1).to(feats.dtype)
        x = feats.transpose(1, 2)  # channels-first once for all convolutions
        padded = self.training and bool((lens != feats.shape[1]).any())
        done = 0
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu_(conv(x))  # in place: the fresh conv output is not needed again
            done += (conv.kernel_size[0] - 1) * conv.dilation[0]
            mask = length_mask((lens - done).clamp(min=1), x.shape[2]).unsqueeze(1) if padded else None
            x = self.dropout(norm(x, mask))
        stats = self.pooling(x.transpose(1, 2), self.frame_lens(lens))
        return self.segment(stats)
