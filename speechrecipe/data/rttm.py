"""RTTM files and speech intervals.

An RTTM line is `SPEAKER <recording> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>`
(times in seconds); other line types are skipped. A segment here is (start, end, speaker).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

from speechrecipe.fileio import atomic_open
from speechrecipe.errors import DataError

Segment = tuple[float, float, str]


def read_rttm(path: Path) -> dict[str, list[Segment]]:
    """{recording: [(start, end, speaker), ...] in file order}; a malformed line is a DataError naming it."""
    found: dict[str, list[Segment]] = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields or fields[0] != "SPEAKER":
                continue
            try:
                recording, start, duration, speaker = fields[1], float(fields[3]), float(fields[4]), fields[7]
            except (IndexError, ValueError):
                raise DataError(f"{path}:{number}: expected 'SPEAKER <recording> <channel> <start> <duration> "
                                f"<NA> <NA> <speaker> <NA> <NA>', got {line.strip()!r}") from None
            if start < 0 or duration < 0:
                raise DataError(f"{path}:{number}: negative start or duration in {line.strip()!r}")
            found[recording].append((start, start + duration, speaker))
    return dict(found)


def rttm_lines(recording: str, segments: Iterable[Segment]) -> list[str]:
    """RTTM lines of one recording's segments, in time order."""
    return [f"SPEAKER {recording} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>\n"
            for start, end, speaker in sorted(segments)]


def write_rttm(path: Path, recordings: dict[str, list[Segment]]) -> None:
    """One RTTM file for several recordings (sorted by name), written atomically."""
    with atomic_open(path) as handle:
        for recording in sorted(recordings):
            handle.writelines(rttm_lines(recording, recordings[recording]))


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals as sorted, disjoint (start, end) pairs."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        elif end > start:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def overlap_secs(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds covered by both of two merged interval lists."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def speech_by_speaker(segments: Iterable[Segment]) -> dict[str, list[tuple[float, float]]]:
    """Each speaker's merged speech intervals."""
    by_speaker: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for start, end, speaker in segments:
        by_speaker[speaker].append((start, end))
    return {speaker: merge_intervals(found) for speaker, found in by_speaker.items()}
