"""Verification error curves and the equal error rate, as the VoxCeleb/VoxSRC tools compute it."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

# Second differences of error rates below this are float rounding: real ones are at least 1/n_trials.
_COLLINEAR_TOL = 1e-12


def _as_numpy(x: Any) -> np.ndarray:
    """A flat numpy view of a tensor (any device) or array-like."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x).reshape(-1)


def _validate(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flat float scores and bool labels (True = target), after checking them."""
    shapes = (tuple(np.shape(scores)), tuple(np.shape(labels)))
    if shapes[0] != shapes[1]:
        raise ValueError(f"scores and labels must have the same shape; got {shapes[0]} and {shapes[1]}")
    s, y = _as_numpy(scores), _as_numpy(labels)
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    finite = np.isfinite(s)
    if not finite.all():
        bad = int((~finite).sum())
        raise ValueError(f"scores contain {bad} non-finite values (nan or inf); drop or fix those trials")
    if y.dtype != np.bool_:
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("labels must be 1 (target) or 0 (non-target)")
        y = y == 1
    n_target = int(np.count_nonzero(y))
    if n_target == 0:
        raise ValueError("no target trials (label 1); error rates need both target and non-target trials")
    if n_target == y.size:
        raise ValueError("no non-target trials (label 0); error rates need both target and non-target trials")
    return s, y


def _error_curves_np(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """error_curves on numpy arrays (float64 rates, thresholds in the scores' dtype)."""
    s, y = _validate(scores, labels)
    n, n_target = s.size, int(np.count_nonzero(y))
    # numpy's SIMD argsort is 3-4x faster than torch.sort on CPU (1M float32, 2 cores: ~45 vs ~170 ms)
    order = np.argsort(s)
    sorted_scores, is_target = s[order], y[order]
    # a threshold can only sit between distinct scores, so equal scores are accepted or rejected together
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=starts[1:])
    start_idx = np.flatnonzero(starts)
    targets_below = np.cumsum(is_target, dtype=np.int64)[start_idx] - is_target[start_idx]
    # the last point, threshold +inf, rejects everything (sklearn's roc_curve starts with it too)
    tp = np.append(n_target - targets_below, 0)
    fp = np.append((n - start_idx) - tp[:-1], 0)
    thresholds = np.append(sorted_scores[start_idx], np.array(np.inf, dtype=s.dtype))
    fpr = fp / (n - n_target)
    # fnr as 1 - tpr, the way sklearn computes it, so argmin ties resolve identically
    fnr = 1.0 - tp / n_target
    return fpr, fnr, thresholds


def error_curves(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(fpr, fnr, thresholds) on CPU for accepting score >= threshold at each distinct score and +inf, ascending."""
    fpr, fnr, thresholds = _error_curves_np(scores, labels)
    return torch.from_numpy(fpr), torch.from_numpy(fnr), torch.from_numpy(thresholds)


def eer_index(fpr: Tensor, fnr: Tensor) -> int:
    """Index on an error_curves curve where voxceleb_trainer's tuneThresholdfromScore reads the EER."""
    fpr, fnr = _as_numpy(fpr).astype(np.float64), _as_numpy(fnr).astype(np.float64)
    n = fpr.size
    if n == 0 or fnr.size != n:
        raise ValueError(f"fpr and fnr must be non-empty and of equal length; got {n} and {fnr.size}")
    gap = np.abs(fnr - fpr)
    # sklearn's roc_curve (drop_intermediate=True) drops interior points of straight ROC segments
    # before the argmin; the +inf point (last here) is added after that and never dropped
    if n > 3:
        body_fpr, body_fnr = fpr[:-1], fnr[:-1]
        bent = (np.abs(np.diff(body_fpr, 2)) > _COLLINEAR_TOL) | (np.abs(np.diff(body_fnr, 2)) > _COLLINEAR_TOL)
        gap[1:-2][~bent] = np.inf
    # np.nanargmin takes the first minimum in sklearn's descending-threshold order, i.e. our last
    return n - 1 - int(np.argmin(gap[::-1]))


def eer_threshold(scores: Tensor, labels: Tensor) -> tuple[float, float]:
    """(EER in [0, 1], threshold there) with the VoxCeleb definition max(fpr, fnr) at argmin |fnr - fpr|."""
    fpr, fnr, thresholds = _error_curves_np(scores, labels)
    idx = eer_index(fpr, fnr)
    return max(float(fpr[idx]), float(fnr[idx])), float(thresholds[idx])


def eer(scores: Tensor, labels: Tensor) -> float:
    """Equal error rate in [0, 1] as voxceleb_trainer's tuneThresholdfromScore computes it."""
    return eer_threshold(scores, labels)[0]
