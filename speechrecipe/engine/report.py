"""Stage 4's engine: per test set, the headline checkpoint, its 95 % bootstrap intervals and the
best-on-test oracle beside it → results/results.json, results/README.md, results/bootstrap/<test set>.json.

The headline checkpoint is chosen without looking at the test set: valid_best, else the last one
evaluated (`report.select: valid`). `report.select: test` takes the best checkpoint on each test set,
as s3prl's report does; that figure is optimistic, so with `valid` it is shown beside the headline,
labelled as an oracle. A problem's report stage calls `report_results` with its headline metric, its
table columns and a function giving the `UnitStatistics` (metrics/bootstrap.py) of one stage-3 record.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from speechrecipe.engine.checkpoint import BEST
from speechrecipe.engine.figures import show, show_interval
from speechrecipe.errors import ConfigError
from speechrecipe.fileio import atomic_write_text

log = logging.getLogger(__name__)

SELECTIONS = ("valid", "test")
Columns = list[tuple[str, str, str]]  # (metric key, header, kind: pct | int | float)
# a stage-3 record → the evidence its metrics are resampled from (None: no intervals)
StatisticsOf = Callable[[dict], Optional[Any]]


@dataclass(frozen=True)
class Headline:
    """The metric that ranks checkpoints on a test set."""

    metric: str
    higher_better: bool

    def better(self, a: dict, b: dict) -> bool:
        """a's metric beats b's; an undefined one (None) beats nothing."""
        x, y = a["metrics"].get(self.metric), b["metrics"].get(self.metric)
        if x is None or y is None:
            return y is None and x is not None
        return x > y if self.higher_better else x < y


@dataclass(frozen=True)
class ReportSettings:
    """The `report` config section: how the headline is chosen, bootstrap resamples and their seed."""

    select: str = "valid"
    resamples: int = 1000
    seed: int = 0

    @classmethod
    def from_conf(cls, conf: Any) -> "ReportSettings":
        settings = cls() if conf is None else cls(str(conf.select), int(conf.resamples), int(conf.seed))
        if settings.select not in SELECTIONS:
            raise ConfigError(f"report.select: {settings.select!r} is not one of {', '.join(SELECTIONS)}")
        if settings.resamples < 0:
            raise ConfigError(f"report.resamples: {settings.resamples} must be 0 (no intervals) or more")
        return settings


def choose(result_files: list[Path], headline: Headline, select: str = "valid") -> dict[str, dict[str, Any]]:
    """{test set: its headline record}, each with "selected_by" and "oracle" (the best record on the test set)."""
    by_set: dict[str, list[dict]] = {}
    for path in result_files:
        record = json.loads(path.read_text())
        by_set.setdefault(record["test_set"], []).append(record)
    chosen = {}
    for name, records in sorted(by_set.items()):
        oracle = records[0]
        for record in records[1:]:
            oracle = record if headline.better(record, oracle) else oracle
        if select == "test":
            pick, how = oracle, "best on test"
        else:
            best = [r for r in records if r["checkpoint"] == BEST]
            pick, how = (best[0], BEST) if best else (max(records, key=lambda r: r["step"]), "last")
        chosen[name] = {**pick, "selected_by": how, "metric": headline.metric, "oracle": oracle}
    return chosen


def report_results(result_files: list[Path], headline: Headline, conf: Any, results_dir: Path, columns: Columns,
                   title: str, statistics: StatisticsOf | None = None,
                   checkpoints: Path | None = None) -> tuple[dict[str, dict], str]:
    """Choose, bootstrap and write the results; ({test set: headline record}, the Markdown table). A featurizer's
    learned layer weights in the headline checkpoints (in `checkpoints`, default target_dir/checkpoints) go to
    layer_weights.json and .png beside them."""
    settings = ReportSettings.from_conf(conf)
    chosen = choose(result_files, headline, settings.select)
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, record in chosen.items():
        record["intervals"] = _intervals(name, record, settings, statistics, results_dir)
    payload = {name: _entry(record) for name, record in chosen.items()}
    # allow_nan=False: an undefined number is null with a reason, never NaN (which is not JSON either)
    atomic_write_text(results_dir / "results.json", json.dumps(payload, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    table = results_table(payload, columns, settings.select == "valid")
    from speechrecipe.engine.layer_weights import PNG_NAME, write_layer_weights

    weights = write_layer_weights(chosen, checkpoints or results_dir.parent / "checkpoints", results_dir)
    figure = f"\n![featurizer layer weights]({PNG_NAME})\n" if weights else ""
    atomic_write_text(results_dir / "README.md", f"# {title}\n\n{table}\n\n{_notes(payload, settings)}\n{figure}")
    return chosen, table


def _intervals(name: str, record: dict, settings: ReportSettings, statistics: StatisticsOf | None,
               results_dir: Path) -> dict[str, dict]:
    """The 95 % intervals of the record's metrics; the resampled values go to results/bootstrap/<name>.json.

    A metric gets an interval only when drawing every unit once reproduces its reported value (the
    resampled statistic is the reported one); otherwise, or where the metric is undefined, its entry has
    no low/high and says why. Resamples on which a metric is undefined are left out and counted."""
    import numpy as np

    from speechrecipe.metrics.bootstrap import interval, reproduces, resample

    stats = statistics(record) if statistics is not None and settings.resamples > 0 else None
    if stats is None:
        return {}
    values = resample(stats, settings.resamples, settings.seed)
    once = stats.all_once()
    found, kept = {}, {}
    for metric, drawn in values.items():
        if metric not in record["metrics"]:
            continue
        value = record["metrics"][metric]
        if value is None:
            why = record.get("undefined", {}).get(metric, "the metric is undefined on this test set")
            found[metric] = {"value": None, "low": None, "high": None, "reason": why}
        elif not reproduces(float(value), once[metric]):
            why = (f"drawing every {stats.unit} once gives {once[metric]!r}, not the reported {value!r}: the resampled "
                   "statistic is not the reported one, so no interval is given")
            log.warning("%s: %s: %s", name, metric, why)
            found[metric] = {"value": value, "low": None, "high": None, "reason": why}
        else:
            found[metric], kept[metric] = interval(float(value), drawn, stats), drawn
    saved = {"test_set": name, "checkpoint": record["checkpoint"], "step": record["step"], "unit": stats.unit,
             "units": len(stats.units), "units_digest": stats.units_digest, "contents_digest": stats.contents,
             "seed": settings.seed, "resamples": settings.resamples, "metrics": {m: record["metrics"][m] for m in kept},
             # an undefined resample is null (JSON has no NaN)
             "values": {m: [round(float(x), 8) if np.isfinite(x) else None for x in v] for m, v in kept.items()}}
    atomic_write_text(results_dir / "bootstrap" / f"{name}.json",
                      json.dumps(saved, ensure_ascii=False, allow_nan=False) + "\n")
    return found


def _entry(record: dict) -> dict[str, Any]:
    oracle = record["oracle"]
    undefined = {"undefined": record["undefined"]} if record.get("undefined") else {}
    return {"checkpoint": record["checkpoint"], "step": record["step"], "selected_by": record["selected_by"],
            "metric": record["metric"], **record["metrics"], **undefined, "intervals": record["intervals"],
            "oracle": {"checkpoint": oracle["checkpoint"], "step": oracle["step"], **oracle["metrics"]}}


def results_table(payload: dict[str, dict], columns: Columns, with_oracle: bool) -> str:
    """The Markdown table of results.json's entries: values with intervals, and the oracle's headline metric."""
    header = "| test set | checkpoint | " + " | ".join(h for _, h, _ in columns)
    header += " | best on test (oracle) |" if with_oracle else " |"
    lines = [header, "|" + "---|" * (2 + len(columns) + with_oracle)]
    for name, row in payload.items():
        cells = [show_interval(row.get(key), row.get("intervals", {}).get(key), kind) for key, _, kind in columns]
        if with_oracle:
            kind = next((k for key, _, k in columns if key == row["metric"]), "float")
            oracle = row["oracle"]
            cells.append(f"{show(oracle.get(row['metric']), kind)} ({oracle['checkpoint']})")
        lines.append(f"| {name} | {row['checkpoint']} (step {row['step']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(payload: dict[str, dict], settings: ReportSettings) -> str:
    units = sorted({f"{i['units']} {i['unit']}s" for row in payload.values() for i in row["intervals"].values() if "unit" in i})
    lines = []
    if units:
        lines.append(f"In brackets: 95 % bootstrap intervals ({settings.resamples} resamples of the test set's "
                     f"{', '.join(units)}, seed {settings.seed}).")
    for name, row in payload.items():
        for metric, found in row["intervals"].items():
            if found.get("undefined"):
                lines.append(f"{name}, {metric}: {found['undefined']} of {found['resamples']} resamples drew {found['unit']}s "
                             "on which it is undefined (nothing to divide by) and are left out of the interval.")
        reasons = {m: f.get("reason") for m, f in row["intervals"].items() if f.get("reason")}
        reasons |= {m: why for m, why in row.get("undefined", {}).items() if m not in reasons}
        lines += [f"{name}, {metric}: no {'interval' if row.get(metric) is not None else 'value'}: {why}."
                  for metric, why in reasons.items()]
    if settings.select == "valid":
        lines.append("Checkpoint: valid_best (chosen on the validation set), else the last one evaluated. "
                     "Best on test (oracle): the checkpoint best on the test set itself, an optimistic figure "
                     "shown for comparison only (s3prl reports it; `report.select=test` makes it the headline).")
    else:
        lines.append("Checkpoint: the best on each test set (`report.select=test`, as s3prl reports): "
                     "chosen by looking at the test set, so optimistic.")
    return "\n".join(lines)
