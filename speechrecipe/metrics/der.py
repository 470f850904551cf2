"""Diarization error rate: (missed speech + false alarm + speaker confusion) / reference speech.

Scored as NIST md-eval and pyannote.metrics do: overlapping speech counts once per speaker, the
hypothesis speakers are mapped one-to-one onto reference speakers to maximise the time they
agree (the Hungarian algorithm, per recording), and a collar of `collar` seconds on EACH side
of every reference segment boundary is not scored (md-eval's -c; pyannote's `collar` is the
whole width, twice this). Collar 0 (SUPERB SD) scores everything.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from speechrecipe.data.rttm import Segment, speech_by_speaker
from speechrecipe.metrics.assignment import min_cost_assignment

Piece = tuple[float, frozenset, frozenset]  # (seconds, reference speakers, hypothesis speakers)


@dataclass
class DERCounts:
    """Seconds of each error and of reference speech (summed over speakers in overlap)."""

    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    total: float = 0.0

    def __add__(self, other: "DERCounts") -> "DERCounts":
        return DERCounts(self.missed + other.missed, self.false_alarm + other.false_alarm,
                         self.confusion + other.confusion, self.total + other.total)

    @property
    def der(self) -> float:
        errors = self.missed + self.false_alarm + self.confusion
        return errors / self.total if self.total > 0 else float(errors > 0)  # no reference speech: as pyannote

    def rates(self) -> dict[str, float | None]:
        """der and its parts as shares of reference speech, plus the reference seconds; without scored
        reference speech they are undefined: None, and "undefined" says why."""
        if self.total <= 0:
            why = (f"no reference speech is scored (system output: {self.false_alarm:.2f} s of speech), so DER, "
                   "which divides by it, is undefined")
            return {"der": None, "missed": None, "false_alarm": None, "confusion": None, "speech_secs": 0.0,
                    "undefined": {name: why for name in ("der", "missed", "false_alarm", "confusion")}}
        scale = 1.0 / self.total
        return {"der": self.der, "missed": self.missed * scale, "false_alarm": self.false_alarm * scale,
                "confusion": self.confusion * scale, "speech_secs": self.total}


def diarization_errors(reference: Iterable[Segment], hypothesis: Iterable[Segment], collar: float = 0.0) -> DERCounts:
    """DER counts of one recording; speaker names of reference and hypothesis need not match.
    A speaker's overlapping or touching segments count as one (collars go around the merged ones)."""
    pieces = _pieces(_merged(reference), _merged(hypothesis), collar)
    mapping = optimal_mapping(pieces)
    counts = DERCounts()
    for seconds, ref, hyp in pieces:
        correct = sum(1 for h in hyp if mapping.get(h) in ref)
        counts.total += seconds * len(ref)
        counts.missed += seconds * max(0, len(ref) - len(hyp))
        counts.false_alarm += seconds * max(0, len(hyp) - len(ref))
        counts.confusion += seconds * (min(len(ref), len(hyp)) - correct)
    return counts


def corpus_der(reference: dict[str, list[Segment]], hypothesis: dict[str, list[Segment]],
               collar: float = 0.0) -> DERCounts:
    """Counts summed over the reference's recordings (a recording missing from the hypothesis is all missed)."""
    total = DERCounts()
    for recording, segments in reference.items():
        total = total + diarization_errors(segments, hypothesis.get(recording, []), collar)
    return total


def optimal_mapping(pieces: list[Piece]) -> dict[str, str]:
    """{hypothesis speaker: reference speaker} maximising the seconds both are active."""
    together: dict[tuple[str, str], float] = defaultdict(float)
    for seconds, ref, hyp in pieces:
        for r in ref:
            for h in hyp:
                together[r, h] += seconds
    refs = sorted({r for r, _ in together})
    hyps = sorted({h for _, h in together})
    cost = [[-together.get((r, h), 0.0) for h in hyps] for r in refs]
    return {hyps[j]: refs[i] for i, j in min_cost_assignment(cost)}


def _merged(segments: Iterable[Segment]) -> list[Segment]:
    return [(s, e, speaker) for speaker, spans in speech_by_speaker(segments).items() for s, e in spans]


def _pieces(reference: list[Segment], hypothesis: list[Segment], collar: float) -> list[Piece]:
    """Cut the timeline at every boundary: each piece's length and who speaks in it, outside the collars."""
    events: list[tuple[float, int, str, str]] = []
    for side, segments in (("ref", reference), ("hyp", hypothesis)):
        for start, end, speaker in segments:
            if end > start:
                events += [(start, +1, side, speaker), (end, -1, side, speaker)]
    if collar > 0:
        for start, end, _ in reference:
            for boundary in (start, end):
                events += [(boundary - collar, +1, "collar", ""), (boundary + collar, -1, "collar", "")]
    events.sort(key=lambda e: e[0])
    active: dict[tuple[str, str], int] = defaultdict(int)
    pieces: list[Piece] = []
    previous = None
    for time, change, side, speaker in events:
        if previous is not None and time > previous and not active["collar", ""]:
            ref = frozenset(s for (k, s), n in active.items() if n > 0 and k == "ref")
            hyp = frozenset(s for (k, s), n in active.items() if n > 0 and k == "hyp")
            if ref or hyp:
                pieces.append((time - previous, ref, hyp))
        active[side, speaker] += change
        previous = time
    return pieces
