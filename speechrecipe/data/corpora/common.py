"""Helpers shared by the corpus parsers: finding a listed file, and checking audio into manifest rows."""
from __future__ import annotations

import os
from pathlib import Path

from speechrecipe.data.scan import probe_files, summarize_checks
from speechrecipe.errors import ConfigError, DataError

AUDIO_SUFFIXES = (".wav", ".flac")


def corpus_root(root: Path, key: str = "prepare_data.dataset_root") -> Path:
    """The absolute corpus folder, or a DataError naming the config key."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"{key}: {root} does not exist")
    return root


def find_listed(root: Path, rel: str) -> Path | None:
    """root/rel, or the same name as .wav/.flac (lists name .wav; the bundled minis store FLAC)."""
    path = root / rel
    if path.is_file():
        return path
    for suffix in AUDIO_SUFFIXES:
        other = path.with_suffix(suffix)
        if other.is_file():
            return other
    return None


def require_found(missing: list[str], list_file: Path, root: Path) -> None:
    """A DataError naming the list and the first missing files, if any."""
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise DataError(f"{list_file} names {len(missing)} files missing under {root} (as .wav or .flac): {shown}")


def probe_rows(items: list[tuple[str, Path, dict]], out_dir: Path, strict: bool, check_audio: str,
               num_workers: int, sample_rate: int) -> dict[str, dict]:
    """Check each (id, path, fields) item's audio once; write bad_audio.tsv; manifest rows of the usable ones.

    A row is {"id", "path", "num_frames", "sample_rate", "channels", "duration", **fields}.
    """
    if check_audio not in ("full", "header"):
        raise ConfigError(f"prepare_data.check_audio: expected 'full' or 'header', got {check_audio!r}")
    paths = [path for _, path, _ in items]
    infos = probe_files(paths, sample_rate, full=check_audio == "full", num_workers=num_workers)
    bad = summarize_checks(paths, infos, Path(out_dir) / "bad_audio.tsv", strict)
    return {
        utt: {"id": utt, "path": os.fspath(path), "num_frames": info.num_frames, "sample_rate": info.sample_rate,
              "channels": info.channels, "duration": info.duration, **fields}
        for (utt, path, fields), info in zip(items, infos) if not bad or path not in bad
    }
