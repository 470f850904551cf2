"""LibriSpeech in its published layout: manifests with transcripts for speech recognition.

    ROOT/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    ROOT/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
        lines: <speaker>-<chapter>-<utt> TRANSCRIPT IN CAPITALS

ROOT is the `LibriSpeech` folder; splits are its sub-folders (train-clean-100, dev-clean,
test-other, ...). An utterance id is the file name without its extension; its speaker is the
id's first field. A transcript line without its audio, or audio without a transcript line, is
left out and reported (unpaired.tsv); unusable audio is left out and reported (bad_audio.tsv).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from speechrecipe.data.corpora.common import corpus_root, probe_rows
from speechrecipe.data.manifest import test_manifest_name, write_jsonl
from speechrecipe.data.tsv import write_tsv
from speechrecipe.data.scan import find_audio
from speechrecipe.errors import DataError

log = logging.getLogger(__name__)

_UTT_ID = re.compile(r"^[^-\s]+-[^-\s]+-[^-\s]+$")


@dataclass
class Split:
    """One split folder: its audio files and transcript lines, by utterance id."""

    name: str
    audio: dict[str, Path] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # id -> "trans.txt:line"

    @property
    def paired(self) -> list[str]:
        return sorted(set(self.audio) & set(self.transcripts))

    def unpaired(self) -> list[tuple[str, str, str]]:
        """(id, problem, where) for transcript lines without audio and audio without transcript."""
        found = [(u, "transcript without audio", self.sources[u]) for u in self.transcripts if u not in self.audio]
        found += [(u, "audio without transcript", str(p)) for u, p in self.audio.items() if u not in self.transcripts]
        return sorted(found)


def prepare_librispeech(
    root: Path,
    out_dir: Path,
    train_sets: list[str],
    valid_sets: list[str],
    test_sets: list[str],
    strict: bool = False,
    check_audio: str = "full",
    num_workers: int = 2,
    sample_rate: int = 16000,
) -> dict:
    """Write train.jsonl (the train splits together), valid.jsonl, test_<split>.jsonl per test split
    present, unpaired.tsv and bad_audio.tsv into out_dir; return counts ("test_sets": the ones written).

    Train and valid splits must exist; a test split that does not is skipped with a warning.
    """
    root, out_dir = corpus_root(root), Path(out_dir)
    for key, names in (("prepare_data.train_sets", train_sets), ("prepare_data.valid_sets", valid_sets)):
        if not names:
            raise DataError(f"{key}: empty; name at least one split folder of {root}")
        for name in names:
            _split_dir(root, name, key)
    present_tests = [t for t in test_sets if (root / t).is_dir()]
    for absent in sorted(set(test_sets) - set(present_tests)):
        log.warning("prepare_data.test_sets: %s is not in %s; skipping it", absent, root)
    if test_sets and not present_tests:
        raise DataError(f"prepare_data.test_sets: none of {test_sets} is in {root}; available: {_available(root)}")
    splits = {name: _read_split(root, name) for name in dict.fromkeys(train_sets + valid_sets + present_tests)}
    _require_distinct_ids(list(splits.values()))
    _report_unpaired(list(splits.values()), out_dir / "unpaired.tsv", strict)
    items = [(u, s.audio[u], {"transcript": s.transcripts[u], "speaker": u.split("-", 1)[0]})
             for s in splits.values() for u in s.paired]
    rows = probe_rows(items, out_dir, strict, check_audio, num_workers, sample_rate)

    def write(name: str, split_names: list[str]) -> dict:
        chosen = [rows[u] for s in split_names for u in splits[s].paired if u in rows]
        if not chosen:
            raise DataError(f"{', '.join(split_names)}: no utterance has both usable audio and a transcript; "
                            f"see {out_dir / 'unpaired.tsv'} and {out_dir / 'bad_audio.tsv'}")
        write_jsonl(out_dir / f"{name}.jsonl", chosen)
        return {"utterances": len(chosen), "speakers": len({r["speaker"] for r in chosen}),
                "hours": round(sum(r["duration"] for r in chosen) / 3600, 3)}

    return {
        "train": write("train", train_sets),
        "valid": write("valid", valid_sets),
        "test_sets": {t: write(test_manifest_name(t), [t]) for t in present_tests},
        "unpaired": sum(len(s.unpaired()) for s in splits.values()),
        "bad_files": sum(len(s.paired) for s in splits.values()) - len(rows),
    }


def _available(root: Path) -> str:
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    return ", ".join(names) if names else "no split folders"


def _split_dir(root: Path, name: str, key: str) -> Path:
    path = root / name
    if not path.is_dir():
        raise DataError(f"{key}: {path} does not exist; dataset_root should be the LibriSpeech folder "
                        f"(available splits: {_available(root)})")
    return path


def _read_split(root: Path, name: str) -> Split:
    """Every audio file and transcript line of one split folder."""
    split = Split(name)
    for path in find_audio(root / name):
        utt = path.name.rsplit(".", 1)[0]
        if not _UTT_ID.match(utt):
            raise DataError(f"{path}: expected <speaker>-<chapter>-<utt>.flac; rename or remove it")
        if utt in split.audio:
            raise DataError(f"{split.audio[utt]} and {path} are the same utterance; remove one of them")
        split.audio[utt] = path
    for trans in sorted((root / name).rglob("*.trans.txt")):
        with open(trans, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                parts = line.split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) != 2 or not _UTT_ID.match(parts[0]):
                    raise DataError(f"{trans}:{number}: expected '<speaker>-<chapter>-<utt> TRANSCRIPT', "
                                    f"got {line.strip()!r}; fix or remove the line")
                if parts[0] in split.transcripts:
                    raise DataError(f"{trans}:{number}: {parts[0]} already has a transcript at "
                                    f"{split.sources[parts[0]]}; keep one of them")
                split.transcripts[parts[0]] = " ".join(parts[1].split())
                split.sources[parts[0]] = f"{trans}:{number}"
    if not split.audio and not split.transcripts:
        raise DataError(f"{root / name} holds no .flac/.wav files and no .trans.txt; is it a LibriSpeech split?")
    return split


def _require_distinct_ids(splits: list[Split]) -> None:
    seen: dict[str, str] = {}
    for split in splits:
        for utt in split.audio:
            if utt in seen:
                raise DataError(f"{utt} is in both {seen[utt]} and {split.name}; list each split folder in one place")
            seen[utt] = split.name


def _report_unpaired(splits: list[Split], report: Path, strict: bool) -> None:
    """unpaired.tsv (split, id, problem, where); one warning per kind with a count and examples."""
    found = [(s.name, *item) for s in splits for item in s.unpaired()]
    write_tsv(report, found, header=("split", "id", "problem", "where"))
    for problem, what in (("transcript without audio", "transcript lines have no audio file"),
                          ("audio without transcript", "audio files have no transcript line")):
        ids = [f"{split}/{utt}" for split, utt, kind, _ in found if kind == problem]
        if not ids:
            continue
        message = f"{len(ids)} {what} (e.g. {', '.join(ids[:3])}); see {report}"
        if strict:
            raise DataError(f"{message}; fix the corpus or set prepare_data.strict=false to leave them out")
        log.warning("%s; they are left out", message)
