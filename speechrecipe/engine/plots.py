"""Training curves as PNG (matplotlib, imported lazily)."""
from __future__ import annotations

import json
from pathlib import Path

from speechrecipe.fileio import write_figure


def plot_training(train_log: Path, path: Path, valid_metric: str) -> None:
    """Loss per logged step and the validation metric, the last entry per step winning (resumes repeat steps)."""
    if not train_log.is_file():
        return
    train, valid = {}, {}
    for line in train_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "train":
            train[event["step"]] = event["loss"]
        elif event.get("event") == "valid" and valid_metric in event:
            valid[event["step"]] = event[valid_metric]
    if not train:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if valid else 1, figsize=(10 if valid else 5, 3.5), squeeze=False)
    steps = sorted(train)
    axes[0][0].plot(steps, [train[s] for s in steps])
    axes[0][0].set(xlabel="step", ylabel="training loss", title="training loss")
    if valid:
        vsteps = sorted(valid)
        axes[0][1].plot(vsteps, [valid[s] for s in vsteps], marker="o")
        axes[0][1].set(xlabel="step", ylabel=valid_metric, title=f"validation {valid_metric}")
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)
