"""Reference against hypothesis speaker activity of one recording, as a PNG (matplotlib, imported lazily)."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.data.rttm import Segment
from speechrecipe.fileio import write_figure


def plot_activity(reference: list[Segment], hypothesis: list[Segment], duration: float, path: Path, title: str) -> None:
    """One row per speaker, reference rows above hypothesis rows; bars where the speaker talks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("ref", s) for s in sorted({s for _, _, s in reference})] + [("hyp", s) for s in sorted({s for _, _, s in hypothesis})]
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.45 * max(len(rows), 1)))
    for y, (side, speaker) in enumerate(reversed(rows)):
        spans = [(start, end - start) for start, end, who in (reference if side == "ref" else hypothesis) if who == speaker]
        ax.broken_barh(spans, (y - 0.35, 0.7), color="tab:blue" if side == "ref" else "tab:orange")
    ax.set_yticks(range(len(rows)), [f"{side} {speaker}" for side, speaker in reversed(rows)])
    ax.set(xlim=(0, duration), xlabel="seconds", title=title)
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)
