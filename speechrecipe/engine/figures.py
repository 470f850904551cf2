"""How a metric is shown to people, the same in results/README.md, `status` and `compare`. Imports no torch.

Error rates and accuracies are stored as fractions and shown as percentages with two decimals;
counts as whole numbers; other values (minDCF, loss) with four significant digits.
"""
from __future__ import annotations

import math
from typing import Any

# a metric whose name contains one of these is a fraction shown in percent
PERCENT_MARKS = ("eer", "wer", "cer", "der", "accuracy")


def kind_of(name: str) -> str:
    """"pct", "int" or "float": how `name`'s values are shown when no column says otherwise."""
    if any(mark in name for mark in PERCENT_MARKS) and not name.endswith(("_substitutions", "_deletions", "_insertions")):
        return "pct"
    if name.endswith(("_substitutions", "_deletions", "_insertions", "words", "chars")):
        return "int"
    return "float"


def show(value: Any, kind: str) -> str:
    """One number as a table shows it; "—" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "int":
        return str(int(value))
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


def show_interval(value: Any, interval: dict | None, kind: str) -> str:
    """`21.00 (17.20–24.90)`: the value and its 95 % interval, or the value alone."""
    if interval is None or interval.get("low") is None or math.isnan(interval["low"]):
        return show(value, kind)
    return f"{show(value, kind)} ({show(interval['low'], kind)}–{show(interval['high'], kind)})"


def header_unit(name: str) -> str:
    """A column header for a metric without a column spec: `eer (%)`."""
    return f"{name} (%)" if kind_of(name) == "pct" else name


def show_named(name: str, value: Any) -> str:
    """`eer=21.00 %` for logs and `status`."""
    kind = kind_of(name)
    return f"{name}={show(value, kind)}{' %' if kind == 'pct' else ''}"
