"""Stage 4's featurizer report: the learned layer weights of each best checkpoint (JSON and a bar chart).

Written by engine/report.py's report_results for every problem whose featurizer learned a weighted sum
over several upstream layers (a `featurizer.weights` tensor in the checkpoint); nothing otherwise.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from speechrecipe.fileio import atomic_write_text, write_figure

log = logging.getLogger(__name__)
KEY = "featurizer.weights"
JSON_NAME, PNG_NAME = "layer_weights.json", "layer_weights.png"


def learned_weights(state: dict[str, Any]) -> list[float] | None:
    """softmax of the featurizer's layer logits in a task state dict; None without a weighted sum."""
    import torch

    logits = state.get(KEY)
    if logits is None or logits.numel() < 2:
        return None
    return torch.softmax(logits.detach().float(), dim=0).tolist()


def write_layer_weights(best: dict[str, dict[str, Any]], checkpoints: Path, results_dir: Path) -> Path | None:
    """results/layer_weights.{json,png} for the best checkpoints; the JSON's path, or None when none has weights."""
    from speechrecipe.engine import checkpoint as ckpt

    found: dict[str, dict[str, Any]] = {}
    for test_set, record in sorted(best.items()):
        name = record["checkpoint"]
        if name not in found:
            path = ckpt.resolve(checkpoints, name)
            weights = learned_weights(ckpt.load(path)["model"]) if path is not None else None
            if weights is None:
                continue
            found[name] = {"step": record["step"], "weights": weights, "test_sets": []}
        found[name]["test_sets"].append(test_set)
    if not found:
        return None
    atomic_write_text(results_dir / JSON_NAME, json.dumps(found, indent=1) + "\n")
    plot_layer_weights(found, results_dir / PNG_NAME)
    for name, entry in found.items():
        top = max(range(len(entry["weights"])), key=entry["weights"].__getitem__)
        log.info("featurizer layer weights of %s: layer %d weighs most (%.3f); %s", name, top, entry["weights"][top],
                 results_dir / PNG_NAME)
    return results_dir / JSON_NAME


def plot_layer_weights(found: dict[str, dict[str, Any]], path: Path) -> None:
    """One group of bars per layer (0 = the upstream's first hidden state), one bar per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = len(next(iter(found.values()))["weights"])
    width = 0.8 / len(found)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * layers + 1.5), 3.2))
    for i, (name, entry) in enumerate(found.items()):
        xs = [layer - 0.4 + width * (i + 0.5) for layer in range(layers)]
        ax.bar(xs, entry["weights"], width, label=f"{name} (step {entry['step']})")
    ax.axhline(1.0 / layers, color="grey", linewidth=0.8, linestyle="--", label="uniform")
    ax.set(xlabel="upstream layer", ylabel="weight (softmax)", title="featurizer layer weights", xticks=range(layers))
    ax.legend(fontsize="small")
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)
