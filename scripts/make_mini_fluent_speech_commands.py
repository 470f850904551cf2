"""Generate the bundled mini Fluent Speech Commands corpus from espeak-ng voices.

Writes, in the layout of Fluent Speech Commands (paths in the CSVs are relative to the root):

    wavs/speakers/<speakerId>/<uuid>.flac   16 kHz mono 16-bit FLAC, about 1-2.5 s
    data/{train,valid,test}_data.csv        ",path,speakerId,transcription,action,object,location"
    README.md                               what it is, counts, size, this command

The intents are a subset of the real corpus's 31 (action, object, location) triples with
phrasings in its style; each speaker (an espeak-ng voice in its own session, see
`espeak_corpus.py`) says a seeded sample of the phrasings. Splits hold whole speakers, as
in the real corpus. The CSVs name .flac files (FLAC keeps the repository light; the
parser accepts .wav or .flac). Everything is seeded: the same arguments give
byte-identical files. Needs `espeak-ng` and `sox`.

Regenerate (from the repository root, about 20 s on 2 cores):

    .venv/bin/python scripts/make_mini_fluent_speech_commands.py

which is the same as `--out speechrecipe/assets/mini/fluent_speech_commands --seed 1`.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import espeak_corpus as ec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "speechrecipe/assets/mini/fluent_speech_commands"
ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
HEADER = ["", "path", "speakerId", "transcription", "action", "object", "location"]
# (action, object, location): phrasings. Values as in the real corpus.
INTENTS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("activate", "lights", "none"): ("Turn on the lights", "Switch on the lights", "Lights on"),
    ("activate", "lights", "kitchen"): ("Turn on the kitchen lights", "Kitchen lights on",
                                        "Switch on the lights in the kitchen"),
    ("deactivate", "lights", "none"): ("Turn off the lights", "Switch off the lights", "Lights off"),
    ("deactivate", "lights", "bedroom"): ("Turn off the bedroom lights", "Bedroom lights off",
                                          "Switch off the lights in the bedroom"),
    ("increase", "heat", "none"): ("Turn up the heat", "Make it warmer", "Increase the temperature"),
    ("increase", "heat", "washroom"): ("Turn up the heat in the washroom", "Make the washroom warmer",
                                       "Washroom heat up"),
    ("decrease", "heat", "none"): ("Turn down the heat", "Make it cooler", "Decrease the temperature"),
    ("increase", "volume", "none"): ("Turn up the volume", "Louder please", "Increase the volume"),
    ("decrease", "volume", "none"): ("Turn down the volume", "Quieter please", "Decrease the volume"),
    ("activate", "music", "none"): ("Play the music", "Put on some music", "Start the music"),
    ("deactivate", "music", "none"): ("Stop the music", "Pause the music", "Music off"),
    ("bring", "newspaper", "none"): ("Bring me the newspaper", "Get me the newspaper", "Fetch the newspaper"),
    ("bring", "juice", "none"): ("Bring me some juice", "Get me the juice", "Fetch some juice"),
    ("change language", "German", "none"): ("Change the language to German", "Set my device to German",
                                            "Language German"),
    ("change language", "none", "none"): ("Change language", "Switch the language", "Use another language"),
}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; the defaults produce the bundled corpus."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus folder (replaced)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-speakers", type=int, default=10)
    p.add_argument("--valid-speakers", type=int, default=2)
    p.add_argument("--test-speakers", type=int, default=4)
    p.add_argument("--utts", type=int, default=15, help="utterances per speaker (one per intent at most)")
    p.add_argument("--workers", type=int, default=2)
    return p


def speaker_id(rng: np.random.Generator) -> str:
    """A 16-character id like the real corpus's ('2BqVo8kVB2Skwgyb')."""
    return "".join(rng.choice(ID_CHARS, size=16))


def utterance_id(rng: np.random.Generator) -> str:
    """A version-1 UUID lookalike ('0a3129c0-4474-11e9-a9a5-5dbec3b8816a')."""
    h = [f"{int(x):x}" for x in rng.integers(16, size=28)]
    return f"{''.join(h[:8])}-{''.join(h[8:12])}-11e9-{''.join(h[12:16])}-{''.join(h[16:])}"


def build_plan(args: argparse.Namespace) -> dict[str, list[tuple[ec.Job, list[str]]]]:
    """Per split, the jobs to render and their CSV rows (without the index column)."""
    counts = {"train": args.train_speakers, "valid": args.valid_speakers, "test": args.test_speakers}
    speakers = ec.make_speakers(sum(counts.values()), args.seed)
    splits = [s for s, n in counts.items() for _ in range(n)]
    intents = list(INTENTS)
    plan: dict[str, list[tuple[ec.Job, list[str]]]] = {s: [] for s in counts}
    for i, (speaker, split) in enumerate(zip(speakers, splits)):
        rng = ec.rng_for(args.seed, "speaker", i)
        spk = speaker_id(rng)
        # quieter noise and level than espeak_corpus's default keep the FLAC files small
        base = ec.sample_session(rng)
        session = replace(base, snr_db=base.snr_db + 15, level_db=base.level_db - 6)
        chosen = rng.choice(len(intents), size=min(args.utts, len(intents)), replace=False)
        for k in sorted(int(c) for c in chosen):
            intent = intents[k]
            text = str(rng.choice(INTENTS[intent]))
            rel = f"wavs/speakers/{spk}/{utterance_id(rng)}.flac"
            job = ec.Job(args.out / rel, speaker, text.lower(), session, int(rng.integers(2**32)))
            plan[split].append((job, [rel, spk, text, *intent]))
    return plan


def write_csvs(out: Path, plan: dict[str, list[tuple[ec.Job, list[str]]]]) -> None:
    """data/<split>_data.csv with the real corpus's header and its unnamed index column."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, items in plan.items():
        with open(out / "data" / f"{split}_data.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            for index, (_, row) in enumerate(sorted(items, key=lambda item: item[1][0])):
                writer.writerow([index, *row])


README = """# Mini Fluent Speech Commands (synthetic)

A tiny stand-in for Fluent Speech Commands, in its layout, made from espeak-ng voices
by `scripts/make_mini_fluent_speech_commands.py` for tests and demos. {n_intents} of the
real corpus's (action, object, location) intents, three phrasings each; every speaker is
an espeak-ng voice identity recorded in its own session (noise, reverberation, channel,
level). Scores on it say nothing about real-data accuracy.

## Layout

- `wavs/speakers/<speakerId>/<uuid>.flac`: 16 kHz mono 16-bit FLAC (the real corpus uses WAV;
  the parser accepts either).
- `data/{{train,valid,test}}_data.csv`: header `,path,speakerId,transcription,action,object,location`
  (the first column is an unnamed row index); paths relative to this folder. Whole speakers per split.

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
    plan = build_plan(args)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    jobs = [job for items in plan.values() for job, _ in items]
    durations = ec.render_all(jobs, args.workers)
    write_csvs(args.out, plan)
    fields = {name: Counter(row[3 + i] for items in plan.values() for _, row in items)
              for i, name in enumerate(("action", "object", "location"))}
    changed = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
               if k != "workers" and getattr(defaults, k) != v]
    stats = {
        "speakers (train / valid / test)": f"{args.train_speakers} / {args.valid_speakers} / {args.test_speakers}",
        "utterances (train / valid / test)": f"{len(jobs)} ({len(plan['train'])} / {len(plan['valid'])} / {len(plan['test'])})",
        "intents; values per field": f"{len(INTENTS)}; " + ", ".join(f"{k} {len(v)}" for k, v in fields.items()),
        "duration": f"{sum(durations):.0f} s, {min(durations):.1f}-{max(durations):.1f} s per utterance",
        "size": f"{ec.folder_bytes(args.out) / 1e6:.1f} MB",
    }
    command = " ".join([".venv/bin/python scripts/make_mini_fluent_speech_commands.py", *changed])
    (args.out / "README.md").write_text(README.format(
        n_intents=len(INTENTS), rows="\n".join(f"| {k} | {v} |" for k, v in stats.items()), command=command))
    for key, value in stats.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
