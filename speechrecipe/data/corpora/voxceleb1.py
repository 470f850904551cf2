"""VoxCeleb1 in its published layout: manifests for speaker verification and identification.

    ROOT/wav/<speaker>/<video>/<nnnnn>.wav   (.flac accepted too: the bundled mini corpus uses FLAC)
    trial lists (veri_test2.txt, list_test_all2.txt, list_test_hard2.txt):
        1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav   (label 1 target, 0 non-target)
    iden_split.txt:
        1 id10001/1zcIwhmdeo4/00001.wav   (1 train, 2 dev, 3 test)

Paths in the lists are relative to wav/. An utterance id is that path without its extension
(`id10270/x6uYqmx31kE/00001`), so a list naming .wav also finds the .flac; its speaker is the
first component.
"""
from __future__ import annotations

import logging
import os
import random
from collections import defaultdict
from pathlib import Path

from speechrecipe.data.corpora.common import corpus_root, probe_rows, require_found
from speechrecipe.data.manifest import split_manifest, write_jsonl, write_trials
from speechrecipe.data.scan import find_audio
from speechrecipe.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Trial = tuple[int, str, str]  # (label, enroll_id, test_id)


def prepare_voxceleb1_verification(
    root: Path,
    out_dir: Path,
    test_sets: list[dict],
    valid_fraction: float = 0.05,
    valid_count: int | None = None,
    iden_split: str | None = None,
    seed: int = 0,
    strict: bool = False,
    check_audio: str = "full",
    num_workers: int = 2,
    num_valid_trials: int = 10000,
    sample_rate: int = 16000,
) -> dict:
    """Write train/valid manifests, validation trials and one manifest + trial list per test set.

    Training speakers are those no test trial list mentions, except lists marked
    `exclude_speakers: false` (see _train_ids). Validation holds out, per training
    speaker, `valid_count` utterances (or `valid_fraction` of them, rounded; at least one stays
    in training), chosen with `seed`; with `iden_split`, the utterances it marks 2 instead.
    Unusable audio is left out of train/valid, and trials using it are dropped (strict: error).
    Writes into out_dir: train.jsonl, valid.jsonl, trials_valid.tsv, test_<name>.jsonl,
    trials_<name>.tsv, bad_audio.tsv. Returns counts.
    """
    root, out_dir = _corpus_root(root), Path(out_dir)
    trial_lists = _read_test_sets(root, test_sets)
    splits = _read_iden_split(_corpus_file(root, iden_split, "prepare_data.iden_split")) if iden_split else None
    files = _scan(root)
    for test_set in test_sets:
        trials = trial_lists[test_set["name"]]
        _require_present([u for t in trials for u in t[1:]], files, test_set["trial_file"], root)
    if splits is not None:
        _require_present(splits, files, iden_split, root)

    test_ids = sorted({u for trials in trial_lists.values() for t in trials for u in t[1:]})
    train_ids = _train_ids(files, test_sets, trial_lists)
    # every file is checked once, whether training or test uses it
    rows = _check_audio(files, train_ids + test_ids, out_dir, strict, check_audio, num_workers, sample_rate)

    train_rows = [rows[u] for u in train_ids if u in rows]
    if splits is not None:
        valid_ids = {r["id"] for r in train_rows if splits.get(r["id"]) == 2}
    else:
        valid_ids = _hold_out(train_rows, valid_fraction, valid_count, seed)
    valid_rows = [r for r in train_rows if r["id"] in valid_ids]
    train_rows = [r for r in train_rows if r["id"] not in valid_ids]
    write_jsonl(out_dir / "train.jsonl", train_rows)
    write_jsonl(out_dir / "valid.jsonl", valid_rows)
    valid_trials = _make_trials(valid_rows, num_valid_trials, seed)
    write_trials(out_dir / "trials_valid.tsv", valid_trials)
    return {
        "train_speakers": len({r["speaker"] for r in train_rows}),
        "train_utterances": len(train_rows),
        "valid_utterances": len(valid_rows),
        "valid_trials": len(valid_trials),
        "bad_files": len(train_ids) + len(test_ids) - len(rows),
        "test_sets": {name: _write_test_set(name, trials, rows, out_dir) for name, trials in trial_lists.items()},
    }


def prepare_voxceleb1_identification(
    root: Path,
    out_dir: Path,
    iden_split: str = "iden_split.txt",
    strict: bool = False,
    check_audio: str = "full",
    num_workers: int = 2,
    sample_rate: int = 16000,
) -> dict:
    """Write train.jsonl, valid.jsonl and test_test.jsonl from the 1/2/3 marks of `iden_split`
    (relative to root, or absolute), plus bad_audio.tsv. Unusable audio is left out (strict: error).
    """
    root, out_dir = _corpus_root(root), Path(out_dir)
    splits = _read_iden_split(_corpus_file(root, iden_split, "prepare_data.iden_split"))
    files = _scan(root)
    _require_present(splits, files, iden_split, root)
    ids = sorted(splits)
    rows = _check_audio(files, ids, out_dir, strict, check_audio, num_workers, sample_rate)
    summary = {"bad_files": len(ids) - len(rows)}
    for mark, split in ((1, "train"), (2, "valid"), (3, "test")):
        split_rows = [rows[u] for u in ids if splits[u] == mark and u in rows]
        write_jsonl(split_manifest(out_dir, split), split_rows)
        summary[f"{split}_utterances"] = len(split_rows)
        summary[f"{split}_speakers"] = len({r["speaker"] for r in split_rows})
    return summary


def _train_ids(files: dict[str, Path], test_sets: list[dict], trial_lists: dict[str, list[Trial]]) -> list[str]:
    """Utterances of the speakers that no excluding test set names (VoxCeleb1 dev for veri_test2.txt).

    A test set with `exclude_speakers: false` (list_test_all2.txt, list_test_hard2.txt cover all
    1,251 speakers) leaves training alone; its overlap with the training speakers is logged.
    """
    def speakers(name: str) -> set[str]:
        return {_speaker(u) for t in trial_lists[name] for u in t[1:]}

    held_out = set().union(*(speakers(t["name"]) for t in test_sets if t.get("exclude_speakers", True)))
    train_ids = [u for u in files if _speaker(u) not in held_out]
    if not train_ids:
        raise DataError("no training speakers left: every speaker under wav/ is in a test trial list; give test "
                        "sets that cover all speakers (list_test_all2.txt, list_test_hard2.txt) exclude_speakers: false")
    train_speakers = {_speaker(u) for u in train_ids}
    for test_set in test_sets:
        overlap = speakers(test_set["name"]) & train_speakers
        if overlap:
            log.warning("test set %s: %d of its %d speakers are training speakers (exclude_speakers: false)",
                        test_set["name"], len(overlap), len(speakers(test_set["name"])))
    return train_ids


def _corpus_root(root: Path) -> Path:
    root = corpus_root(root)
    if not (root / "wav").is_dir():
        raise DataError(f"prepare_data.dataset_root: {root} has no wav/ folder; "
                        "expected VoxCeleb1's layout wav/<speaker>/<video>/<nnnnn>.wav")
    return root


def _scan(root: Path) -> dict[str, Path]:
    """{utterance id: audio path} for every audio file under root/wav."""
    wav_dir = root / "wav"
    prefix = len(str(wav_dir)) + 1
    files: dict[str, Path] = {}
    for path in find_audio(wav_dir):
        utt = str(path)[prefix:].rsplit(".", 1)[0].replace(os.sep, "/")
        if "/" not in utt:
            raise DataError(f"{path}: audio directly under wav/; expected wav/<speaker>/<video>/<nnnnn>.wav")
        if utt in files:
            raise DataError(f"{files[utt]} and {path} are the same utterance; remove one of them")
        files[utt] = path
    if not files:
        raise DataError(f"prepare_data.dataset_root: {wav_dir} holds no .wav or .flac files")
    return files


def _read_test_sets(root: Path, test_sets: list[dict]) -> dict[str, list[Trial]]:
    trial_lists: dict[str, list[Trial]] = {}
    for i, test_set in enumerate(test_sets):
        name = test_set["name"]
        if name in trial_lists:
            raise ConfigError(f"prepare_data.test_sets[{i}].name: {name!r} is used twice; name each test set once")
        trial_file = _corpus_file(root, test_set["trial_file"], f"prepare_data.test_sets[{i}].trial_file")
        trial_lists[name] = _read_trials(trial_file)
    return trial_lists


def _write_test_set(name: str, trials: list[Trial], rows: dict[str, dict], out_dir: Path) -> dict:
    """trials_<name>.tsv without trials that use unusable audio, and test_<name>.jsonl of the rest."""
    usable = [t for t in trials if t[1] in rows and t[2] in rows]
    if len(usable) < len(trials):
        log.warning("test set %s: dropped %d of %d trials that use unusable audio; see %s",
                    name, len(trials) - len(usable), len(trials), out_dir / "bad_audio.tsv")
    # trials reuse utterances: the manifest lists each once, so each is embedded once
    used = sorted({u for t in usable for u in t[1:]})
    write_jsonl(split_manifest(out_dir, name), (rows[u] for u in used))
    write_trials(out_dir / f"trials_{name}.tsv", usable)
    return {"trials": len(usable), "utterances": len(used), "dropped_trials": len(trials) - len(usable)}


def _check_audio(files: dict[str, Path], ids: list[str], out_dir: Path, strict: bool,
                 check_audio: str, num_workers: int, sample_rate: int) -> dict[str, dict]:
    """Probe each id's file once, write bad_audio.tsv, return manifest rows of the usable ones."""
    items = [(u, files[u], {"speaker": _speaker(u)}) for u in ids]
    return probe_rows(items, out_dir, strict, check_audio, num_workers, sample_rate)


def _speaker(utt: str) -> str:
    return utt.split("/", 1)[0]


def _corpus_file(root: Path, name: str, key: str) -> Path:
    path = root / name  # an absolute name replaces root
    if not path.is_file():
        raise DataError(f"{key}: {path} does not exist")
    return path


def _list_lines(path: Path, expected: str, labels: tuple[str, ...], fields: int):
    """The fields of each non-blank line of a VoxCeleb list, shape checked: whitespace-separated, or
    tab-separated where a line holds a tab (so paths with spaces can be listed)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
            if not parts:
                continue
            if len(parts) != fields or parts[0] not in labels:
                raise DataError(f"{path}:{number}: expected '{expected}', got {line.strip()!r}; "
                                "fix or remove the line")
            yield parts


def _read_trials(path: Path) -> list[Trial]:
    """The trials of a list, each once: an empty list is refused, a repeated line left out with a warning."""
    expected = "<0|1> <speaker/video/nnnnn.wav> <speaker/video/nnnnn.wav>"
    trials = [(int(label), _utt_id(a), _utt_id(b)) for label, a, b in _list_lines(path, expected, ("0", "1"), 3)]
    if not trials:
        raise DataError(f"{path}: holds no trials; expected lines '{expected}'")
    labels: dict[tuple[str, str], int] = {}
    for label, a, b in trials:
        if labels.setdefault((a, b), label) != label:
            raise DataError(f"{path}: the pair {a} {b} is listed both as target (1) and non-target (0); keep one")
    if len(labels) < len(trials):
        log.warning("%s: %d repeated trial lines left out (each pair is scored once)", path, len(trials) - len(labels))
    return list(dict.fromkeys(trials))


def _read_iden_split(path: Path) -> dict[str, int]:
    expected = "<1|2|3> <speaker/video/nnnnn.wav>"
    return {_utt_id(rel): int(mark) for mark, rel in _list_lines(path, expected, ("1", "2", "3"), 2)}


def _utt_id(rel: str) -> str:
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


def _require_present(ids, files: dict[str, Path], list_name: str, root: Path) -> None:
    require_found(sorted({u for u in ids if u not in files}), Path(list_name).name, root / "wav")


def _hold_out(rows: list[dict], fraction: float, count: int | None, seed: int) -> set[str]:
    """Per speaker, a seeded sample of `count` (or `fraction` of its) utterance ids; one always stays."""
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_speaker[r["speaker"]].append(r["id"])
    held: set[str] = set()
    for speaker, ids in sorted(by_speaker.items()):
        k = count if count is not None else round(fraction * len(ids))
        # seeding per speaker keeps each speaker's split stable when others are added or removed
        rng = random.Random(f"{seed}/{speaker}")
        held.update(rng.sample(sorted(ids), max(0, min(k, len(ids) - 1))))
    return held


def _make_trials(rows: list[dict], num_trials: int, seed: int) -> list[Trial]:
    """Up to `num_trials` distinct trials, half target and half non-target, sampled with `seed`."""
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_speaker[r["speaker"]].append(r["id"])
    speakers = sorted(by_speaker)
    multi = [s for s in speakers if len(by_speaker[s]) >= 2]
    num_targets = sum(len(u) * (len(u) - 1) // 2 for u in by_speaker.values())
    num_nontargets = len(rows) * (len(rows) - 1) // 2 - num_targets
    rng = random.Random(seed)
    pairs: dict[frozenset, Trial] = {}
    for label, wanted in ((1, min(num_trials // 2, num_targets)),
                          (0, min(num_trials - num_trials // 2, num_nontargets))):
        found = 0
        for _ in range(50 * wanted + 1000):  # a bound; collisions are rare unless few pairs exist
            if found == wanted:
                break
            if label == 1:
                a, b = rng.sample(by_speaker[rng.choice(multi)], 2)
            else:
                s, t = rng.sample(speakers, 2)
                a, b = rng.choice(by_speaker[s]), rng.choice(by_speaker[t])
            if frozenset((a, b)) not in pairs:
                pairs[frozenset((a, b))] = (label, a, b)
                found += 1
    trials = list(pairs.values())
    rng.shuffle(trials)
    if len(trials) < num_trials:
        log.warning("trials_valid.tsv: %d of %d requested trials; "
                    "the validation set has too few speakers or utterances", len(trials), num_trials)
    return trials
