"""Generate the bundled mini VoxCeleb1 corpus from espeak-ng voices.

Writes, in VoxCeleb1's published layout (paths in the lists are relative to `wav/`):

    wav/<speaker>/<video>/<nnnnn>.flac   16 kHz mono 16-bit FLAC, ~2-5 s each
    veri_test2.txt                       "<1|0> <enroll> <test>", test speakers only
    iden_split.txt                       "<1|2|3> <utterance>" (train/dev/test), all speakers
    README.md                            what it is, counts, size, this command

Speakers are espeak-ng voice identities (see `espeak_corpus.py`); a "video" is a
session with its own noise, reverberation, channel and level. Training speakers are
id10001.., test speakers id10270.. as in the real corpus. Everything is seeded:
the same arguments give byte-identical files. Needs `espeak-ng` and `sox`.

Regenerate (from the repository root, about 15 s on 2 cores):

    .venv/bin/python scripts/make_mini_voxceleb1.py

which is the same as `--out speechrecipe/assets/mini/voxceleb1 --seed 1`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import espeak_corpus as ec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "speechrecipe/assets/mini/voxceleb1"
VIDEO_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
TRAIN_FIRST_ID = 10001
TEST_FIRST_ID = 10270
IDEN_TRAIN, IDEN_DEV, IDEN_TEST = 1, 2, 3


@dataclass(frozen=True)
class Utterance:
    """One corpus file: its path relative to `wav/` and what it is made from."""

    speaker_id: str
    video_id: str
    rel_path: str
    job: ec.Job


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; the defaults produce the bundled corpus."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus folder (its wav/ is replaced)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-speakers", type=int, default=24)
    p.add_argument("--test-speakers", type=int, default=8)
    p.add_argument("--train-videos", type=int, default=3, help="videos per training speaker")
    p.add_argument("--test-videos", type=int, default=4, help="videos per test speaker")
    p.add_argument("--train-utts", type=int, default=2, help="utterances per training video")
    p.add_argument("--test-utts", type=int, default=3, help="utterances per test video")
    p.add_argument("--trials", type=int, default=600, help="verification trials, half target")
    p.add_argument("--workers", type=int, default=2)
    return p


def video_id(rng: np.random.Generator) -> str:
    """An 11-character YouTube-like id."""
    return "".join(rng.choice(VIDEO_ID_CHARS, size=11))


def speaker_utterances(out: Path, speaker_id: str, speaker: ec.Speaker, n_videos: int,
                       n_utts: int, seed: int) -> list[Utterance]:
    """All utterances of one speaker: `n_videos` sessions of `n_utts` sentences."""
    utts = []
    for v in range(n_videos):
        rng = ec.rng_for(seed, speaker_id, v)
        vid = video_id(rng)
        session = ec.sample_session(rng)
        for k in range(1, n_utts + 1):
            rel = f"{speaker_id}/{vid}/{k:05d}.flac"
            job = ec.Job(out / "wav" / rel, speaker, ec.random_sentence(rng, 6, 13), session,
                         int(rng.integers(2**32)))
            utts.append(Utterance(speaker_id, vid, rel, job))
    return utts


def build_plan(args: argparse.Namespace) -> tuple[list[Utterance], list[str]]:
    """Every utterance of the corpus, and the ids of the test speakers."""
    n_train, n_test = args.train_speakers, args.test_speakers
    speakers = ec.make_speakers(n_train + n_test, args.seed)
    ids = [f"id{TRAIN_FIRST_ID + i}" for i in range(n_train)]
    ids += [f"id{TEST_FIRST_ID + i}" for i in range(n_test)]
    utts = []
    for i, (sid, spk) in enumerate(zip(ids, speakers)):
        is_test = i >= n_train
        utts += speaker_utterances(args.out, sid, spk, args.test_videos if is_test else args.train_videos,
                                   args.test_utts if is_test else args.train_utts, args.seed)
    return utts, ids[n_train:]


def verification_trials(utts: list[Utterance], test_ids: list[str], n_trials: int,
                        seed: int) -> list[tuple[int, str, str]]:
    """Balanced trials among test speakers; targets pair different videos when possible."""
    rng = ec.rng_for(seed, "trials")
    test = [u for u in utts if u.speaker_id in test_ids]
    pairs = list(combinations(test, 2))
    same = [(a, b) for a, b in pairs if a.speaker_id == b.speaker_id]
    cross_video = [p for p in same if p[0].video_id != p[1].video_id]
    same_video = [p for p in same if p[0].video_id == p[1].video_id]
    different = [(a, b) for a, b in pairs if a.speaker_id != b.speaker_id]
    n_target = n_trials // 2
    if n_target > len(same) or n_trials - n_target > len(different):
        raise SystemExit(f"not enough test utterances for {n_trials} trials")
    targets = pick(rng, cross_video, n_target) + pick(rng, same_video, n_target - len(cross_video))
    trials = [(1, a, b) for a, b in targets]
    trials += [(0, a, b) for a, b in pick(rng, different, n_trials - n_target)]
    ordered = [(label, *((a, b) if rng.random() < 0.5 else (b, a))) for label, a, b in trials]
    return sorted(((label, a.rel_path, b.rel_path) for label, a, b in ordered), key=lambda t: t[1:])


def pick(rng: np.random.Generator, items: list, n: int) -> list:
    """Up to `n` items drawn without replacement, in their original order."""
    if n <= 0:
        return []
    keep = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [items[i] for i in sorted(keep)]


def identification_split(utts: list[Utterance], seed: int) -> list[tuple[int, str]]:
    """Per speaker, one whole video is test and another one dev; the rest is train."""
    rng = ec.rng_for(seed, "iden")
    marks = {}
    for sid in dict.fromkeys(u.speaker_id for u in utts):
        videos = list(dict.fromkeys(u.video_id for u in utts if u.speaker_id == sid))
        test_video, dev_video = rng.choice(videos, size=2, replace=False)
        marks |= {(sid, test_video): IDEN_TEST, (sid, dev_video): IDEN_DEV}
    return [(marks.get((u.speaker_id, u.video_id), IDEN_TRAIN), u.rel_path) for u in utts]


def readme(stats: dict[str, str], command: str) -> str:
    """The corpus README, with the statistics filled in."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in stats.items())
    return f"""# Mini VoxCeleb1 (synthetic, espeak-ng)

A tiny speaker-verification / identification corpus in the exact layout of
VoxCeleb1, for tests, demos and smoke runs of the `asv` and `sid` recipes. No real
person is in it: every "speaker" is an espeak-ng voice identity (English accent
voice + voice variant + base pitch, speed and word gap), and every "video" is a
recording session with its own additive noise (white/pink/brown, 5-30 dB SNR),
sox reverberation, channel (band limits and EQ) and level. Within a session each
utterance varies speed, pitch, SNR and level a little. Sentences are random
grammatical word strings. Scores on it say nothing about real-data accuracy.

## Layout

- `wav/<speaker>/<video>/<nnnnn>.flac`: 16 kHz mono 16-bit FLAC, about 2-5 s.
  Training speakers are `id10001`.., test speakers `id10270`.. (as in VoxCeleb1).
- `veri_test2.txt`: `<label> <enroll> <test>` per line, label 1 = same speaker,
  0 = different; test speakers only, half targets, targets across videos.
- `iden_split.txt`: `<split> <utterance>` for every utterance of every speaker,
  1 = train, 2 = dev, 3 = test; per speaker one whole video is test and another
  whole video is dev (at least two dev utterances per speaker).

## Statistics

| | |
|---|---|
{rows}

## Regenerate

From the repository root (needs `espeak-ng` and `sox`; deterministic):

    {command}

See the docstrings of `scripts/make_mini_voxceleb1.py` and `scripts/espeak_corpus.py`.
"""


def write_lists(out: Path, trials: list[tuple[int, str, str]], split: list[tuple[int, str]]) -> None:
    """Write veri_test2.txt and iden_split.txt."""
    (out / "veri_test2.txt").write_text("".join(f"{lab} {a} {b}\n" for lab, a, b in trials))
    (out / "iden_split.txt").write_text("".join(f"{lab} {p}\n" for lab, p in split))


def collect_stats(args: argparse.Namespace, utts: list[Utterance], test_ids: list[str],
                  durations: list[float], trials: list[tuple[int, str, str]],
                  split: list[tuple[int, str]]) -> dict[str, str]:
    """Counts for the README and the summary."""
    n_test_utts = sum(u.speaker_id in test_ids for u in utts)
    splits = Counter(label for label, _ in split)
    labels = Counter(label for label, _, _ in trials)
    return {
        "speakers (train / test)": f"{args.train_speakers} / {args.test_speakers}",
        "videos per speaker (train / test)": f"{args.train_videos} / {args.test_videos}",
        "utterances (train / test speakers)": f"{len(utts)} ({len(utts) - n_test_utts} / {n_test_utts})",
        "duration": f"{sum(durations):.0f} s ({sum(durations) / 3600:.3f} h), "
                    f"{min(durations):.1f}-{max(durations):.1f} s per utterance",
        "verification trials (target / non-target)": f"{len(trials)} ({labels[1]} / {labels[0]})",
        "identification split (train / dev / test)":
            f"{splits[IDEN_TRAIN]} / {splits[IDEN_DEV]} / {splits[IDEN_TEST]}",
        "size (audio and lists)": f"{ec.folder_bytes(args.out) / 1e6:.1f} MB",
    }


def command_line(args: argparse.Namespace, defaults: argparse.Namespace) -> str:
    """The regeneration command: the options that differ from the defaults."""
    changed = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
               if k != "workers" and getattr(defaults, k) != v]
    return " ".join([".venv/bin/python scripts/make_mini_voxceleb1.py", *changed])


def main() -> None:
    """Plan, render, write the lists and README, print a summary."""
    parser = build_parser()
    args, defaults = parser.parse_args(), parser.parse_args([])
    if min(args.train_videos, args.test_videos) < 2:
        parser.error("every speaker needs at least 2 videos (iden_split.txt's dev and test)")
    utts, test_ids = build_plan(args)
    shutil.rmtree(args.out / "wav", ignore_errors=True)
    durations = ec.render_all([u.job for u in utts], args.workers)
    trials = verification_trials(utts, test_ids, args.trials, args.seed)
    split = identification_split(utts, args.seed)
    write_lists(args.out, trials, split)
    stats = collect_stats(args, utts, test_ids, durations, trials, split)
    (args.out / "README.md").write_text(readme(stats, command_line(args, defaults)))
    for key, value in stats.items():
        print(f"{key}: {value}")
    print(f"written to {args.out} ({ec.folder_bytes(args.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
