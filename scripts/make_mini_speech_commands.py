"""Generate the bundled mini Speech Commands corpus from espeak-ng voices.

Writes, in the layout of Speech Commands v0.02 (paths in the lists are relative to the root):

    <word>/<hash>_nohash_<n>.flac    16 kHz mono 16-bit FLAC, 1 s (some shorter, as in the real corpus)
    _background_noise_/<name>.flac   a few long noise recordings (the source of `_silence_`)
    validation_list.txt              "<word>/<hash>_nohash_<n>.flac", one per line
    testing_list.txt                 the same; files in neither list are training files
    README.md                        what it is, counts, size, this command

A speaker (the `<hash>`) is an espeak-ng voice identity recorded in one session of its own
(noise, room, channel, level; see `espeak_corpus.py`). Every speaker says every command
word once and a few of the auxiliary words, so `_unknown_` is the largest class, as in the
real corpus. Speakers are split between train, validation and test like the real lists
(whole speakers per split). FLAC rather than WAV keeps the repository light; the parser
accepts either. Everything is seeded: the same arguments give byte-identical files.
Needs `espeak-ng` and `sox`.

Regenerate (from the repository root, about 20 s on 2 cores):

    .venv/bin/python scripts/make_mini_speech_commands.py

which is the same as `--out speechrecipe/assets/mini/speech_commands --seed 1`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import espeak_corpus as ec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "speechrecipe/assets/mini/speech_commands"
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
AUXILIARY = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
             "zero", "one", "two", "three", "four", "five")
NOISES = ("white_noise", "pink_noise", "running_tap")
CLIP_SECONDS = 1.0


@dataclass(frozen=True)
class Clip:
    """One word clip to render into `path`."""

    path: Path
    speaker: ec.Speaker
    word: str
    session: ec.Session
    seed: int
    seconds: float


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; the defaults produce the bundled corpus."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus folder (replaced)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-speakers", type=int, default=14)
    p.add_argument("--valid-speakers", type=int, default=3)
    p.add_argument("--test-speakers", type=int, default=5)
    p.add_argument("--aux-words", type=int, default=3, help="auxiliary (_unknown_) words per speaker")
    p.add_argument("--repeats", type=int, default=1, help="takes of each word per speaker (<hash>_nohash_<n>)")
    p.add_argument("--short-fraction", type=float, default=0.1, help="share of clips shorter than 1 s")
    p.add_argument("--noise-seconds", type=float, default=10.0, help="length of each background noise file")
    p.add_argument("--workers", type=int, default=2)
    return p


def speaker_hash(rng: np.random.Generator) -> str:
    """An 8-hex-digit id like the real corpus's."""
    return f"{int(rng.integers(2**32)):08x}"


def build_plan(args: argparse.Namespace) -> tuple[list[Clip], dict[str, str]]:
    """Every clip, and each speaker hash's split (train / valid / test)."""
    counts = {"train": args.train_speakers, "valid": args.valid_speakers, "test": args.test_speakers}
    speakers = ec.make_speakers(sum(counts.values()), args.seed)
    splits = [s for s, n in counts.items() for _ in range(n)]
    clips, split_of = [], {}
    for i, (speaker, split) in enumerate(zip(speakers, splits)):
        rng = ec.rng_for(args.seed, "speaker", i)
        spk = speaker_hash(rng)
        split_of[spk] = split
        session = mild_session(rng)
        words = list(COMMANDS) + [str(w) for w in rng.choice(AUXILIARY, size=args.aux_words, replace=False)]
        for word in words:
            for n in range(args.repeats):
                seconds = CLIP_SECONDS if rng.random() >= args.short_fraction else float(rng.uniform(0.7, 0.95))
                path = args.out / word / f"{spk}_nohash_{n}.flac"
                clips.append(Clip(path, speaker, word, session, int(rng.integers(2**32)), seconds))
    return clips, split_of


def mild_session(rng: np.random.Generator) -> ec.Session:
    """A recording condition milder than espeak_corpus's (a phone held close, most rooms small),
    so that a few speakers are enough to learn the words; quiet noise also keeps FLAC small."""
    base = ec.sample_session(rng)
    return replace(base, snr_db=base.snr_db + 15, level_db=base.level_db - 6, reverberance=base.reverberance / 2,
                   highpass_hz=min(base.highpass_hz, 200.0), lowpass_hz=max(base.lowpass_hz, 5000.0),
                   eq=tuple((centre, width, gain / 3) for centre, width, gain in base.eq))


def render_clip(clip: Clip) -> float:
    """The word at a random place inside `clip.seconds` of the session's noise and channel."""
    rng = ec.rng_for(clip.seed, "clip")
    pitch = int(np.clip(clip.speaker.pitch + rng.integers(-5, 6), 0, 99))
    speed = int(round(clip.speaker.speed * rng.uniform(0.93, 1.07)))
    dry = ec.sox(ec.espeak(clip.speaker, clip.word, pitch, speed), ec.ESPEAK_RATE, "s16", ec.room_effects(clip.session))
    length = int(clip.seconds * ec.SAMPLE_RATE)
    dry = dry[:length]
    start = int(rng.integers(0, length - len(dry) + 1))
    padded = np.zeros(length, dtype=np.float64)
    padded[start : start + len(dry)] = dry
    snr_db = clip.session.snr_db + rng.uniform(-2, 2)
    noise = ec.colored_noise(rng, length, clip.session.noise) * ec.active_rms(dry) * 10 ** (-snr_db / 20)
    wet = ec.sox((padded + noise).astype("<f4"), ec.SAMPLE_RATE, "f32", ec.channel_effects(clip.session))
    out = wet * (10 ** ((clip.session.level_db + rng.uniform(-1.5, 1.5)) / 20) / ec.active_rms(wet))
    out = out / max(1.0, float(np.abs(out).max()) / 0.99)
    clip.path.parent.mkdir(parents=True, exist_ok=True)
    flac = {"compression_level": 1.0} if clip.path.suffix == ".flac" else {}  # WAV: bench/calibration/make_ks_corpus.py
    sf.write(clip.path, out.astype(np.float32), ec.SAMPLE_RATE, subtype="PCM_16", **flac)
    return len(out) / ec.SAMPLE_RATE


def write_noises(out: Path, seconds: float, seed: int) -> None:
    """_background_noise_/: white and pink noise, and a 'running tap' (band-passed, flickering)."""
    folder = out / "_background_noise_"
    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * ec.SAMPLE_RATE)
    for name in NOISES:
        rng = ec.rng_for(seed, "noise", name)
        if name == "running_tap":
            base = ec.sox((ec.colored_noise(rng, n, "white") * 0.1).astype("<f4"), ec.SAMPLE_RATE, "f32",
                          ["sinc", "1500-6000"])
            flicker = 1 + 0.5 * np.interp(np.arange(n), np.linspace(0, n, 200), rng.uniform(-1, 1, 200))
            audio = base * flicker
        else:
            audio = ec.colored_noise(rng, n, name.split("_")[0])
        audio = audio / np.sqrt(np.mean(audio ** 2)) * 10 ** (-40 / 20)
        sf.write(folder / f"{name}.flac", audio.astype(np.float32), ec.SAMPLE_RATE, subtype="PCM_16",
                 compression_level=1.0)
    (folder / "README.md").write_text("Long noise recordings; `_silence_` examples are 1 s crops of them.\n")


def write_lists(out: Path, clips: list[Clip], split_of: dict[str, str]) -> Counter:
    """validation_list.txt and testing_list.txt; returns clips per split."""
    lists: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for clip in clips:
        rel = clip.path.relative_to(out).as_posix()
        lists[split_of[rel.split("/")[1].split("_nohash_")[0]]].append(rel)
    (out / "validation_list.txt").write_text("".join(f"{r}\n" for r in sorted(lists["valid"])))
    (out / "testing_list.txt").write_text("".join(f"{r}\n" for r in sorted(lists["test"])))
    return Counter({k: len(v) for k, v in lists.items()})


README = """# Mini Speech Commands (synthetic)

A tiny stand-in for Speech Commands v0.02, in its layout, made from espeak-ng voices
by `scripts/make_mini_speech_commands.py` for tests and demos. Every speaker (the
`<hash>` in file names) is an espeak-ng voice identity recorded in its own session
(noise, reverberation, channel, level). Each says the ten command words and a few
auxiliary words (`_unknown_`). Scores on it say nothing about real-data accuracy.

## Layout

- `<word>/<hash>_nohash_<n>.flac`: 16 kHz mono 16-bit FLAC, 1 s (about 10 % shorter, as in
  the real corpus). The real corpus uses WAV; the parser accepts either.
- `validation_list.txt`, `testing_list.txt`: one path per line relative to this folder;
  files in neither list are training files. Whole speakers per split.
- `_background_noise_/`: long noise files; `_silence_` examples are 1 s crops of them.

## Statistics

| | |
|---|---|
{rows}

## Regenerate

From the repository root (needs `espeak-ng` and `sox`; deterministic):

    {command}
"""


def main() -> None:
    parser = build_parser()
    args, defaults = parser.parse_args(), parser.parse_args([])
    clips, split_of = build_plan(args)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        durations = list(pool.map(render_clip, clips, chunksize=8))
    write_noises(args.out, args.noise_seconds, args.seed)
    per_split = write_lists(args.out, clips, split_of)
    words = Counter(c.word in COMMANDS for c in clips)
    changed = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
               if k != "workers" and getattr(defaults, k) != v]
    stats = {
        "speakers (train / valid / test)": f"{args.train_speakers} / {args.valid_speakers} / {args.test_speakers}",
        "clips (train / valid / test)": f"{len(clips)} ({per_split['train']} / {per_split['valid']} / {per_split['test']})",
        "command / auxiliary word clips": f"{words[True]} / {words[False]}",
        "duration": f"{sum(durations):.0f} s, {min(durations):.2f}-{max(durations):.2f} s per clip",
        "background noise": f"{len(NOISES)} files x {args.noise_seconds:.0f} s",
        "size": f"{ec.folder_bytes(args.out) / 1e6:.1f} MB",
    }
    command = " ".join([".venv/bin/python scripts/make_mini_speech_commands.py", *changed])
    (args.out / "README.md").write_text(README.format(
        rows="\n".join(f"| {k} | {v} |" for k, v in stats.items()), command=command))
    for key, value in stats.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
