"""Classification accuracy, top-k accuracy and confusion matrices."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from speechrecipe.fileio import atomic_open, write_figure


def _check_pair(predictions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Flat tensors of equal, non-zero length."""
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets)
    if predictions.shape != targets.shape:
        shapes = f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        raise ValueError(f"predictions and targets must have the same shape; got {shapes}")
    if targets.numel() == 0:
        raise ValueError("no predictions to score")
    return predictions.reshape(-1), targets.reshape(-1)


def accuracy(predictions: Tensor, targets: Tensor) -> float:
    """Fraction of predicted class indices equal to the targets."""
    predictions, targets = _check_pair(predictions, targets)
    return (predictions == targets).double().mean().item()


def balanced_accuracy(predictions: Tensor, targets: Tensor) -> float:
    """Mean per-class recall: for each class among the targets, the fraction of its examples predicted
    right, averaged over those classes (so every class weighs the same, however many examples it has)."""
    predictions, targets = _check_pair(predictions, targets)
    recalls = [(predictions[targets == c] == c).double().mean() for c in targets.unique()]
    return torch.stack(recalls).mean().item()


def top_k_accuracy(logits: Tensor, targets: Tensor, k: int) -> float:
    """Fraction of rows of (N, C) logits whose k highest classes include the target."""
    logits, targets = torch.as_tensor(logits), torch.as_tensor(targets).reshape(-1)
    if logits.dim() != 2 or logits.shape[0] != targets.numel():
        raise ValueError(f"logits must be (N, C) with N = {targets.numel()} targets; got {tuple(logits.shape)}")
    if targets.numel() == 0:
        raise ValueError("no predictions to score")
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be between 1 and the number of classes ({logits.shape[1]}); got {k}")
    top = logits.topk(k, dim=1).indices
    return (top == targets.to(top.device)[:, None]).any(dim=1).double().mean().item()


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> torch.LongTensor:
    """(num_classes, num_classes) counts; rows are true classes, columns predicted ones."""
    predictions, targets = _check_pair(predictions, targets)
    predictions, targets = predictions.long().cpu(), targets.long().cpu()
    for name, values in (("predictions", predictions), ("targets", targets)):
        if int(values.min()) < 0 or int(values.max()) >= num_classes:
            found = f"{int(values.min())}..{int(values.max())}"
            raise ValueError(f"{name} must be class indices in [0, {num_classes}); got {found}")
    flat = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _check_names(matrix: Tensor, class_names: Sequence[str]) -> None:
    """Raise unless matrix is square with one row per class name."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(class_names):
        raise ValueError(f"matrix {tuple(matrix.shape)} does not match {len(class_names)} class names")


def write_confusion_csv(matrix: Tensor, class_names: Sequence[str], path: Path) -> None:
    """Write the matrix as CSV: a header of predicted classes, then one row per true class."""
    _check_names(matrix, class_names)
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *class_names])
        for name, row in zip(class_names, matrix.tolist()):
            writer.writerow([name, *row])


def plot_confusion(matrix: Tensor, class_names: Sequence[str], path: Path) -> None:
    """Save a PNG of the matrix, coloured by the fraction of each true class, annotated with counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_names(matrix, class_names)
    counts = matrix.detach().cpu().double()
    # colour by recall so that rare classes are as readable as frequent ones
    fractions = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = min(4 + 0.4 * n, 30)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(fractions.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90)
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:  # beyond that the numbers no longer fit in the cells
        for row, (count_row, fraction_row) in enumerate(zip(counts.tolist(), fractions.tolist())):
            for col, (count, fraction) in enumerate(zip(count_row, fraction_row)):
                color = "white" if fraction > 0.5 else "black"
                ax.text(col, row, f"{int(count)}", ha="center", va="center", fontsize=8, color=color)
    fig.tight_layout()
    write_figure(fig, path)
