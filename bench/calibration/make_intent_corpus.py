"""Build the intent calibration corpus: Fluent Speech Commands' layout, its 31 intents, voices and
phrasings no bundled corpus uses.

    .venv/bin/python bench/calibration/make_intent_corpus.py   # ~/.cache/speechrecipe-calibration/fluent_speech_commands_small

Writes, as Fluent Speech Commands publishes it (paths relative to the root):

    wavs/speakers/<speakerId>/<uuid>.wav     16 kHz mono 16-bit WAV
    data/{train,valid,test}_data.csv         ",path,speakerId,transcription,action,object,location"

Intents are the real corpus's 31 (action, object, location) triples; a phrasing is composed from
an action phrase, the object and the location in one of several word orders (PHRASES), none of
them the bundled mini corpus's sentences. Whole speakers per split, so test speakers are unseen
in training. The default "small" scale: 30 train, 6 valid and 6 test speakers x 10 utterances
(300 / 60 / 60), each speaker saying 10 of the 31 intents. Speakers come from
espeak_corpus.make_unbundled_speakers (no accent+variant voice of a bundled corpus). Kept
outside the repository, built on demand: seeded, byte-identical for the same arguments; skips the
work when the folder holds a corpus built with the same arguments (build.json). Needs espeak-ng, sox.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import espeak_corpus as ec  # noqa: E402
from make_mini_fluent_speech_commands import HEADER, speaker_id, utterance_id  # noqa: E402
from make_sid_corpus import CALIBRATION_ROOT, already_built, mark_built  # noqa: E402

LOCATIONS = ("none", "kitchen", "bedroom", "washroom")
# The real corpus's 31 intents.
INTENTS = (
    [("activate", "lights", loc) for loc in LOCATIONS] + [("deactivate", "lights", loc) for loc in LOCATIONS]
    + [("increase", "heat", loc) for loc in LOCATIONS] + [("decrease", "heat", loc) for loc in LOCATIONS]
    + [("activate", "lamp", "none"), ("deactivate", "lamp", "none"), ("activate", "music", "none"),
       ("deactivate", "music", "none"), ("increase", "volume", "none"), ("decrease", "volume", "none")]
    + [("bring", obj, "none") for obj in ("juice", "newspaper", "shoes", "socks")]
    + [("change language", lang, "none") for lang in ("Chinese", "English", "German", "Korean", "none")]
)
# Action phrases per (action, object); {o} is the object's words, {l} the location's.
PHRASES = {
    ("activate", "lights"): ("{o} on {l}", "could you switch the {o} on {l}", "I need the {o} on {l}"),
    ("deactivate", "lights"): ("{o} out {l}", "kill the {o} {l}", "I want the {o} shut {l}"),
    ("activate", "lamp"): ("light the {o}", "{o} on now", "put the {o} on"),
    ("deactivate", "lamp"): ("{o} out now", "shut the {o}", "put the {o} out"),
    ("increase", "heat"): ("heat it up {l}", "raise the heating {l}", "it is freezing {l}"),
    ("decrease", "heat"): ("cool it down {l}", "lower the heating {l}", "it is boiling {l}"),
    ("activate", "music"): ("play some {o}", "{o} please", "I want to hear {o}"),
    ("deactivate", "music"): ("no more {o}", "silence the {o}", "cut the {o}"),
    ("increase", "volume"): ("make it louder", "raise the {o}", "I cannot hear that"),
    ("decrease", "volume"): ("make it softer", "lower the {o}", "that is too noisy"),
    ("bring", "*"): ("fetch my {o}", "I need my {o}", "go and get the {o}"),
    ("change language", "*"): ("speak {o}", "switch to {o}", "I prefer {o}"),
}
OBJECT_WORDS = {"lights": "lights", "lamp": "lamp", "music": "music", "volume": "sound", "heat": "heat",
                "juice": "juice", "newspaper": "paper", "shoes": "shoes", "socks": "socks", "Chinese": "Chinese",
                "English": "English", "German": "German", "Korean": "Korean", "none": "another language"}
LOCATION_WORDS = {"none": "", "kitchen": "in the kitchen", "bedroom": "in the bedroom", "washroom": "in the bathroom"}
SPLITS = ("train", "valid", "test")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=CALIBRATION_ROOT / "fluent_speech_commands_small", help="corpus folder")
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--train-speakers", type=int, default=30)
    p.add_argument("--valid-speakers", type=int, default=6)
    p.add_argument("--test-speakers", type=int, default=6)
    p.add_argument("--utts", type=int, default=10, help="utterances per speaker, each a different intent")
    p.add_argument("--workers", type=int, default=2)
    return p


def phrasing(rng: np.random.Generator, intent: tuple[str, str, str]) -> str:
    """One of the intent's phrasings, lower case."""
    action, obj, location = intent
    templates = PHRASES.get((action, obj)) or PHRASES[(action, "*")]
    text = str(rng.choice(templates)).format(o=OBJECT_WORDS[obj], l=LOCATION_WORDS[location])
    return " ".join(text.split()).lower()


def build_plan(args: argparse.Namespace) -> dict[str, list[tuple[ec.Job, list[str]]]]:
    """Per split, the jobs and their CSV rows (without the index column)."""
    counts = {"train": args.train_speakers, "valid": args.valid_speakers, "test": args.test_speakers}
    splits = [s for s in SPLITS for _ in range(counts[s])]
    speakers = ec.make_unbundled_speakers(len(splits), args.seed)
    plan: dict[str, list[tuple[ec.Job, list[str]]]] = {s: [] for s in SPLITS}
    for i, (speaker, split) in enumerate(zip(speakers, splits)):
        rng = ec.rng_for(args.seed, "intent speaker", i)
        spk = speaker_id(rng)
        session = ec.sample_session(rng)
        for k in sorted(int(c) for c in rng.choice(len(INTENTS), size=min(args.utts, len(INTENTS)), replace=False)):
            text = phrasing(rng, INTENTS[k])
            rel = f"wavs/speakers/{spk}/{utterance_id(rng)}.wav"
            job = ec.Job(args.out / rel, speaker, text, session, int(rng.integers(2**32)))
            plan[split].append((job, [rel, spk, text, *INTENTS[k]]))
    return plan


def main() -> None:
    args = build_parser().parse_args()
    if already_built(args):
        return
    plan = build_plan(args)
    durations = ec.render_all([job for items in plan.values() for job, _ in items], args.workers)
    (args.out / "data").mkdir(parents=True)
    for split, items in plan.items():
        with open(args.out / "data" / f"{split}_data.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            writer.writerows([index, *row] for index, (_, row) in enumerate(items))
    mark_built(args)
    sizes = " / ".join(str(len(plan[s])) for s in SPLITS)
    print(f"{args.out}: {len(INTENTS)} intents, utterances train / valid / test {sizes}, "
          f"{sum(durations) / 60:.1f} min, {min(durations):.1f}-{max(durations):.1f} s each")


if __name__ == "__main__":
    main()
