"""Stage 4's engine: the best checkpoint per test set → results.json and README.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speechrecipe.engine.checkpoint import write_text_atomic


def pick_best(result_files: list[Path], metric: str, higher_better: bool) -> dict[str, dict[str, Any]]:
    """{test_set: its best per-checkpoint record} by `metric`."""
    best: dict[str, dict[str, Any]] = {}
    for path in result_files:
        record = json.loads(path.read_text())
        current = best.get(record["test_set"])
        value = record["metrics"][metric]
        if current is None or (value > current["metrics"][metric] if higher_better else value < current["metrics"][metric]):
            best[record["test_set"]] = record
    return best


def write_results(best: dict[str, dict[str, Any]], results_dir: Path, columns: list[tuple[str, str, str]], title: str,
                  checkpoints: Path | None = None) -> str:
    """results.json for programs, README.md for people; returns the Markdown table. A featurizer's learned
    layer weights in the best checkpoints (in `checkpoints`, default target_dir/checkpoints) go to
    layer_weights.json and .png beside them.

    columns: (metric key, header, format) e.g. ("eer", "EER (%)", "pct").
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        name: {"checkpoint": r["checkpoint"], "step": r["step"], **r["metrics"]} for name, r in sorted(best.items())
    }
    write_text_atomic(results_dir / "results.json", json.dumps(payload, indent=1) + "\n")
    header = "| test set | checkpoint | " + " | ".join(h for _, h, _ in columns) + " |"
    lines = [header, "|" + "---|" * (2 + len(columns))]
    for name, row in payload.items():
        cells = [_fmt(row.get(key), kind) for key, _, kind in columns]
        lines.append(f"| {name} | {row['checkpoint']} (step {row['step']}) | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    from speechrecipe.engine.layer_weights import PNG_NAME, write_layer_weights

    weights = write_layer_weights(best, checkpoints or results_dir.parent / "checkpoints", results_dir)
    figure = f"\n![featurizer layer weights]({PNG_NAME})\n" if weights else ""
    write_text_atomic(results_dir / "README.md", f"# {title}\n\n{table}\n{figure}")
    return table


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "int":
        return str(int(value))
    return f"{value:.4f}"
