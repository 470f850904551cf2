"""Detection error tradeoff (DET) plots on normal-deviate axes."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from speechrecipe.fileio import write_figure
from speechrecipe.metrics.eer import eer_index

_TICKS_PERCENT = (0.1, 0.5, 1, 2, 5, 10, 20, 40)
_AXIS_PERCENT = (0.05, 50.0)
# rates of exactly 0 or 1 have infinite probit; clip them just outside the axes
_CLIP = 1e-6
_MAX_POINTS = 2000


def _probit(rate: Tensor) -> Tensor:
    """Normal deviate of a rate, clipped so that 0 and 1 stay finite."""
    return torch.special.ndtri(rate.double().clamp(_CLIP, 1.0 - _CLIP))


def _downsample(x: Tensor, y: Tensor, max_points: int = _MAX_POINTS) -> tuple[Tensor, Tensor]:
    """At most max_points points spread evenly along the curve's length in probit space."""
    if x.numel() <= max_points:
        return x, y
    arc = torch.cat([torch.zeros(1, dtype=x.dtype), torch.hypot(x.diff(), y.diff()).cumsum(0)])
    marks = torch.linspace(0.0, float(arc[-1]), max_points, dtype=x.dtype)
    idx = torch.searchsorted(arc, marks).clamp(max=x.numel() - 1)
    idx = torch.unique(torch.cat([idx, torch.tensor([0, x.numel() - 1])]))
    return x[idx], y[idx]


def plot_det(curves: dict[str, tuple[Tensor, Tensor]], path: Path, title: str = "") -> None:
    """Save a DET plot PNG of name -> (fpr, fnr) curves from error_curves, each with its EER point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, (fpr, fnr) in curves.items():
        fpr, fnr = torch.as_tensor(fpr).detach().cpu().double(), torch.as_tensor(fnr).detach().cpu().double()
        idx = eer_index(fpr, fnr)
        eer = max(float(fpr[idx]), float(fnr[idx]))
        x, y = _downsample(_probit(fpr), _probit(fnr))
        (line,) = ax.plot(x.numpy(), y.numpy(), label=f"{name} (EER {100 * eer:.2f}%)")
        ax.plot(float(_probit(fpr[idx])), float(_probit(fnr[idx])), "o", color=line.get_color())
    lo, hi = (float(v) for v in _probit(torch.tensor(_AXIS_PERCENT) / 100))
    ax.plot([lo, hi], [lo, hi], ":", color="gray", linewidth=0.8)
    ticks = _probit(torch.tensor(_TICKS_PERCENT, dtype=torch.float64) / 100).tolist()
    labels = [f"{p:g}" for p in _TICKS_PERCENT]
    ax.set_xticks(ticks, labels=labels)
    ax.set_yticks(ticks, labels=labels)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.set_title(title)
    ax.grid(True, linewidth=0.4)
    ax.legend(loc="upper right")
    fig.tight_layout()
    write_figure(fig, path)
