"""Manifests: JSONL (one utterance per line) and trial lists, always written atomically.

An utterance row is {"id", "path" (absolute), "num_frames", "sample_rate", "channels",
"duration" (seconds)} plus problem fields such as "speaker". num_frames and sample_rate describe
the file itself, so they are what `read_audio(start=..., num_frames=...)` expects.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from speechrecipe.data.tsv import internal_file_error, read_tsv, write_tsv
from speechrecipe.fileio import atomic_open

# one encoder for all rows: json.dumps(..., ensure_ascii=False) would build a new one per call
_encode_row = json.JSONEncoder(ensure_ascii=False).encode


def test_manifest_name(test_set: str) -> str:
    """The split name of a test set's manifest: test_<name> (every problem names them so)."""
    return f"test_{test_set}"


def split_manifest(out_dir: Path, split: str) -> Path:
    """train.jsonl, valid.jsonl, or test_<split>.jsonl for any other split (a test set)."""
    return out_dir / f"{split if split in ('train', 'valid') else test_manifest_name(split)}.jsonl"


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_open(path) as f:
        for row in rows:
            f.write(_encode_row(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file; blank lines are skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise internal_file_error(path, number, f"not valid JSON ({e.msg})") from None
    return rows


def write_trials(path: str | Path, trials: Iterable[tuple[int, str, str]]) -> None:
    """Write tab-separated `label enroll_id test_id` lines (1 target, 0 non-target), atomically."""
    write_tsv(path, trials)


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    """Read a file written by `write_trials` (ids may hold any character)."""
    trials = []
    for number, fields in read_tsv(path):
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise internal_file_error(path, number, f"expected 'label enroll_id test_id' with label 0 or 1, got {fields!r}")
        trials.append((int(fields[0]), fields[1], fields[2]))
    return trials
