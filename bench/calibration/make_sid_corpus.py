"""Build the sid calibration corpus: VoxCeleb1's layout, voices and words no bundled corpus uses.

    .venv/bin/python bench/calibration/make_sid_corpus.py           # ~/.cache/speechrecipe-calibration/voxceleb1_sid_hard
    .venv/bin/python bench/calibration/make_sid_corpus.py --easy    # the first, too easy one: .../voxceleb1_sid_small

Writes, as VoxCeleb1 publishes it (paths in iden_split.txt relative to wav/):

    wav/<speaker>/<video>/<nnnnn>.wav   16 kHz mono 16-bit WAV, about 3-8 s each
    iden_split.txt                      "<1|2|3> <speaker>/<video>/<nnnnn>.wav": 1 train, 2 dev, 3 test

Closed-set identification: every speaker is in all three splits; per speaker one whole video
(recording session) is test and another one dev, so test utterances are other recordings of the
training speakers. The default "small" scale: 50 speakers x 7 videos x 2 utterances = 700 (500
train, 100 dev, 100 test), as issue 25 asks for.

A video is a recording session: noise (colour, SNR), room, channel (band limits, EQ) and level
(espeak_corpus.sample_session), and, by default, the speaker on another day: the session's audio
runs at a speed factor of 1 ± --session-speed (sox `speed`: tempo, pitch and formants move together,
as in speed-perturbation augmentation), the voice's espeak-ng pitch moves by up to ±--session-pitch
and its speaking rate by a factor of 1 ± --session-rate, and the SNR is drawn from --snr-db (0-20 dB
instead of 5-30). Without these (`--easy`, issue 25's first corpus) a plain x-vector reaches 99 % and
the corpus cannot rank two models; with them the plain reference lands well below the ceiling
(bench/RESULTS.md).

Speakers come from espeak_corpus.make_unbundled_speakers (no accent+variant voice of a bundled mini
corpus); sentences are strings of WORDS, a vocabulary none of the bundled corpora speaks. It is a
calibration set for judging defaults, kept outside the repository and built on demand: seeded,
byte-identical for the same arguments (espeak-ng and sox are deterministic). Skips the work when
the folder already holds a corpus built with the same arguments (its build.json). Needs espeak-ng, sox.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import espeak_corpus as ec  # noqa: E402
from make_mini_voxceleb1 import Utterance, identification_split, video_id  # noqa: E402

CALIBRATION_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "speechrecipe-calibration"
# Words none of the bundled corpora says (their vocabularies are in espeak_corpus.py and the make_mini_* scripts).
WORDS = (
    "amber", "anchor", "autumn", "avenue", "balcony", "banner", "barrel", "beacon", "biscuit", "blossom",
    "bonnet", "bramble", "breeze", "bucket", "butter", "cabin", "canvas", "carpet", "cellar", "cherry",
    "chimney", "cider", "cinnamon", "circus", "cobble", "compass", "copper", "cottage", "crayon", "crystal",
    "curtain", "cushion", "dagger", "daisy", "denim", "diamond", "dolphin", "dragon", "drizzle", "eagle",
    "elbow", "emerald", "falcon", "feather", "fiddle", "flannel", "fossil", "fountain", "gallon", "garnet",
    "ginger", "glacier", "goblet", "granite", "gravel", "hammock", "harvest", "hazel", "helmet", "honey",
    "icicle", "ivory", "jacket", "jasmine", "jigsaw", "juniper", "kettle", "kitten", "lantern", "lavender",
    "lemon", "lizard", "lobster", "locket", "magnet", "mango", "maple", "marble", "meadowlark", "melon",
    "mirror", "mitten", "monsoon", "mosaic", "muffin", "nectar", "nutmeg", "oatmeal", "olive", "onion",
    "orchard", "otter", "paddle", "pebble", "pepper", "pillow", "pirate", "planet", "pretzel", "pumpkin",
    "puzzle", "quarry", "quilt", "raccoon", "raisin", "ribbon", "rocket", "saddle", "salmon", "satin",
    "scarlet", "shadow", "shovel", "sparrow", "spinach", "squirrel", "sunset", "tablet", "thimble", "thunder",
    "timber", "tulip", "tunnel", "turkey", "umbrella", "velvet", "violet", "walnut", "walrus", "whistle",
    "willow", "yogurt", "zebra", "zipper", "zodiac",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="corpus folder (default: voxceleb1_sid_hard, with --easy voxceleb1_sid_small, "
                   f"in {CALIBRATION_ROOT})")
    p.add_argument("--easy", action="store_true",
                   help="issue 25's first corpus: no session speed, pitch or rate change, SNR 5-30 dB")
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--speakers", type=int, default=50)
    p.add_argument("--videos", type=int, default=7, help="videos per speaker (one test, one dev, the rest train)")
    p.add_argument("--utts", type=int, default=2, help="utterances per video")
    p.add_argument("--min-words", type=int, default=8)
    p.add_argument("--max-words", type=int, default=14)
    p.add_argument("--session-speed", type=float, default=0.08, help="each video's sox speed factor: 1 ± up to this")
    p.add_argument("--session-pitch", type=int, default=12, help="each video's espeak-ng pitch: the voice's ± up to this")
    p.add_argument("--session-rate", type=float, default=0.12, help="each video's speaking rate: the voice's x (1 ± up to this)")
    p.add_argument("--snr-db", type=float, nargs=2, default=[0.0, 20.0], help="each video's SNR range (dB)")
    p.add_argument("--workers", type=int, default=2)
    return p


SESSION_KEYS = ("session_speed", "session_pitch", "session_rate", "snr_db")


def word_string(rng: np.random.Generator, low: int, high: int) -> str:
    """`low`..`high` words of WORDS, drawn with replacement."""
    return " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(low, high + 1))))


def recipe(args: argparse.Namespace) -> dict:
    """The arguments that decide the corpus's bytes (--easy: those of the first corpus, which had no session keys;
    make_intent_corpus.py's arguments have neither)."""
    easy = getattr(args, "easy", True)
    return {k: v for k, v in vars(args).items() if k not in ("out", "workers", "easy") + SESSION_KEYS * easy}


def already_built(args: argparse.Namespace) -> bool:
    """True when args.out holds a complete build with these arguments; else clear the folder."""
    stamp = args.out / "build.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe(args):
        print(f"{args.out}: already built with these arguments")
        return True
    shutil.rmtree(args.out, ignore_errors=True)
    return False


def mark_built(args: argparse.Namespace) -> None:
    """Written last, so a build cut short has none and is redone."""
    (args.out / "build.json").write_text(json.dumps(recipe(args), indent=1) + "\n")


def another_day(rng: np.random.Generator, speaker: ec.Speaker, session: ec.Session,
                args: argparse.Namespace) -> tuple[ec.Speaker, ec.Session]:
    """The speaker and session of one video, moved as the --session-* arguments say."""
    pitch = int(np.clip(speaker.pitch + rng.integers(-args.session_pitch, args.session_pitch + 1), 0, 99))
    rate = int(round(speaker.speed * (1 + rng.uniform(-args.session_rate, args.session_rate))))
    speed = float(1 + rng.uniform(-args.session_speed, args.session_speed))
    return (replace(speaker, pitch=pitch, speed=rate),
            replace(session, snr_db=float(rng.uniform(*args.snr_db)), speed=speed))


def build_plan(args: argparse.Namespace) -> list[Utterance]:
    """Every utterance: per speaker `videos` sessions of `utts` word strings."""
    utts = []
    for i, speaker in enumerate(ec.make_unbundled_speakers(args.speakers, args.seed)):
        sid = f"id{10001 + i}"
        for v in range(args.videos):
            rng = ec.rng_for(args.seed, sid, v)
            vid = video_id(rng)
            session = ec.sample_session(rng)
            voice = speaker
            if not args.easy:
                voice, session = another_day(rng, speaker, session, args)
            for k in range(1, args.utts + 1):
                rel = f"{sid}/{vid}/{k:05d}.wav"
                text = word_string(rng, args.min_words, args.max_words)
                utts.append(Utterance(sid, vid, rel, ec.Job(args.out / "wav" / rel, voice, text, session,
                                                            int(rng.integers(2**32)))))
    return utts


def main() -> None:
    args = build_parser().parse_args()
    args.out = args.out or CALIBRATION_ROOT / ("voxceleb1_sid_small" if args.easy else "voxceleb1_sid_hard")
    if args.videos < 3:
        raise SystemExit("--videos: at least 3 (train, dev and test videos per speaker)")
    if already_built(args):
        return
    utts = build_plan(args)
    durations = ec.render_all([u.job for u in utts], args.workers)
    split = identification_split(utts, args.seed)
    (args.out / "iden_split.txt").write_text("".join(f"{mark} {rel}\n" for mark, rel in split))
    mark_built(args)
    counts = {mark: sum(m == mark for m, _ in split) for mark in (1, 2, 3)}
    print(f"{args.out}: {args.speakers} speakers, {len(utts)} utterances (train {counts[1]} / dev {counts[2]} / "
          f"test {counts[3]}), {sum(durations) / 60:.1f} min, {min(durations):.1f}-{max(durations):.1f} s each")


if __name__ == "__main__":
    main()
