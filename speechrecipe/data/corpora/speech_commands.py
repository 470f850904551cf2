"""Speech Commands (v0.01/v0.02) in its published layout: keyword-spotting manifests.

    ROOT/<word>/<hash>_nohash_<n>.wav   1 s clips (some shorter), 16 kHz mono
    ROOT/validation_list.txt            "<word>/<hash>_nohash_<n>.wav" per line, relative to ROOT
    ROOT/testing_list.txt               the same; files in neither list are training files
    ROOT/_background_noise_/*.wav       long noise recordings

The 12-class protocol: the ten command words keep their names, every other word is `_unknown_`,
and `_silence_` examples are 1 s crops of the background noise. Class shares: by default every
listed clip stays (the published prior, `_unknown_` about 63 % of v0.02's testing_list.txt);
`unknown_fraction` keeps, in train and valid only, that many `_unknown_` clips per command-word
clip, drawn with the seed (Warden's `unknown_percentage`); the test split always keeps every clip
of testing_list.txt. Every split gets `silence_fraction` `_silence_` crops per word clip. A crop is a
manifest row naming the noise file with a `start` frame and `num_frames`; crops are drawn with
the seed, and each split draws from its own time region of every noise file (the first 80 %
for train, the next 10 % for valid, the last 10 % for test), so no test crop overlaps a
training one. A list naming .wav also finds the .flac (the bundled mini corpus uses FLAC).

A released test set (speech_commands_test_set_v0.0x: <label>/<file>.wav with `_silence_` and
`_unknown_` folders, the test set SUPERB reports) can be added as the test set "released".
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

from speechrecipe.data.corpora.common import corpus_root, probe_rows, require_found
from speechrecipe.data.manifest import split_manifest, write_jsonl
from speechrecipe.data.scan import find_audio
from speechrecipe.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SILENCE, UNKNOWN = "_silence_", "_unknown_"
NOISE_DIR = "_background_noise_"
LISTS = {"valid": "validation_list.txt", "test": "testing_list.txt"}
# Each split's share of every noise file, in time order.
SILENCE_REGIONS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}


def prepare_speech_commands(
    root: Path,
    out_dir: Path,
    words: list[str],
    unknown: bool = True,
    unknown_fraction: float | None = None,
    silence_fraction: float = 0.1,
    silence_secs: float = 1.0,
    released_test_dir: str | None = None,
    seed: int = 0,
    strict: bool = False,
    check_audio: str = "full",
    num_workers: int = 2,
    sample_rate: int = 16000,
) -> dict:
    """Write train.jsonl, valid.jsonl, test_test.jsonl (and test_released.jsonl) plus bad_audio.tsv; return counts.

    Rows carry "word" (the folder) and "label" (the word, `_unknown_` or `_silence_`). `words` keep
    their own class; other words become `_unknown_` (or are left out when `unknown` is false).
    With `unknown_fraction`, train and valid keep round(unknown_fraction x their command-word clips)
    `_unknown_` clips (all when they have fewer), drawn with the seed; test keeps every listed clip.
    Each split gets round(silence_fraction x its word clips) `_silence_` crops of `silence_secs`.
    """
    root, out_dir = corpus_root(root), Path(out_dir)
    _check_words(words)
    files = _scan(root)
    split_of = _read_lists(root, files)
    present = {utt.split("/")[0] for utt in files}
    absent = [w for w in words if w not in present]
    if absent:
        raise ConfigError(f"prepare_data.words: {', '.join(absent)} has no clips under {root}; "
                          f"the corpus has {', '.join(sorted(present))}")
    items = [(utt, path, {"word": utt.split("/")[0], "label": label})
             for utt, path in files.items() if (label := _label(utt.split("/")[0], words, unknown))]
    noises = _noise_items(root) if silence_fraction > 0 else []
    released = _released_items(root, released_test_dir, words, unknown) if released_test_dir else []
    rows = probe_rows(items + noises + released, out_dir, strict, check_audio, num_workers, sample_rate)

    noise_rows = [rows[utt] for utt, _, _ in noises if utt in rows]
    summary: dict = {"bad_files": len(items) + len(noises) + len(released) - len(rows)}
    for split in ("train", "valid", "test"):
        split_rows = [rows[utt] for utt, _, _ in items if utt in rows and split_of.get(utt, "train") == split]
        if unknown_fraction is not None and split != "test":  # the test split stays as published
            split_rows = _unknown_share(split_rows, unknown_fraction, split, seed)
        count = round(silence_fraction * len(split_rows))
        split_rows += _silence_rows(noise_rows, count, split, silence_secs, seed)
        write_jsonl(split_manifest(out_dir, split), split_rows)
        summary[split] = dict(sorted(Counter(r["label"] for r in split_rows).items()))
    if released_test_dir:
        released_rows = [rows[utt] for utt, _, _ in released if utt in rows]
        write_jsonl(split_manifest(out_dir, "released"), released_rows)
        summary["released"] = dict(sorted(Counter(r["label"] for r in released_rows).items()))
    return summary


def _check_words(words: list[str]) -> None:
    if not words:
        raise ConfigError("prepare_data.words: give at least one word to recognise")
    if len(set(words)) != len(words) or {SILENCE, UNKNOWN} & set(words):
        raise ConfigError(f"prepare_data.words: {list(words)} must be distinct words; "
                          f"{UNKNOWN} and {SILENCE} are added by prepare_data.unknown and silence_fraction")


def _label(word: str, words: list[str], unknown: bool) -> str | None:
    return word if word in words else UNKNOWN if unknown else None


def _scan(root: Path) -> dict[str, Path]:
    """{"<word>/<file stem>": path} for every clip at ROOT/<word>/<file>, background noise excluded."""
    files: dict[str, Path] = {}
    skipped = 0
    for path in find_audio(root):
        parts = path.relative_to(root).parts
        if parts[0] == NOISE_DIR:
            continue
        if len(parts) != 2:
            skipped += 1
            continue
        utt = f"{parts[0]}/{path.stem}"
        if utt in files:
            raise DataError(f"{files[utt]} and {path} are the same clip; remove one of them")
        files[utt] = path
    if skipped:
        log.warning("%d audio files under %s are not at <word>/<file> and were ignored", skipped, root)
    if not files:
        raise DataError(f"prepare_data.dataset_root: {root} holds no <word>/<file>.wav clips; "
                        "expected the Speech Commands layout")
    return files


def _read_lists(root: Path, files: dict[str, Path]) -> dict[str, str]:
    """{clip id: "valid" | "test"} from the two lists; every listed clip must exist."""
    split_of: dict[str, str] = {}
    for split, name in LISTS.items():
        path = root / name
        if not path.is_file():
            raise DataError(f"prepare_data.dataset_root: {path} does not exist; expected the Speech Commands "
                            f"layout with {' and '.join(LISTS.values())}")
        listed = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        ids = [rel.rsplit(".", 1)[0] for rel in listed]
        require_found([rel for rel, utt in zip(listed, ids) if utt not in files], path, root)
        for utt in ids:
            if split_of.get(utt, split) != split:
                raise DataError(f"{utt} is in both {LISTS['valid']} and {LISTS['test']}; remove it from one")
            split_of[utt] = split
    return split_of


def _noise_items(root: Path) -> list[tuple[str, Path, dict]]:
    folder = root / NOISE_DIR
    paths = find_audio(folder) if folder.is_dir() else []
    if not paths:
        raise DataError(f"{folder} holds no noise files for the _silence_ class; "
                        "set prepare_data.silence_fraction=0 to train without it")
    return [(f"{NOISE_DIR}/{p.stem}", p, {}) for p in paths]


def _released_items(root: Path, folder: str, words: list[str], unknown: bool) -> list[tuple[str, Path, dict]]:
    """Clips of a released test set: <label>/<file>, labels being words, _unknown_ or _silence_."""
    base = root / folder  # an absolute folder replaces root
    if not base.is_dir():
        raise DataError(f"prepare_data.released_test_dir: {base} does not exist")
    items = []
    for path in find_audio(base):
        parts = path.relative_to(base).parts
        if len(parts) != 2:
            continue
        label = parts[0] if parts[0] in (SILENCE, UNKNOWN) else _label(parts[0], words, unknown)
        if label:
            items.append((f"released/{parts[0]}/{path.stem}", path, {"word": parts[0], "label": label}))
    if not items:
        raise DataError(f"prepare_data.released_test_dir: {base} holds no <label>/<file>.wav clips")
    return items


def _unknown_share(rows: list[dict], fraction: float, split: str, seed: int) -> list[dict]:
    """`rows` with round(fraction x command-word clips) of its `_unknown_` clips (all when fewer), drawn with `seed`."""
    unknown = [k for k, row in enumerate(rows) if row["label"] == UNKNOWN]
    wanted = min(len(unknown), round(fraction * (len(rows) - len(unknown))))
    dropped = set(unknown) - set(random.Random(f"{seed}/unknown/{split}").sample(unknown, wanted))
    return [row for k, row in enumerate(rows) if k not in dropped]


def class_shares(counts: dict[str, int]) -> str:
    """"N clips: _unknown_ a %, _silence_ b %, W words c % (d-e % each)" of a split's {label: clips}."""
    total = sum(counts.values())
    if not total:
        return "0 clips"
    words = {label: n for label, n in counts.items() if label not in (UNKNOWN, SILENCE)}
    parts = [f"{label} {100 * counts[label] / total:.1f} %" for label in (UNKNOWN, SILENCE) if label in counts]
    if words:
        each = f"{100 * min(words.values()) / total:.1f}-{100 * max(words.values()) / total:.1f} % each"
        parts.append(f"{len(words)} words {100 * sum(words.values()) / total:.1f} % ({each})")
    return f"{total} clips: " + ", ".join(parts)


def _silence_rows(noises: list[dict], count: int, split: str, secs: float, seed: int) -> list[dict]:
    """`count` crops of `secs` from this split's time region of the noise files, drawn with `seed`."""
    low, high = SILENCE_REGIONS[split]
    spans = []
    for row in noises:
        frames = int(secs * row["sample_rate"])
        first, last = int(low * row["num_frames"]), int(high * row["num_frames"]) - frames
        if last >= first:
            spans.append((row, first, last, frames))
    if count and not spans:
        raise DataError(f"the {NOISE_DIR} files are too short for {secs} s _silence_ crops from the {split} "
                        f"region ({low:.0%}-{high:.0%} of each file); set prepare_data.silence_fraction=0")
    rng = random.Random(f"{seed}/silence/{split}")
    rows = []
    for i in range(count):
        row, first, last, frames = spans[rng.randrange(len(spans))]
        start = rng.randint(first, last)
        rows.append({**row, "id": f"{SILENCE}/{split}-{i:05d}", "start": start, "num_frames": frames,
                     "duration": frames / row["sample_rate"], "word": SILENCE, "label": SILENCE})
    return rows
