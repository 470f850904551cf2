"""Generate the bundled mini LibriSpeech corpus from espeak-ng voices.

Writes, in LibriSpeech's published layout:

    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac   16 kHz mono 16-bit FLAC
    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt     "<id> TRANSCRIPT IN CAPITALS"
    LibriSpeech/SPEAKERS.TXT                                                  "ID|SEX|SUBSET|MINUTES|NAME"
    README.md                                                                 what it is, counts, size, this command

Splits train-clean-100, dev-clean and test-clean have disjoint speakers. Speakers are
espeak-ng voice identities (see `espeak_corpus.py`); a chapter is a near-clean recording
session (high SNR, little reverberation, a mild EQ) and its utterances vary speed, pitch and
level a little. Sentences are random grammatical word strings in capitals, as LibriSpeech's.
Everything is seeded: the same arguments give byte-identical files. Needs `espeak-ng` and `sox`.

Regenerate (from the repository root, about 15 s on 2 cores):

    .venv/bin/python scripts/make_mini_librispeech.py

which is the same as `--out speechrecipe/assets/mini/librispeech --seed 1`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import espeak_corpus as ec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "speechrecipe/assets/mini/librispeech"
SPLITS = ("train-clean-100", "dev-clean", "test-clean")
FIRST_SPEAKER_ID = {"train-clean-100": 1001, "dev-clean": 2001, "test-clean": 3001}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; the defaults produce the bundled corpus."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for LibriSpeech/ (replaced) and README.md")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-speakers", type=int, default=28)
    p.add_argument("--eval-speakers", type=int, default=4, help="speakers in dev-clean and in test-clean each")
    p.add_argument("--train-chapters", type=int, default=2, help="chapters (sessions) per training speaker")
    p.add_argument("--train-utts", type=int, default=3, help="utterances per training chapter")
    p.add_argument("--eval-utts", type=int, default=5, help="utterances per dev/test speaker (one chapter)")
    p.add_argument("--min-words", type=int, default=5)
    p.add_argument("--max-words", type=int, default=14)
    p.add_argument("--workers", type=int, default=2)
    return p


def clean_session(rng: np.random.Generator) -> ec.Session:
    """A near-clean read-speech session: high SNR, a small room, a wide band, one mild EQ band."""
    return ec.Session(
        noise=str(rng.choice(list(ec.NOISE_EXPONENTS))),
        snr_db=float(rng.uniform(30, 45)),
        reverberance=float(rng.uniform(0, 25)),
        hf_damping=float(rng.uniform(20, 80)),
        room_scale=float(rng.uniform(5, 30)),
        pre_delay_ms=float(rng.uniform(0, 10)),
        highpass_hz=float(rng.uniform(60, 150)),
        lowpass_hz=float(rng.uniform(6500, 7900)),
        eq=((float(rng.uniform(300, 3000)), 1.0, float(rng.uniform(-3, 3))),),
        level_db=float(rng.uniform(-38, -32)),
    )


def build_plan(args: argparse.Namespace) -> tuple[list[ec.Job], dict[Path, list[str]], dict[str, tuple]]:
    """Every utterance to render, the lines of each .trans.txt, and {speaker id: (split, speaker)}."""
    counts = {"train-clean-100": args.train_speakers, "dev-clean": args.eval_speakers, "test-clean": args.eval_speakers}
    speakers = iter(ec.make_speakers(sum(counts.values()), args.seed))
    root = args.out / "LibriSpeech"
    jobs, transcripts, speaker_splits = [], defaultdict(list), {}
    for split in SPLITS:
        train = split.startswith("train")
        chapters, utts = (args.train_chapters, args.train_utts) if train else (1, args.eval_utts)
        for i in range(counts[split]):
            speaker_id, speaker = str(FIRST_SPEAKER_ID[split] + i), next(speakers)
            rng = ec.rng_for(args.seed, split, i)
            speaker_splits[speaker_id] = (split, speaker)
            for chapter_id in sorted(int(c) for c in rng.choice(90000, size=chapters, replace=False) + 10000):
                folder = root / split / speaker_id / str(chapter_id)
                session = clean_session(rng)
                for k in range(utts):
                    utt = f"{speaker_id}-{chapter_id}-{k:04d}"
                    text = ec.random_sentence(rng, args.min_words, args.max_words).upper()
                    jobs.append(ec.Job(folder / f"{utt}.flac", speaker, text, session, int(rng.integers(2**32))))
                    transcripts[folder / f"{speaker_id}-{chapter_id}.trans.txt"].append(f"{utt} {text}")
    return jobs, transcripts, speaker_splits


def speakers_txt(speaker_splits: dict[str, tuple], jobs: list[ec.Job], durations: list[float]) -> str:
    """SPEAKERS.TXT in LibriSpeech's format; the name is the espeak-ng voice."""
    minutes: dict[str, float] = defaultdict(float)
    for job, seconds in zip(jobs, durations):
        minutes[job.path.parts[-3]] += seconds / 60
    lines = [f"{sid:<5}| {spk.gender.upper()} | {split:<16}| {minutes[sid]:5.2f} | espeak-ng {spk.voice}"
             for sid, (split, spk) in speaker_splits.items()]
    return ";ID  |SEX| SUBSET          |MINUTES| NAME\n" + "\n".join(lines) + "\n"


def collect_stats(jobs: list[ec.Job], durations: list[float], root: Path) -> dict[str, str]:
    """Per split: speakers, utterances, duration; and the size on disk."""
    stats = {}
    for split in SPLITS:
        picked = [(j, d) for j, d in zip(jobs, durations) if j.path.parts[-4] == split]
        speakers = {j.path.parts[-3] for j, _ in picked}
        words = sum(len(j.text.split()) for j, _ in picked)
        secs = [d for _, d in picked]
        stats[split] = (f"{len(speakers)} speakers, {len(picked)} utterances, {words} words, "
                        f"{sum(secs):.0f} s ({min(secs):.1f}-{max(secs):.1f} s each)")
    stats["size (audio and transcripts)"] = f"{ec.folder_bytes(root) / 1e6:.1f} MB"
    return stats


def readme(stats: dict[str, str], command: str) -> str:
    """The corpus README, with the statistics filled in."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in stats.items())
    return f"""# Mini LibriSpeech (synthetic, espeak-ng)

A tiny speech-recognition corpus in the exact layout of LibriSpeech, for tests, demos and
smoke runs of the `asr` recipe. No real person is in it: every "speaker" is an espeak-ng
voice identity (English accent voice + voice variant + base pitch, speed and word gap), and
every "chapter" is a near-clean recording session (30-45 dB SNR, a small room, a wide band
and one mild EQ band). Within a chapter each utterance varies speed, pitch and level a
little. Sentences are random grammatical word strings (a vocabulary of about 450 words) in
capitals, as LibriSpeech's transcripts are. Scores on it say nothing about real-data accuracy.

## Layout

- `LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac`: 16 kHz mono
  16-bit FLAC; `<speaker>-<chapter>.trans.txt` beside them holds `<id> TRANSCRIPT` lines.
- Splits `train-clean-100` (speakers 1001..), `dev-clean` (2001..) and `test-clean` (3001..)
  have disjoint speakers. `LibriSpeech/SPEAKERS.TXT` names each speaker's espeak-ng voice.

## Statistics

| | |
|---|---|
{rows}

## Regenerate

From the repository root (needs `espeak-ng` and `sox`; deterministic):

    {command}

See the docstrings of `scripts/make_mini_librispeech.py` and `scripts/espeak_corpus.py`.
"""


def command_line(args: argparse.Namespace, defaults: argparse.Namespace) -> str:
    """The regeneration command: the options that differ from the defaults."""
    changed = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
               if k != "workers" and getattr(defaults, k) != v]
    return " ".join([".venv/bin/python scripts/make_mini_librispeech.py", *changed])


def main() -> None:
    """Plan, render, write transcripts, SPEAKERS.TXT and README, print a summary."""
    parser = build_parser()
    args, defaults = parser.parse_args(), parser.parse_args([])
    jobs, transcripts, speaker_splits = build_plan(args)
    root = args.out / "LibriSpeech"
    shutil.rmtree(root, ignore_errors=True)
    durations = ec.render_all(jobs, args.workers)
    for path, lines in transcripts.items():
        path.write_text("".join(line + "\n" for line in lines))
    (root / "SPEAKERS.TXT").write_text(speakers_txt(speaker_splits, jobs, durations))
    stats = collect_stats(jobs, durations, root)
    (args.out / "README.md").write_text(readme(stats, command_line(args, defaults)))
    for key, value in stats.items():
        print(f"{key}: {value}")
    print(f"written to {root}")


if __name__ == "__main__":
    main()
