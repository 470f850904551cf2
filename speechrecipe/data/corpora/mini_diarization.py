"""The mini diarization corpus: 2-speaker recordings mixed from the bundled mini LibriSpeech.

Built on first use into the cache (no audio ships for it), deterministically from its seed, in
the Kaldi data-directory layout that `kaldi_diarization` reads:

    <root>/wav/<split>/<recording>.wav                  16 kHz mono 16-bit
    <root>/data/<split>/{wav.scp,segments,utt2spk,spk2utt,reco2dur,rttm}

Each recording alternates utterances of two speakers of one LibriSpeech split (train ←
train-clean-100, dev ← dev-clean, test ← test-clean: disjoint speakers). A turn starts before the
other speaker's turn ends with probability `overlap_ratio` (the overlap covers 20-60 % of the
shorter of the two utterances), else after a pause drawn from `pause_secs`. Reference segments are
the utterances' extents. python -m speechrecipe.data.corpora.mini_diarization OUT builds one by hand.
"""
from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speechrecipe.data.rttm import Segment, overlap_secs, rttm_lines, speech_by_speaker
from speechrecipe.errors import DataError
from speechrecipe.fileio import naming

log = logging.getLogger(__name__)

SOURCE_SPLITS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
SAMPLE_RATE = 16000
DONE = "mini_corpus.json"  # written last: the folder is complete


@dataclass(frozen=True)
class MiniSpec:
    """What the mini corpus is made of; its digest names the folder."""

    seed: int = 1337
    recordings: dict = field(default_factory=lambda: {"train": 40, "dev": 8, "test": 8})
    utterances_per_recording: int = 4
    overlap_ratio: float = 0.3
    pause_secs: tuple = (0.2, 1.0)


def build_mini_corpus(source: Path, out: Path, spec: MiniSpec) -> Path:
    """Make the corpus in `out` unless complete there; built in a sibling folder and renamed into place."""
    if (out / DONE).is_file():
        return out
    if not source.is_dir():
        raise DataError(f"prepare_data.mini.source: {source} does not exist (the bundled mini LibriSpeech)")
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        summary = {split: _build_split(source / SOURCE_SPLITS[split], partial, split, count, spec)
                   for split, count in spec.recordings.items()}
        _write(partial / DONE, json.dumps({"spec": asdict(spec), "splits": summary}, indent=1).encode())
    except BaseException:  # a full disk, Ctrl-C: no half-built copy is left to fill it
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        os.rename(partial, out)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(partial, ignore_errors=True)
        if not (out / DONE).is_file():
            raise
    log.info("built the mini diarization corpus in %s: %s", out, json.dumps(summary))
    return out


def _write(path: Path, data: bytes) -> None:
    with naming(path):  # a full disk names the file
        path.write_bytes(data)


def _speakers(split_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(split_dir.glob("*/*/*.flac")):
        found.setdefault(path.parent.parent.name, []).append(path)
    if len(found) < 2:
        raise DataError(f"{split_dir}: the mini corpus needs at least 2 speakers with .flac utterances")
    return found


def _build_split(split_dir: Path, root: Path, split: str, count: int, spec: MiniSpec) -> dict:
    rng = random.Random(f"{spec.seed}-{split}")
    speakers = _speakers(split_dir)
    names = sorted(speakers)
    data, wav_dir = root / "data" / split, root / "wav" / split
    data.mkdir(parents=True)
    wav_dir.mkdir(parents=True)
    files = {name: [] for name in ("wav.scp", "segments", "utt2spk", "reco2dur", "rttm")}
    spk2utt: dict[str, list[str]] = {}
    speech = overlap = 0.0
    for index in range(count):
        recording = f"{split}_{index:04d}"
        pair = rng.sample(names, 2)
        audio, segments = _mix([speakers[s] for s in pair], pair, rng, spec)
        wav = io.BytesIO()
        sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")  # libsndfile would not name the file it failed on
        _write(wav_dir / f"{recording}.wav", wav.getvalue())
        duration = len(audio) / SAMPLE_RATE
        files["wav.scp"].append(f"{recording} wav/{split}/{recording}.wav\n")
        files["reco2dur"].append(f"{recording} {duration:.4f}\n")
        files["rttm"] += rttm_lines(recording, segments)
        for number, (start, end, speaker) in enumerate(sorted(segments)):
            utt = f"{speaker}-{recording}-{number:03d}"
            files["segments"].append(f"{utt} {recording} {start:.3f} {end:.3f}\n")
            files["utt2spk"].append(f"{utt} {speaker}\n")
            spk2utt.setdefault(speaker, []).append(utt)
        speech_secs, overlap_secs = _speech_and_overlap(segments)
        speech, overlap = speech + speech_secs, overlap + overlap_secs
    files["spk2utt"] = [f"{s} {' '.join(sorted(u))}\n" for s, u in sorted(spk2utt.items())]
    for name, lines in files.items():
        _write(data / name, "".join(sorted(lines) if name != "rttm" else lines).encode())
    return {"recordings": count, "speakers": len(names), "speech_secs": round(speech, 2),
            "overlapped_share_of_speech": round(overlap / max(speech, 1e-9), 4)}


def _mix(pools: list[list[Path]], pair: list[str], rng: random.Random, spec: MiniSpec) -> tuple[np.ndarray, list[Segment]]:
    """Alternate the two speakers' utterances; (float32 audio, reference segments)."""
    placed: list[tuple[int, np.ndarray, str]] = []
    last_end = {name: 0 for name in pair}
    previous_end, previous_len = int(rng.uniform(0.1, 0.5) * SAMPLE_RATE), 0
    for turn in range(spec.utterances_per_recording):
        who = turn % 2
        audio, rate = sf.read(rng.choice(pools[who]), dtype="float32")
        if rate != SAMPLE_RATE:
            raise DataError(f"mini LibriSpeech: expected {SAMPLE_RATE} Hz audio, got {rate}")
        if turn > 0 and rng.random() < spec.overlap_ratio:
            start = previous_end - int(rng.uniform(0.2, 0.6) * min(previous_len, len(audio)))
        else:
            start = previous_end + int(rng.uniform(*spec.pause_secs) * SAMPLE_RATE)
        start = max(start, last_end[pair[who]])  # a speaker never overlaps itself
        placed.append((start, audio, pair[who]))
        last_end[pair[who]] = start + len(audio)
        previous_end, previous_len = max(previous_end, start + len(audio)), len(audio)
    tail = int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
    mixture = np.zeros(max(s + len(a) for s, a, _ in placed) + tail, dtype=np.float32)
    for start, audio, _ in placed:
        mixture[start : start + len(audio)] += audio
    peak = float(np.abs(mixture).max())
    if peak > 0.99:
        mixture *= 0.99 / peak
    segments = [(round(s / SAMPLE_RATE, 3), round((s + len(a)) / SAMPLE_RATE, 3), who) for s, a, who in placed]
    return mixture, segments


def _speech_and_overlap(segments: list[Segment]) -> tuple[float, float]:
    """Seconds of speech summed over speakers, and seconds where both speak."""
    tracks = list(speech_by_speaker(segments).values())
    speech = sum(e - s for track in tracks for s, e in track)
    return speech, overlap_secs(*tracks) if len(tracks) == 2 else 0.0


if __name__ == "__main__":
    from speechrecipe.config import asset_path

    logging.basicConfig(level=logging.INFO)
    build_mini_corpus(asset_path("mini/librispeech/LibriSpeech"), Path(sys.argv[1]), MiniSpec())
