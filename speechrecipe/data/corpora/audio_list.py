"""A plain list of audio files as a corpus: one path per line (relative to the list's folder, or absolute).

An utterance id is the path as written, without its extension; blank lines and lines starting
with # are skipped. Unusable files are named in bad_audio.tsv and left out, as for every corpus.
"""
from __future__ import annotations

from pathlib import Path

from speechrecipe.data.corpora.common import probe_rows
from speechrecipe.data.manifest import write_jsonl
from speechrecipe.errors import DataError

MANIFEST = "all"


def read_audio_list(list_file: Path) -> list[tuple[str, Path, dict]]:
    """(id, absolute path, {}) per listed file, or a DataError naming a repeated id."""
    items, seen = [], {}
    for number, line in enumerate(Path(list_file).read_text(encoding="utf-8").splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        path = Path(name).expanduser()
        utt = str(Path(name).with_suffix(""))
        if utt in seen:
            raise DataError(f"{list_file}:{number}: {name} has the same id {utt!r} as line {seen[utt]}; "
                            "list each file once (ids are paths without their extension)")
        seen[utt] = number
        items.append((utt, path if path.is_absolute() else Path(list_file).parent / path, {}))
    return items


def prepare_audio_list(list_file: Path, out_dir: Path, strict: bool = False, check_audio: str = "full",
                       num_workers: int = 2, sample_rate: int = 16000) -> dict:
    """Write all.jsonl (every usable listed file) and bad_audio.tsv; returns counts."""
    items = read_audio_list(list_file)
    rows = probe_rows(items, out_dir, strict, check_audio, num_workers, sample_rate)
    write_jsonl(Path(out_dir) / f"{MANIFEST}.jsonl", [rows[utt] for utt, _, _ in items if utt in rows])
    return {"listed": len(items), "usable": len(rows), "bad_files": len(items) - len(rows)}
