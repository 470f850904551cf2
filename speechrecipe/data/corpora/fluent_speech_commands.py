"""Fluent Speech Commands in its published layout: intent-classification manifests.

    ROOT/data/train_data.csv, valid_data.csv, test_data.csv
        ,path,speakerId,transcription,action,object,location
        0,wavs/speakers/2BqVo8kVB2Skwgyb/0a3129c0-4474-11e9-a9a5-5dbec3b8816a.wav,2BqVo8kVB2Skwgyb,Change language,change language,none,none
    ROOT/wavs/speakers/<speakerId>/<uuid>.wav

The first column is an unnamed row index; `path` is relative to ROOT (a .wav path also finds
the .flac: the bundled mini corpus uses FLAC). Every other column is kept in the manifest row
(`speakerId` as "speaker"), so which columns are label fields is decided later (build_encoder.fields).
An utterance id is the path under wavs/speakers/ without its extension: "<speakerId>/<uuid>".
"""
from __future__ import annotations

import csv
from pathlib import Path

from speechrecipe.data.corpora.common import corpus_root, find_listed, probe_rows, require_found
from speechrecipe.data.manifest import split_manifest, write_jsonl
from speechrecipe.errors import DataError

SPLITS = ("train", "valid", "test")
REQUIRED = ("path", "speakerId", "transcription")
SPEAKERS_DIR = "wavs/speakers/"


def prepare_fluent_speech_commands(
    root: Path,
    out_dir: Path,
    strict: bool = False,
    check_audio: str = "full",
    num_workers: int = 2,
    sample_rate: int = 16000,
) -> dict:
    """Write train.jsonl, valid.jsonl and test_test.jsonl from data/<split>_data.csv, plus bad_audio.tsv."""
    root, out_dir = corpus_root(root), Path(out_dir)
    splits = {split: read_fsc_csv(root / "data" / f"{split}_data.csv") for split in SPLITS}
    items: dict[str, list[tuple[str, Path, dict]]] = {}
    seen: dict[str, str] = {}
    for split, records in splits.items():
        found, missing = [], []
        for record in records:
            path = find_listed(root, record["path"])
            if path is None:
                missing.append(record["path"])
                continue
            utt = _utt_id(record["path"])
            if utt in seen:
                raise DataError(f"{record['path']} is listed twice (in {seen[utt]}_data.csv and {split}_data.csv); "
                                "remove one of the rows")
            seen[utt] = split
            fields = {("speaker" if k == "speakerId" else k): v for k, v in record.items() if k != "path"}
            found.append((utt, path, fields))
        require_found(missing, root / "data" / f"{split}_data.csv", root)
        items[split] = found
    everything = [item for split in SPLITS for item in items[split]]
    rows = probe_rows(everything, out_dir, strict, check_audio, num_workers, sample_rate)
    summary: dict = {"bad_files": len(everything) - len(rows)}
    for split in SPLITS:
        split_rows = [rows[utt] for utt, _, _ in items[split] if utt in rows]
        write_jsonl(split_manifest(out_dir, split), split_rows)
        summary[f"{split}_utterances"] = len(split_rows)
        summary[f"{split}_speakers"] = len({r["speaker"] for r in split_rows})
    return summary


def read_fsc_csv(path: Path) -> list[dict[str, str]]:
    """The rows of one split's CSV as {column: value}, without the unnamed index column."""
    if not path.is_file():
        raise DataError(f"prepare_data.dataset_root: {path} does not exist; expected the Fluent Speech Commands "
                        "layout data/{train,valid,test}_data.csv")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or any(column not in header for column in REQUIRED):
            raise DataError(f"{path}: header {header} lacks {', '.join(REQUIRED)}; expected "
                            "',path,speakerId,transcription,action,object,location'")
        keep = [(i, name) for i, name in enumerate(header) if name]  # the unnamed first column is a row index
        records = []
        for number, values in enumerate(reader, 2):
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"{path}:{number}: {len(values)} fields where the header has {len(header)}; "
                                "fix or remove the line")
            records.append({name: values[i] for i, name in keep})
    return records


def _utt_id(rel: str) -> str:
    rel = rel.replace("\\", "/")
    rel = rel[len(SPEAKERS_DIR):] if rel.startswith(SPEAKERS_DIR) else rel
    return rel.rsplit(".", 1)[0]
