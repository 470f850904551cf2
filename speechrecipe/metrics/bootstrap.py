"""Bootstrap confidence intervals over independent units, generic over metrics. numpy only (no torch).

A problem describes a test set's evidence as `UnitStatistics`: the names of its independent units
(speakers, utterances, recordings), a digest of what they hold (trials, references) and a function from
resample counts to metric values. A resample draws the units with replacement; `counts[r, u]` is how often
unit u was drawn in resample r. The same seed, resample number and unit names give the same counts, so two
runs on one test set are resampled alike and their difference can be bootstrapped pairwise (`paired_difference`).

The statistic resampled is the reported one: drawing every unit exactly once (`all_once`) gives the
headline value (report.py checks it, within RELATIVE_TOLERANCE, and gives no interval where it does not).
A resample on which the metric is undefined (its units hold nothing the metric divides by: no reference
speech, no reference words, no target or no non-target trial) is left out and counted (`undefined`); the
interval is the central 95 % of the defined resamples.

- `ratio_statistics`: metrics that are a sum over units over another sum (WER = errors / words by
  utterance, accuracy = correct / utterances, DER = error seconds / scored seconds by recording).
- `verification_statistics`: EER and minDCF of weighted trials (asv), units = speakers, on the same error
  curves as metrics/eer.py (every distinct score a threshold, the same EER point).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

CONFIDENCE = 0.95
MAX_CELLS = 4_000_000  # resamples × units drawn at once (memory of one chunk of counts)
RELATIVE_TOLERANCE = 1e-12  # all units drawn once must give the headline value to this (float summation order)
_COLLINEAR_TOL = 1e-12  # as metrics/eer.py: second differences of error rates below this are rounding


@dataclass(frozen=True)
class UnitStatistics:
    """A test set's evidence as independent units and the metrics a resample of them gives.

    `metrics(counts)` maps counts [R, U] (draws of each unit, units in the order of `units`) to
    {metric name: [R] values}; a value may be nan where a resample leaves a metric undefined.
    """

    unit: str  # what one unit is: "speaker", "utterance", "recording"
    units: list[str]
    metrics: Callable[[np.ndarray], dict[str, np.ndarray]]
    # digest of the units and what each holds (its trials, reference text, labels or segments, scoring
    # settings), not of the system's output: two runs may be compared pairwise only when these are equal
    contents: str = ""

    @property
    def units_digest(self) -> str:
        """Identifies the unit list: runs resampled alike have the same digest."""
        return hashlib.sha256("\n".join(self.units).encode()).hexdigest()[:16]

    def all_once(self) -> dict[str, float]:
        """The metrics of the resample that draws every unit exactly once: the test set itself."""
        return {name: float(v[0]) for name, v in self.metrics(np.ones((1, len(self.units)), dtype=np.int32)).items()}


def contents_digest(items) -> str:
    """A digest of a test set's evaluation units and their contents: a string, or any JSON-able structure."""
    import json

    text = items if isinstance(items, str) else json.dumps(items, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reproduces(headline: float, once: float) -> bool:
    """Whether the all-units resample gives the headline value (relative RELATIVE_TOLERANCE)."""
    return abs(headline - once) <= RELATIVE_TOLERANCE * max(abs(headline), abs(once)) or headline == once


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


def percentile_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The central CONFIDENCE share of the resampled values, resamples where it is undefined (not finite)
    left out; (None, None) when none is defined."""
    tail = 100 * (1 - CONFIDENCE) / 2
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def interval(value: float, values: np.ndarray, stats: UnitStatistics) -> dict:
    """results.json's form: {value, low, high, resamples, undefined, unit, units}; `undefined` resamples (on
    which the metric has no value) are left out of low and high; with none defined, low and high are None
    and `reason` says why."""
    low, high = percentile_interval(values)
    undefined = int(values.size - np.isfinite(values).sum())
    found = {"value": value, "low": low, "high": high, "resamples": int(values.size), "undefined": undefined,
             "unit": stats.unit, "units": len(stats.units)}
    if len(stats.units) < 2:  # every resample is the test set itself: a zero-width interval would claim certainty
        found |= {"low": None, "high": None, "reason": f"the test set has one {stats.unit}: resampling it cannot "
                                                       "show how the metric varies"}
    elif low is None:
        found["reason"] = f"the metric is undefined on every one of the {values.size} resamples of the {stats.unit}s"
    return found


def paired_difference(first: float, second: float, first_values: np.ndarray, second_values: np.ndarray) -> dict:
    """second − first and its 95 % interval from the two runs' values on the same resamples:
    {difference, low, high, beyond_noise, undefined} (beyond_noise: the interval excludes 0; resamples where
    either run's metric is undefined are left out and counted)."""
    both = np.isfinite(first_values) & np.isfinite(second_values)
    low, high = percentile_interval(second_values[both] - first_values[both])
    if low is None:
        return {"difference": None, "reason": "the metric is undefined on every resample of one of the runs"}
    return {"difference": second - first, "low": low, "high": high, "beyond_noise": bool(low > 0 or high < 0),
            "undefined": int(both.size - both.sum())}


# ----- statistics of common metrics ----------------------------------------------------------------


def ratio_statistics(unit: str, units: list[str], parts: dict[str, tuple[np.ndarray, np.ndarray]],
                     contents: str = "") -> UnitStatistics:
    """Metrics of the form Σ numerator / Σ denominator over units: {metric: (numerator [U], denominator [U])};
    a resample whose denominators sum to 0 leaves the metric undefined (nan)."""
    numerators = np.stack([np.asarray(n, dtype=np.float64) for n, _ in parts.values()], axis=1)
    denominators = np.stack([np.asarray(d, dtype=np.float64) for _, d in parts.values()], axis=1)
    names = list(parts)

    def metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            below = counts @ denominators
            values = np.where(below > 0, (counts @ numerators) / below, np.nan)
        return {name: values[:, k] for k, name in enumerate(names)}

    return UnitStatistics(unit, list(units), metrics, contents)


def verification_statistics(scores: np.ndarray, labels: np.ndarray, enroll_units: np.ndarray,
                            test_units: np.ndarray | None, units: list[str], unit: str = "speaker",
                            p_targets: tuple[float, ...] = (0.01, 0.05), contents: str = "") -> UnitStatistics:
    """EER ("eer") and minDCF ("mindcf_<p>") of trials whose two sides belong to units (speakers).

    Two-way resampling: a resample draws speakers with replacement, and each copy of a speaker meets each
    copy of every other, so a non-target trial of speakers (a, b) weighs count[a]·count[b] and a target
    trial of speaker a weighs count[a]. Trials sharing a speaker therefore move together, as they do when
    another set of speakers is recorded. The error curves are metrics/eer.py's, weighted: a threshold at
    every distinct score and +inf, fnr = 1 − accepted targets / targets, fpr = accepted non-targets /
    non-targets, and the EER read at eer.py's point; all weights 1 give eer() and min_dcf() exactly.
    With `test_units` None each trial weighs its enroll unit's count (one unit per trial, e.g. trials).
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(labels).astype(bool)
    grid = np.unique(scores)
    sides = []
    for mask in (target, ~target):
        order = np.argsort(scores[mask], kind="stable")
        sorted_scores = scores[mask][order]
        # trials of this class rejected at each threshold (score below it), and at +inf all of them
        below = np.append(np.searchsorted(sorted_scores, grid, side="left"), sorted_scores.size)
        test = None if test_units is None else np.asarray(test_units)[mask][order].astype(np.int32)
        sides.append((np.asarray(enroll_units)[mask][order].astype(np.int32), test, below))
    (t_enroll, _, t_below), (n_enroll, n_test, n_below) = sides
    # minDCF only at thresholds that can be its minimum, whatever the weights: raising the threshold past a
    # score held by non-targets only cannot raise the cost, past one held by targets only cannot lower it
    has_target, has_nontarget = np.diff(t_below) > 0, np.diff(n_below) > 0
    candidates = np.flatnonzero(np.append(has_target, True) & np.concatenate(([True], has_nontarget)))

    def metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
        found = {"eer": np.empty(len(counts))} | {f"mindcf_{p}": np.empty(len(counts)) for p in p_targets}
        for r, row in enumerate(counts):
            missed = _cumulative(row.take(t_enroll))  # a target trial weighs its speaker's count
            rejected = _cumulative(row.take(n_enroll) if n_test is None else row.take(n_enroll) * row.take(n_test))
            targets, nontargets = float(missed[-1]), float(rejected[-1])
            if targets == 0 or nontargets == 0:  # undefined: the drawn speakers have no trial of one kind
                for values in found.values():
                    values[r] = np.nan
                continue

            def curves(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                """(fpr, fnr) at these thresholds, computed as eer.py computes them"""
                miss, reject = missed[t_below[points]].astype(np.float64), rejected[n_below[points]].astype(np.float64)
                return (nontargets - reject) / nontargets, 1.0 - (targets - miss) / targets

            point, fpr, fnr = eer_point_of(curves, grid.size + 1)
            found["eer"][r] = max(fpr, fnr)
            fpr, fnr = curves(candidates)
            for p in p_targets:
                found[f"mindcf_{p}"][r] = float((p * fnr + (1.0 - p) * fpr).min()) / min(p, 1.0 - p)
        return found

    return UnitStatistics(unit, list(units), metrics, contents)


def eer_point(fpr: np.ndarray, fnr: np.ndarray) -> int:
    """eer_point_of on whole curves: the index metrics/eer.py's eer_index picks."""
    return eer_point_of(lambda points: (fpr[points], fnr[points]), fpr.size)[0]


def eer_point_of(curves: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], n: int) -> tuple[int, float, float]:
    """(index, fpr, fnr) of the point metrics/eer.py's eer_index picks on a curve of n points that `curves`
    gives at any indices: the last minimum of |fnr − fpr| over the points not interior to a straight stretch.
    fnr rises and fpr falls along the thresholds, so fnr − fpr crosses 0 once (found by bisection) and the
    points within any value of |fnr − fpr| form one run around it: a window there, grown until it holds every
    point that could tie, decides, without computing the whole curve."""
    lo, hi = 0, n
    while lo < hi:  # the first point with fnr − fpr >= 0, as np.searchsorted(fnr - fpr, 0) finds it
        mid = (lo + hi) // 2
        fpr, fnr = curves(np.array([mid]))
        lo, hi = (mid + 1, hi) if fnr[0] - fpr[0] < 0 else (lo, mid)
    crossing, width = lo, 32
    while True:
        first, last = max(0, crossing - width), min(n, crossing + width)
        points = np.arange(max(0, first - 1), min(n, last + 1))  # one more each side: neighbours and edges
        fpr, fnr = curves(points)
        gaps = fnr - fpr
        inside = slice(first - points[0], first - points[0] + last - first)
        gap = np.abs(gaps[inside])
        if n > 3:  # eer_index drops interior points (1 .. n-3) of straight stretches of the curve
            k = np.arange(first, last)
            inner = (k >= 1) & (k <= n - 3)
            j = k[inner] - points[0]
            second = [np.abs((x[j + 1] - x[j]) - (x[j] - x[j - 1])) for x in (fpr, fnr)]
            straight = (second[0] <= _COLLINEAR_TOL) & (second[1] <= _COLLINEAR_TOL)
            gap[np.flatnonzero(inner)[straight]] = np.inf
        best = gap.min()
        left_ok = first == 0 or abs(gaps[first - 1 - points[0]]) > best
        right_ok = last == n or abs(gaps[last - points[0]]) > best
        if np.isfinite(best) and left_ok and right_ok:
            pick = int(np.flatnonzero(gap == best)[-1])
            return first + pick, float(fpr[inside][pick]), float(fnr[inside][pick])
        width *= 4


def _cumulative(weights: np.ndarray) -> np.ndarray:
    """[0, w0, w0 + w1, ...]: the sum of the first k weights at k (integer sums: exact and fast)."""
    sums = np.empty(weights.size + 1, dtype=np.int64)
    sums[0] = 0
    np.cumsum(weights, dtype=np.int64, out=sums[1:])
    return sums
