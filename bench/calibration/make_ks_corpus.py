"""Build the ks calibration corpus: Speech Commands v0.02's layout, voices and `_unknown_` words no bundled corpus uses.

    .venv/bin/python bench/calibration/make_ks_corpus.py     # ~/.cache/speechrecipe-calibration/speech_commands_ks_small

Writes, as Speech Commands v0.02 publishes it (paths in the lists relative to speech_commands/):

    speech_commands/<word>/<hash>_nohash_<n>.wav   16 kHz mono 16-bit WAV, 1 s (about 10 % shorter)
    speech_commands/validation_list.txt            "<word>/<hash>_nohash_<n>.wav"; whole speakers per split
    speech_commands/testing_list.txt               the same; files in neither list are training files
    speech_commands/_background_noise_/*.wav       long noise recordings (the source of `_silence_`)
    released_test/<label>/<file>.wav               a class-balanced test set in the layout of the released
                                                   speech_commands_test_set_v0.02 (as many clips of each of the
                                                   12 classes, `_silence_` and `_unknown_` folders), other speakers

Every speaker (the `<hash>`) says each command word once and each `_unknown_` word `--unknown-takes`
times, so `_unknown_` is 64 % of every split's word clips (58 % once stage 0 adds `_silence_` crops),
near v0.02's lists (63 % of testing_list.txt's clips).
The `_unknown_` words are the v0.02 words the bundled mini corpus does not say; speakers come from
espeak_corpus.make_unbundled_speakers (no accent+variant voice of a bundled corpus), and the test and
released-test speakers are heard nowhere else. The default "small" scale: 26 / 5 / 5 speakers x 28
clips = 1,008 clips (728 train, 140 valid, 140 test) + 120 released-test clips (10 per class).

A calibration set for judging defaults, kept outside the repository and built on demand: seeded and
byte-identical for the same arguments (espeak-ng and sox are deterministic). Skips the work when the
folder already holds a corpus built with the same arguments (its build.json). Needs espeak-ng and sox.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import espeak_corpus as ec  # noqa: E402
from make_mini_speech_commands import COMMANDS, Clip, mild_session, render_clip, speaker_hash, write_lists  # noqa: E402

CALIBRATION_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "speechrecipe-calibration"
# The Speech Commands v0.02 words that neither a command nor one of make_mini_speech_commands.AUXILIARY.
UNKNOWN_WORDS = ("backward", "eight", "follow", "forward", "learn", "nine", "seven", "six", "visual")
NOISES = {"white_noise": "white", "pink_noise": "pink", "brown_noise": "brown"}
SILENCE, UNKNOWN = "_silence_", "_unknown_"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=CALIBRATION_ROOT / "speech_commands_ks_small", help="output folder")
    p.add_argument("--seed", type=int, default=24)
    p.add_argument("--train-speakers", type=int, default=26)
    p.add_argument("--valid-speakers", type=int, default=5)
    p.add_argument("--test-speakers", type=int, default=5)
    p.add_argument("--released-speakers", type=int, default=10, help="speakers of the class-balanced released test set")
    p.add_argument("--unknown-words", type=int, default=len(UNKNOWN_WORDS), help="of UNKNOWN_WORDS, the first N")
    p.add_argument("--unknown-takes", type=int, default=2, help="takes of each _unknown_ word per speaker")
    p.add_argument("--short-fraction", type=float, default=0.1, help="share of clips shorter than 1 s")
    p.add_argument("--noise-seconds", type=float, default=60.0, help="length of each background noise file")
    p.add_argument("--workers", type=int, default=2)
    return p


def clip_of(path: Path, speaker: ec.Speaker, word: str, session: ec.Session, rng: np.random.Generator,
            short_fraction: float) -> Clip:
    seconds = 1.0 if rng.random() >= short_fraction else float(rng.uniform(0.7, 0.95))
    return Clip(path, speaker, word, session, int(rng.integers(2**32)), seconds)


def build_plan(args: argparse.Namespace) -> tuple[list[Clip], dict[str, str], list[Clip]]:
    """The corpus's clips, each speaker hash's split, and the released test set's word clips."""
    counts = {"train": args.train_speakers, "valid": args.valid_speakers, "test": args.test_speakers}
    speakers = ec.make_unbundled_speakers(sum(counts.values()) + args.released_speakers, args.seed)
    splits = [s for s, n in counts.items() for _ in range(n)] + ["released"] * args.released_speakers
    unknown = UNKNOWN_WORDS[:args.unknown_words]
    corpus = args.out / "speech_commands"
    clips, released, split_of = [], [], {}
    for i, (speaker, split) in enumerate(zip(speakers, splits)):
        rng = ec.rng_for(args.seed, "speaker", i)
        spk = speaker_hash(rng)
        session = mild_session(rng)
        if split == "released":  # each command word once and one `_unknown_` word: 11 classes alike
            for word in (*COMMANDS, str(rng.choice(unknown))):
                label = word if word in COMMANDS else UNKNOWN
                released.append(clip_of(args.out / "released_test" / label / f"{spk}_nohash_{word}.wav",
                                        speaker, word, session, rng, args.short_fraction))
            continue
        split_of[spk] = split
        takes = [(word, 0) for word in COMMANDS] + [(w, n) for w in unknown for n in range(args.unknown_takes)]
        clips += [clip_of(corpus / word / f"{spk}_nohash_{n}.wav", speaker, word, session, rng, args.short_fraction)
                  for word, n in takes]
    return clips, split_of, released


def write_noises(folder: Path, seconds: float, seed: int) -> None:
    """Coloured noise recordings at -40 to -25 dBFS RMS, slowly fluctuating in level."""
    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * ec.SAMPLE_RATE)
    for name, colour in NOISES.items():
        rng = ec.rng_for(seed, "noise", name)
        level = np.interp(np.arange(n), np.linspace(0, n, 50), rng.uniform(-40, -25, 50))
        audio = ec.colored_noise(rng, n, colour) * 10 ** (level / 20)
        sf.write(folder / f"{name}.wav", audio.astype(np.float32), ec.SAMPLE_RATE, subtype="PCM_16")


def write_released_silence(folder: Path, count: int, seed: int) -> None:
    """`count` 1 s `_silence_` clips of fresh noise (none of it in _background_noise_/)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        rng = ec.rng_for(seed, "released silence", k)
        audio = ec.colored_noise(rng, ec.SAMPLE_RATE, str(rng.choice(list(NOISES.values()))))
        audio *= 10 ** (rng.uniform(-40, -25) / 20)
        sf.write(folder / f"silence_{k:04d}.wav", audio.astype(np.float32), ec.SAMPLE_RATE, subtype="PCM_16")


def main() -> None:
    args = build_parser().parse_args()
    recipe = {k: v for k, v in vars(args).items() if k not in ("out", "workers")}
    stamp = args.out / "build.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        print(f"{args.out}: already built with these arguments")
        return
    shutil.rmtree(args.out, ignore_errors=True)
    clips, split_of, released = build_plan(args)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(render_clip, clips + released, chunksize=8))
    corpus = args.out / "speech_commands"
    write_noises(corpus / "_background_noise_", args.noise_seconds, args.seed)
    write_released_silence(args.out / "released_test" / SILENCE, args.released_speakers, args.seed)
    per_split = write_lists(corpus, clips, split_of)
    stamp.write_text(json.dumps(recipe, indent=1) + "\n")  # last: a build cut short has none
    unknown = Counter(split_of[c.path.stem.split("_nohash_")[0]] for c in clips if c.word not in COMMANDS)
    print(f"{args.out}: {len(clips)} clips (train {per_split['train']} / valid {per_split['valid']} / test "
          f"{per_split['test']}; _unknown_ {unknown['train']} / {unknown['valid']} / {unknown['test']}), "
          f"released test {len(released) + args.released_speakers} clips (12 classes x {args.released_speakers})")


if __name__ == "__main__":
    main()
