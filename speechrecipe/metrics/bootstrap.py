"""Bootstrap confidence intervals over independent units, generic over metrics. numpy only (no torch).

A problem describes a test set's evidence as `UnitStatistics`: the names of its independent units
(speakers, utterances, recordings) and a function from resample counts to metric values. A resample
draws the units with replacement; `counts[r, u]` is how often unit u was drawn in resample r. The same
seed, resample number and unit names give the same counts, so two runs on one test set are resampled
alike and their difference can be bootstrapped pairwise (`paired_difference`).

- `ratio_statistics`: metrics that are a sum over units over another sum (WER = errors / words by
  utterance, accuracy = correct / utterances, DER = error seconds / scored seconds by recording).
- `verification_statistics`: EER and minDCF of weighted trials (asv), units = speakers.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

CONFIDENCE = 0.95
MAX_CELLS = 4_000_000  # resamples × units drawn at once (memory of one chunk of counts)
MAX_THRESHOLDS = 20_000  # verification: score thresholds tried per resample (all distinct scores when fewer)


@dataclass(frozen=True)
class UnitStatistics:
    """A test set's evidence as independent units and the metrics a resample of them gives.

    `metrics(counts)` maps counts [R, U] (draws of each unit, units in the order of `units`) to
    {metric name: [R] values}; a value may be nan where a resample leaves a metric undefined.
    """

    unit: str  # what one unit is: "speaker", "utterance", "recording"
    units: list[str]
    metrics: Callable[[np.ndarray], dict[str, np.ndarray]]

    @property
    def units_digest(self) -> str:
        """Identifies the unit list: runs resampled alike have the same digest."""
        return hashlib.sha256("\n".join(self.units).encode()).hexdigest()[:16]


def draw_counts(num_units: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of [r, num_units] draw counts, `resamples` rows in all, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    chunk = max(1, MAX_CELLS // max(num_units, 1))
    uniform = np.full(num_units, 1.0 / num_units)
    for start in range(0, resamples, chunk):
        yield rng.multinomial(num_units, uniform, size=min(chunk, resamples - start)).astype(np.int32)


def resample(stats: UnitStatistics, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """{metric: [resamples] values} over `resamples` bootstrap resamples of the units."""
    found: dict[str, list[np.ndarray]] = {}
    for counts in draw_counts(len(stats.units), resamples, seed):
        for name, values in stats.metrics(counts).items():
            found.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {name: np.concatenate(parts) for name, parts in found.items()}


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The central CONFIDENCE share of the resampled values (resamples where it is undefined left out)."""
    tail = 100 * (1 - CONFIDENCE) / 2
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def interval(value: float, values: np.ndarray, stats: UnitStatistics) -> dict:
    """results.json's form: {value, low, high, resamples, unit, units}."""
    low, high = percentile_interval(values)
    return {"value": value, "low": low, "high": high, "resamples": int(values.size), "unit": stats.unit,
            "units": len(stats.units)}


def paired_difference(first: float, second: float, first_values: np.ndarray, second_values: np.ndarray) -> dict:
    """second − first and its 95 % interval from the two runs' values on the same resamples:
    {difference, low, high, beyond_noise} (beyond_noise: the interval excludes 0)."""
    both = np.isfinite(first_values) & np.isfinite(second_values)
    low, high = percentile_interval(second_values[both] - first_values[both])
    return {"difference": second - first, "low": low, "high": high, "beyond_noise": bool(low > 0 or high < 0)}


# ----- statistics of common metrics ----------------------------------------------------------------


def ratio_statistics(unit: str, units: list[str], parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> UnitStatistics:
    """Metrics of the form Σ numerator / Σ denominator over units: {metric: (numerator [U], denominator [U])}."""
    numerators = np.stack([np.asarray(n, dtype=np.float64) for n, _ in parts.values()], axis=1)
    denominators = np.stack([np.asarray(d, dtype=np.float64) for _, d in parts.values()], axis=1)
    names = list(parts)

    def metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (counts @ numerators) / (counts @ denominators)
        return {name: values[:, k] for k, name in enumerate(names)}

    return UnitStatistics(unit, list(units), metrics)


def verification_statistics(scores: np.ndarray, labels: np.ndarray, enroll_units: np.ndarray,
                            test_units: np.ndarray | None, units: list[str], unit: str = "speaker",
                            p_targets: tuple[float, ...] = (0.01, 0.05)) -> UnitStatistics:
    """EER ("eer") and minDCF ("mindcf_<p>") of trials whose two sides belong to units (speakers).

    Two-way resampling: a resample draws speakers with replacement, and each copy of a speaker meets each
    copy of every other, so a non-target trial of speakers (a, b) weighs count[a]·count[b] and a target
    trial of speaker a weighs count[a]. Trials sharing a speaker therefore move together, as they do when
    another set of speakers is recorded. Thresholds: every distinct score, or MAX_THRESHOLDS quantiles.
    With `test_units` None each trial weighs its enroll unit's count (one unit per trial, e.g. trials).
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(labels).astype(bool)
    grid = np.unique(scores)
    if grid.size > MAX_THRESHOLDS:
        grid = np.unique(np.quantile(scores, np.linspace(0, 1, MAX_THRESHOLDS)))
    sides = []
    for mask in (target, ~target):
        order = np.argsort(scores[mask], kind="stable")
        sorted_scores = scores[mask][order]
        # trials of this class rejected at each threshold (score below it), and at +inf all of them
        below = np.append(np.searchsorted(sorted_scores, grid, side="left"), sorted_scores.size)
        test = None if test_units is None else np.asarray(test_units)[mask][order].astype(np.int32)
        sides.append((np.asarray(enroll_units)[mask][order].astype(np.int32), test, below))

    def metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
        found = {"eer": np.empty(len(counts))} | {f"mindcf_{p}": np.empty(len(counts)) for p in p_targets}
        for r, row in enumerate(counts):
            (t_enroll, _, t_below), (n_enroll, n_test, n_below) = sides
            miss = _cumulative(row.take(t_enroll), t_below)  # a target trial weighs its speaker's count
            weights = row.take(n_enroll) if n_test is None else row.take(n_enroll) * row.take(n_test)
            kept = _cumulative(weights, n_below)
            with np.errstate(invalid="ignore", divide="ignore"):
                fnr, fpr = miss / miss[-1], 1.0 - kept / kept[-1]
            best = np.argmin(np.abs(fnr - fpr)) if np.isfinite(fnr[0] + fpr[0]) else None
            found["eer"][r] = np.nan if best is None else max(fnr[best], fpr[best])
            for p in p_targets:
                found[f"mindcf_{p}"][r] = np.nanmin(p * fnr + (1 - p) * fpr) / min(p, 1 - p) if best is not None else np.nan
        return found

    return UnitStatistics(unit, list(units), metrics)


def _cumulative(weights: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sum of the first `ends[k]` weights, for each k (integer sums: exact and fast)."""
    sums = np.concatenate(([0], np.cumsum(weights, dtype=np.int64)))
    return sums[ends].astype(np.float64)
