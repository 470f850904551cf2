"""Kaldi-style diarization data directories (SUPERB SD's LibriMix, CALLHOME recipes) → manifests.

`<root>/data/<split>/` holds `wav.scp` (`<recording> <path>`, absolute or relative to <root>)
and `rttm` (the reference), and optionally `segments` (`<utt> <recording> <start> <end>`),
`utt2spk`, `spk2utt` and `reco2dur`, which must then agree with the RTTM and the audio.

What is stored: one manifest row per recording with the audio fields and the RTTM's segments
(`"segments": [[start, end, speaker], ...]`, seconds, overlap allowed) and `"speakers"`. Frame
targets are made from them for each training chunk at the upstream's frame rate; nothing per
frame is written to disk.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from speechrecipe.data.corpora.common import corpus_root, probe_rows
from speechrecipe.data.manifest import write_jsonl
from speechrecipe.data.rttm import Segment, overlap_secs, read_rttm, speech_by_speaker
from speechrecipe.errors import DataError

PROTOCOL_FILES = ("wav.scp", "rttm", "segments", "utt2spk", "spk2utt", "reco2dur")
TOLERANCE_SECS = 0.05  # time disagreements up to this (rounding in the files) are accepted


def data_dir(root: Path, split: str) -> Path:
    return root / "data" / split


def prepare_kaldi_diarization(root: Path, out_dir: Path, manifests: dict[str, str], strict: bool, check_audio: str,
                              num_workers: int, sample_rate: int) -> dict:
    """Write `<name>.jsonl` for each {manifest name: split folder}; a summary per manifest."""
    root = corpus_root(root)
    summary = {}
    for name, split in manifests.items():
        rows = read_split(root, split, out_dir, strict, check_audio, num_workers, sample_rate)
        write_jsonl(Path(out_dir) / f"{name}.jsonl", rows)
        summary[name] = {"split": split, "recordings": len(rows), "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
                         "speakers": len({s for r in rows for s in r["speakers"]})}
    return summary


def read_split(root: Path, split: str, out_dir: Path, strict: bool, check_audio: str, num_workers: int,
               sample_rate: int) -> list[dict]:
    """Manifest rows of one data dir, checked against each other and the audio."""
    folder = data_dir(root, split)
    for required in ("wav.scp", "rttm"):
        if not (folder / required).is_file():
            raise DataError(f"{folder / required} does not exist; a diarization data dir needs wav.scp and rttm "
                            "(segments, utt2spk, spk2utt and reco2dur are checked when present)")
    wavs = read_wav_scp(folder / "wav.scp", root)
    reference = read_rttm(folder / "rttm")
    for recording in reference:
        if recording not in wavs:
            raise DataError(f"{folder / 'rttm'}: recording {recording} is not in wav.scp")
    items = [(rec, path, {"segments": [list(s) for s in sorted(reference.get(rec, []))]}) for rec, path in wavs.items()]
    rows = probe_rows(items, out_dir, strict, check_audio, num_workers, sample_rate)
    _check_defined(folder, split, wavs, rows, out_dir)
    _check_durations(folder, rows)
    if (folder / "segments").is_file() or (folder / "utt2spk").is_file():
        _check_segments(folder, rows)
    for row in rows.values():
        row["speakers"] = sorted({s for _, _, s in row["segments"]})
    return list(rows.values())


def _check_defined(folder: Path, split: str, wavs: dict, rows: dict[str, dict], out_dir: Path) -> None:
    """A split on which DER is defined: at least one usable recording, and reference speech to divide by
    (an empty split or reference would make its DER, the validation DER or the tuning a made-up number)."""
    if not wavs:
        raise DataError(f"{folder / 'wav.scp'}: split {split} lists no recording; DER is undefined on an empty "
                        "split: list its recordings, or name another split")
    if not rows:
        raise DataError(f"{folder / 'wav.scp'}: split {split} has no usable recording (see "
                        f"{Path(out_dir) / 'bad_audio.tsv'}); DER is undefined on an empty split")
    if not any(end > start for row in rows.values() for start, end, _ in row["segments"]):
        raise DataError(f"{folder / 'rttm'}: split {split} has no reference speech ({len(rows)} recordings, no "
                        "SPEAKER segment); DER divides by the reference speech, so it is undefined: give the "
                        "split's reference RTTM")


def _table(path: Path, fields: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated file whose lines have at least `fields` fields."""
    lines = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < fields:
                raise DataError(f"{path}:{number}: expected {fields} fields, got {line.strip()!r}")
            lines.append((number, parts))
    return lines


def read_wav_scp(path: Path, root: Path) -> dict[str, Path]:
    """{recording: audio file}; a piped command or a missing file is a DataError naming the line."""
    wavs: dict[str, Path] = {}
    for number, parts in _table(path, 2):
        recording, rest = parts[0], " ".join(parts[1:])
        if rest.endswith("|"):
            raise DataError(f"{path}:{number}: {recording} is a piped command ({rest!r}); speechrecipe reads audio "
                            "files only: write the audio to files and list their paths")
        if len(parts) > 2:
            raise DataError(f"{path}:{number}: {recording}: expected one file path, got {rest!r} (a command, or a "
                            "path with spaces, which wav.scp cannot hold)")
        audio = Path(rest).expanduser()
        audio = audio if audio.is_absolute() else root / audio
        if not audio.is_file():
            raise DataError(f"{path}:{number}: {audio} does not exist (relative paths are read from {root})")
        if recording in wavs:
            raise DataError(f"{path}:{number}: recording {recording} is listed twice")
        wavs[recording] = audio
    return wavs


def _check_durations(folder: Path, rows: dict[str, dict]) -> None:
    """reco2dur (when present) matches the audio; no RTTM segment runs past the recording's end."""
    if (folder / "reco2dur").is_file():
        for number, (recording, seconds, *_) in _table(folder / "reco2dur", 2):
            row = rows.get(recording)
            if row is not None and abs(float(seconds) - row["duration"]) > TOLERANCE_SECS:
                raise DataError(f"{folder / 'reco2dur'}:{number}: recording {recording} lasts {float(seconds):.2f} s "
                                f"there but {row['duration']:.2f} s in {row['path']}; fix reco2dur or the audio")
    for recording, row in rows.items():
        for start, end, speaker in row["segments"]:
            if end > row["duration"] + TOLERANCE_SECS:
                raise DataError(f"{folder / 'rttm'}: recording {recording}: speaker {speaker}'s segment "
                                f"{start:.2f}-{end:.2f} s ends after the recording ({row['duration']:.2f} s)")


def _check_segments(folder: Path, rows: dict[str, dict]) -> None:
    """segments + utt2spk (+ spk2utt) describe the same speech per speaker as the RTTM."""
    for name in ("segments", "utt2spk"):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name} does not exist; segments and utt2spk come together")
    speaker_of = {utt: spk for _, (utt, spk, *_) in _table(folder / "utt2spk", 2)}
    if (folder / "spk2utt").is_file():
        for number, (spk, *utts) in _table(folder / "spk2utt", 2):
            wrong = [u for u in utts if speaker_of.get(u) != spk]
            if wrong:
                raise DataError(f"{folder / 'spk2utt'}:{number}: {wrong[0]} is not speaker {spk}'s in utt2spk")
    listed: dict[str, list[Segment]] = defaultdict(list)
    for number, (utt, recording, start, end, *_) in _table(folder / "segments", 4):
        if utt not in speaker_of:
            raise DataError(f"{folder / 'segments'}:{number}: utterance {utt} is not in utt2spk")
        listed[recording].append((float(start), float(end), speaker_of[utt]))
    for recording, row in rows.items():
        _check_speakers(folder, recording, {s for *_, s in listed.get(recording, [])}, {s for *_, s in row["segments"]})
        disagreement = _disagreement(listed.get(recording, []), [tuple(s) for s in row["segments"]])
        if disagreement:
            raise DataError(f"{folder / 'segments'}: recording {recording}: segments/utt2spk and rttm disagree "
                            f"({disagreement}); regenerate one from the other")


def _check_speakers(folder: Path, recording: str, listed: set[str], reference: set[str]) -> None:
    """The same speakers in segments/utt2spk as in the rttm, each named where it is missing (before the
    speech per speaker is compared, which would name whichever speaker sorts first)."""
    if reference - listed:
        speaker = sorted(reference - listed)[0]
        raise DataError(f"{folder / 'rttm'}: recording {recording}: speaker {speaker} is in the rttm but not in "
                        f"{folder / 'utt2spk'} for any utterance of this recording (there: "
                        f"{', '.join(sorted(listed)) or 'no speaker'}); fix the speaker id in one of them")
    if listed - reference:
        speaker = sorted(listed - reference)[0]
        raise DataError(f"{folder / 'utt2spk'}: recording {recording}: speaker {speaker} is in utt2spk for an utterance "
                        f"of this recording but not in {folder / 'rttm'} (there: {', '.join(sorted(reference))}); "
                        "fix the speaker id in one of them")


def _disagreement(listed: list[Segment], reference: list[Segment]) -> str:
    """'' when both hold the same speech per speaker (to TOLERANCE_SECS per boundary), else what differs."""
    a, b = speech_by_speaker(listed), speech_by_speaker(reference)
    for speaker in sorted(set(a) | set(b)):
        x, y = a.get(speaker, []), b.get(speaker, [])
        differ = sum(e - s for s, e in x) + sum(e - s for s, e in y) - 2 * overlap_secs(x, y)
        if differ > TOLERANCE_SECS * 2 * max(len(x), len(y), 1):
            return f"speaker {speaker}: {differ:.2f} s of speech differ"
    return ""


def protocol_files(root: Path, splits: list[str]) -> list[Path]:
    """The text files of each split's data dir (an edit prepares the corpus again)."""
    return [data_dir(root, s) / name for s in splits for name in PROTOCOL_FILES if (data_dir(root, s) / name).is_file()]

