"""`speechrecipe compare DIR [DIR ...]`: the final results of several experiments in one table. Imports no torch.

One row per experiment and test set: the headline metric with its 95 % interval, the checkpoint,
the best-on-test oracle, the difference to the first experiment on the same bootstrap resamples
(when both were resampled alike), updates, training wall time and utterances/s, and the value of
every config key in which the experiments differ (only those). A test set one experiment lacks is
a row of blanks.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrecipe.engine.figures import header_unit, kind_of, show, show_interval
from speechrecipe.engine.train_log import progress, read_events, utt_per_s
from speechrecipe.errors import ConfigError

FORMATS = ("markdown", "csv", "json")


@dataclass
class Experiment:
    """What compare reads from one target_dir."""

    name: str
    path: Path
    config: dict[str, Any]
    results: dict[str, dict]
    training: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Experiment":
        from omegaconf import OmegaConf

        from speechrecipe.config import flatten

        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path} is not an experiment folder (no config.yaml); give target dirs of runs")
        results_file = path / "results" / "results.json"
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        events = read_events(path / "train_log.jsonl")
        state = progress(events)
        training = {"updates": state.step if state else None, "training_s": state.wall_s if state else None,
                    "utt_per_s": utt_per_s(events)}
        return cls(str(path), path, flatten(OmegaConf.load(path / "config.yaml")), results, training)

    def resamples(self, test_set: str) -> dict | None:
        """results/bootstrap/<test_set>.json: the headline checkpoint's resampled metric values."""
        path = self.path / "results" / "bootstrap" / f"{test_set}.json"
        return json.loads(path.read_text()) if path.is_file() else None


def differing_keys(experiments: list[Experiment]) -> list[str]:
    """Config keys whose value is not the same in every experiment (a key one lacks differs)."""
    keys = sorted({k for e in experiments for k in e.config})
    return [k for k in keys if len({json.dumps(e.config.get(k, "<absent>"), sort_keys=True) for e in experiments}) > 1]


def paired(first: Experiment, other: Experiment, test_set: str) -> dict:
    """other − first on the headline metric, bootstrapped on shared resamples: {difference, low, high, beyond_noise},
    or {difference: None, reason} when the two runs were not evaluated on the same units with the same contents
    (trials, utterances, recordings and their references), resampled alike, or have no such values."""
    import numpy as np

    from speechrecipe.metrics.bootstrap import paired_difference

    def none(why: str) -> dict:
        return {"difference": None, "reason": why}

    a, b = first.resamples(test_set), other.resamples(test_set)
    metric = (first.results.get(test_set) or {}).get("metric")
    for run, saved in ((first, a), (other, b)):
        if not saved or not metric or metric not in saved.get("values", {}):
            return none(f"{run.name} has no resampled {metric or 'metric'} on {test_set} (report.resamples=0, an "
                        "undefined metric, or no interval); run stage 4 with report.resamples > 0")
        if not saved.get("contents_digest"):
            return none(f"{run.name}'s resamples do not record what the test set held (written by an older stage 4); "
                        f"remove {run.path / 'records' / 'stage-4.json'} and run it again with --start 4")
    if a["contents_digest"] != b["contents_digest"]:
        return none(f"the runs were evaluated on different contents of {test_set} ({a['unit']}s: {a['units']} and "
                    f"{b['units']}; their trials, references or scoring differ), so there is no paired difference")
    for key in ("seed", "resamples"):
        if a[key] != b[key]:
            return none(f"report.{key} differs ({a[key]} and {b[key]}): not the same resamples; use the same report.{key}")
    nan = lambda values: np.array([np.nan if x is None else x for x in values], dtype=np.float64)  # noqa: E731
    return paired_difference(a["metrics"][metric], b["metrics"][metric], nan(a["values"][metric]), nan(b["values"][metric]))


def compare_rows(experiments: list[Experiment]) -> tuple[list[str], list[dict[str, Any]]]:
    """(differing config keys, one row per experiment × test set) as plain values for JSON."""
    keys = differing_keys(experiments)
    test_sets = list(dict.fromkeys(t for e in experiments for t in e.results))
    rows = []
    for experiment in experiments:
        for test_set in test_sets:
            result = experiment.results.get(test_set)
            row: dict[str, Any] = {"run": experiment.name, "test_set": test_set}
            if result is not None:
                metric = result["metric"]
                row |= {"metric": metric, "value": result.get(metric), "interval": result.get("intervals", {}).get(metric),
                        "checkpoint": result["checkpoint"], "step": result["step"],
                        "oracle": {"checkpoint": result["oracle"]["checkpoint"], "value": result["oracle"].get(metric)}}
                if experiment is not experiments[0]:
                    row["vs_first"] = paired(experiments[0], experiment, test_set)
            rows.append(row | experiment.training | {"config": {k: experiment.config.get(k) for k in keys}})
    return keys, rows


def compare(dirs: list[Path], fmt: str = "markdown") -> str:
    """The comparison of `dirs` as markdown, csv or json."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose {', '.join(FORMATS)}")
    experiments = [Experiment.load(Path(d)) for d in dirs]
    keys, rows = compare_rows(experiments)
    if fmt == "json":
        return json.dumps({"differing_keys": keys, "rows": rows}, indent=1)
    first = experiments[0].name
    header = ["run", "test set", "metric", "value (95 % interval)", "checkpoint", "best on test (oracle)",
              f"difference to {first} (95 % interval)", "beyond noise", "updates", "training time", "utt/s", *keys]
    table = [header] + [_cells(row, keys) for row in rows]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(table)
        return out.getvalue().rstrip("\n")
    lines = ["| " + " | ".join(cells) + " |" for cells in table]
    lines.insert(1, "|" + "---|" * len(header))
    notes = ["", "Differences are bootstrapped on the same resamples of the same test-set units (same trials, "
             "utterances or recordings with the same references); beyond noise: the interval excludes 0. "
             "No difference where they were not: the reason is in the row."]
    return "\n".join(lines + notes)


def _cells(row: dict[str, Any], keys: list[str]) -> list[str]:
    metric = row.get("metric")
    kind = kind_of(metric) if metric else "float"
    cells = [row["run"], row["test_set"], header_unit(metric) if metric else ""]
    if metric:
        diff = row.get("vs_first")
        cells += [show_interval(row["value"], row["interval"], kind), f"{row['checkpoint']} (step {row['step']})",
                  f"{show(row['oracle']['value'], kind)} ({row['oracle']['checkpoint']})",
                  _difference(diff, kind), "" if not diff or diff["difference"] is None else ("yes" if diff["beyond_noise"] else "no")]
    else:
        cells += [""] * 5
    wall = row.get("training_s")
    cells += ["" if row.get("updates") is None else str(row["updates"]),
              "" if wall is None else f"{wall:.0f} s",
              "" if row.get("utt_per_s") is None else f"{row['utt_per_s']:.1f}"]
    return cells + [json.dumps(row["config"][k]) if not isinstance(row["config"][k], str) else row["config"][k]
                    for k in keys]


def _difference(diff: dict | None, kind: str) -> str:
    if not diff:
        return ""
    if diff["difference"] is None:
        return f"none: {diff['reason']}"
    return f"{_signed(diff['difference'], kind)} [{_signed(diff['low'], kind)}, {_signed(diff['high'], kind)}]"


def _signed(value: float, kind: str) -> str:
    text = show(value, kind)
    return text if text.startswith("-") else f"+{text}"
