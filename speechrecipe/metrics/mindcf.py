"""Normalized minimum detection cost, as the VoxSRC evaluation script's ComputeMinDcf defines it."""
from __future__ import annotations

from torch import Tensor

from speechrecipe.metrics.eer import error_curves


def min_dcf(scores: Tensor, labels: Tensor, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum over thresholds of c_miss·fnr·p_target + c_fa·fpr·(1 − p_target), divided by c_def."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1); got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive; got c_miss={c_miss}, c_fa={c_fa}")
    # the curves include both extremes: the lowest score accepts everything, +inf rejects everything
    fpr, fnr, _ = error_curves(scores, labels)
    cost = c_miss * p_target * fnr + c_fa * (1.0 - p_target) * fpr
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost.min()) / c_def
