"""Featurizer: collapse an upstream's list of layers into one [B, F, D] feature (s3prl style)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechrecipe.errors import ConfigError


class Featurizer(nn.Module):
    """Learnable softmax-weighted sum over layers, or one layer passed through unchanged.

    With one layer, or `layer_selection` set (negative counts from the last layer), the
    selected layer is returned as is. Otherwise `normalize` layer-normalises each layer
    (no affine parameters) before the weighted sum, so layers of different scale compete fairly.
    """

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        layer_selection: int | None = None,
        normalize: bool = False,
    ):
        super().__init__()
        if layer_selection is not None and not -num_layers <= layer_selection < num_layers:
            raise ConfigError(
                f"layer_selection={layer_selection}: the upstream has {num_layers} layers; "
                f"use 0..{num_layers - 1}, a negative index, or null for a weighted sum"
            )
        if num_layers == 1:
            layer_selection = 0
        self.num_layers = num_layers
        self.output_dim = input_dim
        self.layer_selection = None if layer_selection is None else layer_selection % num_layers
        self.normalize = normalize
        # zeros: uniform weights at the start, as in s3prl
        self.weights = nn.Parameter(torch.zeros(num_layers)) if self.layer_selection is None else None

    def layer_weights(self) -> list[float]:
        """The current weight of each layer (one-hot when a layer is selected), for logging."""
        if self.weights is None:
            return [float(i == self.layer_selection) for i in range(self.num_layers)]
        return torch.softmax(self.weights.detach().float(), dim=0).tolist()

    def forward(self, hidden_states: list[Tensor], lens: Tensor) -> tuple[Tensor, Tensor]:
        """hidden_states: num_layers x [B, F, D] -> ([B, F, D], lens)."""
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"Featurizer expects {self.num_layers} layers, got {len(hidden_states)}")
        if self.weights is None:
            return hidden_states[self.layer_selection], lens
        stacked = torch.stack(hidden_states, dim=0)  # [L, B, F, D]
        if self.normalize:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = torch.softmax(self.weights, dim=0).to(stacked.dtype)
        return torch.einsum("l,lbfd->bfd", weights, stacked), lens
