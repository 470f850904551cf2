"""Masked statistics over frames: length masks, pooling layers, and a mask-aware BatchNorm.

Convention: pooling layers take frames batch-first, `x: [B, F, D]`, with `lens: [B]`
valid frames, and return `[B, output_dim]`. Padded frames never change the result.
An utterance with zero valid frames is pooled over its first frame so nothing divides by 0.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechrecipe.errors import ConfigError


def length_mask(lens: Tensor, max_len: int) -> Tensor:
    """BoolTensor[B, max_len], True on the first lens[b] frames of row b."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def _weighted_mean_var(x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mean [B, D], x - mean [B, F, D], var [B, D]) over frames of x [B, F, D] under weights [B, F, 1]."""
    weights_t = weights.transpose(1, 2)  # [B, 1, F]
    mean = torch.bmm(weights_t, x)  # [B, 1, D]; bmm reads a transposed x without copying
    centered = x - mean
    var = torch.bmm(weights_t, centered * centered)
    return mean.squeeze(1), centered, var.squeeze(1)


class _WeightedMeanStd(torch.autograd.Function):
    """Mean and variance over frames under fixed weights, with a hand-written backward.

    d mean/dx = w and d var/dx = 2 w (x - mean) (the mean's own dependence cancels because
    the weights sum to 1), so the backward is one fused multiply-add per element instead of
    autograd's chain of full-size temporaries, the largest non-convolution cost of an x-vector.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        mean, centered, var = _weighted_mean_var(x, weights)
        ctx.save_for_backward(centered, weights)
        return mean, var

    @staticmethod
    def backward(ctx, grad_mean: Tensor, grad_var: Tensor) -> tuple[Tensor, None]:
        centered, weights = ctx.saved_tensors
        grad_x = torch.addcmul(grad_mean[:, None, :], centered, 2 * grad_var[:, None, :]) * weights
        return grad_x, None


def masked_mean_std(
    x: Tensor, lens: Tensor, var_floor: float = 1e-5, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mean and std over the valid frames of x [B, F, D] -> ([B, D], [B, D]).

    `weights` [B, F, 1 or D] (summing to 1 over valid frames, 0 on padding) replaces the
    uniform average and may carry gradient (attention). std = sqrt(max(var, var_floor))
    keeps the gradient finite.
    """
    if weights is None:
        lens = lens.clamp(min=1)
        mask = length_mask(lens, x.shape[1]).unsqueeze(-1).to(x.dtype)
        weights = mask / lens.to(x.dtype)[:, None, None]
        if torch.is_grad_enabled() and x.requires_grad:
            mean, var = _WeightedMeanStd.apply(x, weights)
        else:  # no gradient (evaluation, an exported graph): the same arithmetic, without a Python Function
            mean, _, var = _weighted_mean_var(x, weights)
    else:
        mean = (x * weights).sum(dim=1)
        var = ((x - mean[:, None, :]).square() * weights).sum(dim=1)
    return mean, var.clamp(min=var_floor).sqrt()


class MeanPooling(nn.Module):
    """Average over valid frames: [B, F, D] -> [B, D]."""

    def __init__(self, input_dim: int):
        super().__init__()
        self.output_dim = input_dim

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        lens = lens.clamp(min=1)
        mask = length_mask(lens, x.shape[1]).unsqueeze(-1).to(x.dtype)
        return (x * mask).sum(dim=1) / lens.to(x.dtype)[:, None]


class StatisticsPooling(nn.Module):
    """Mean and standard deviation over valid frames, concatenated: [B, F, D] -> [B, 2D]."""

    def __init__(self, input_dim: int, var_floor: float = 1e-5):
        super().__init__()
        self.output_dim = 2 * input_dim
        self.var_floor = var_floor

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        mean, std = masked_mean_std(x, lens, self.var_floor)
        return torch.cat([mean, std], dim=-1)


class AttentiveStatisticsPooling(nn.Module):
    """Channel-wise attentive mean and std (ECAPA-TDNN): [B, F, D] -> [B, 2D].

    Each frame's attention logits come from tanh(W h_t + b), with the utterance's
    mean and std appended to h_t when `global_context` is set.
    """

    def __init__(
        self,
        input_dim: int,
        attention_dim: int = 128,
        global_context: bool = True,
        var_floor: float = 1e-5,
    ):
        super().__init__()
        self.output_dim = 2 * input_dim
        self.var_floor = var_floor
        self.frame_proj = nn.Linear(input_dim, attention_dim)
        # W [h; mean; std] = W_h h + W_c [mean; std]: the context term is computed once per
        # utterance and broadcast instead of materialising a [B, F, 3D] concatenation.
        self.context_proj = nn.Linear(2 * input_dim, attention_dim, bias=False) if global_context else None
        self.score = nn.Linear(attention_dim, input_dim)

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        lens = lens.clamp(min=1)
        mask = length_mask(lens, x.shape[1]).unsqueeze(-1)
        hidden = self.frame_proj(x)
        if self.context_proj is not None:
            mean, std = masked_mean_std(x, lens, self.var_floor)
            hidden = hidden + self.context_proj(torch.cat([mean, std], dim=-1))[:, None, :]
        logits = self.score(torch.tanh(hidden)).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        mean, std = masked_mean_std(x, lens, self.var_floor, weights=weights)
        return torch.cat([mean, std], dim=-1)


class _MaskedBatchNorm(torch.autograd.Function):
    """Batch normalisation over the valid frames of x [B, C, F], with a hand-written backward.

    With c = x - mean (mean and var over the N valid frames), s = 1/sqrt(var + eps) and
    y = c s w + b on every frame, the gradient is
    dx = w s (dy - m (sum(dy)/N + c s^2 sum(dy c)/N)), m being the valid-frame mask:
    five full-size passes each way instead of autograd's dozen temporaries, the largest
    non-convolution cost of an x-vector update on padded batches.
    """

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float):
        count = mask.sum() * (x.shape[0] // mask.shape[0])  # mask may broadcast over the batch
        mean = (x * mask).sum(dim=(0, 2)) / count
        centered = x - mean[:, None]
        var = (centered * mask * centered).sum(dim=(0, 2)) / count
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        shift = torch.zeros_like(mean) if bias is None else bias
        y = torch.addcmul(shift[:, None], centered, scale[:, None])
        ctx.save_for_backward(centered, mask, invstd, scale, count)
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: Tensor, _mean: Tensor, _var: Tensor):
        centered, mask, invstd, scale, count = ctx.saved_tensors
        sum_dy = dy.sum(dim=(0, 2))
        sum_dy_c = (dy * centered).sum(dim=(0, 2))
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.addcmul((sum_dy / count)[:, None], centered, (invstd.square() * sum_dy_c / count)[:, None])
            dx = torch.sub(dy, dx.mul_(mask)).mul_(scale[:, None])
        dweight = sum_dy_c * invstd if ctx.has_weight else None
        dbias = sum_dy if ctx.has_bias else None
        return dx, None, dweight, dbias, None


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d on [B, C, F] whose training statistics skip padded frames.

    `mask` [B, 1, F] (1 on valid frames) is only used in training mode; pass None when the
    batch has no padding to take the fused native kernel. Evaluation is per-frame, hence
    padding-invariant, either way.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        y, mean, var = _MaskedBatchNorm.apply(x, mask.to(x.dtype), self.weight, self.bias, self.eps)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                count = mask.sum() * (x.shape[0] // mask.shape[0])
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(unbiased, factor)
        return y


POOLINGS: dict[str, type[nn.Module]] = {
    "mean": MeanPooling,
    "stats": StatisticsPooling,
    "attentive": AttentiveStatisticsPooling,
}


def build_pooling(name: str, input_dim: int) -> nn.Module:
    """A pooling layer by name ("mean", "stats", "attentive") with default options."""
    if name not in POOLINGS:
        raise ConfigError(f"pooling {name!r}: unknown; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[name](input_dim)
