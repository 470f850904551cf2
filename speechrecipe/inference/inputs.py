"""What `infer` and a loaded model take as audio: files, folders, `@list.txt`, or samples with their rate,
checked as stage 0 checks a corpus and turned into manifest rows.

An input's id is the path as given, without its audio extension (a folder's files: the folder as given
joined with the path inside it). Unusable files are named one per line and in a bad-audio report (the
format of stage 0's bad_audio.tsv); the rest goes on. Samples in memory are written to a temporary
float32 WAV, so they take the same reading, resampling and downmixing as a file.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from speechrecipe.data.corpora.common import AUDIO_SUFFIXES
from speechrecipe.errors import DataError

log = logging.getLogger(__name__)

FOLDER_SUFFIXES = (*AUDIO_SUFFIXES, ".ogg", ".mp3")


@dataclass
class Inputs:
    """Usable manifest rows in input order, the unusable (path, problem) pairs, and temporary files to remove."""

    rows: list[dict]
    bad: list[tuple[str, str]] = field(default_factory=list)
    temporary: list[Path] = field(default_factory=list)

    def close(self) -> None:
        for path in self.temporary:
            path.unlink(missing_ok=True)

    def __enter__(self) -> "Inputs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def expand(inputs: Sequence[str | os.PathLike]) -> list[tuple[str, Path]]:
    """(id, path) of every audio input: a file, each audio file under a folder (sorted), or each line of
    `@list.txt` (relative to the list's folder; blank lines and # comments skipped)."""
    items: list[tuple[str, Path]] = []
    for given in map(str, inputs):
        if given.startswith("@"):
            items += _listed(Path(given[1:]))
        elif Path(given).is_dir():
            found = sorted(p for p in Path(given).rglob("*") if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"{given}: a folder without audio files ({', '.join(FOLDER_SUFFIXES)}); give audio files")
            items += [(_without_suffix(str(Path(given) / p.relative_to(given))), p) for p in found]
        else:
            items.append((_without_suffix(given), Path(given).expanduser()))
    seen: dict[str, Path] = {}
    for utt, path in items:
        if utt in seen and seen[utt] != path:
            raise DataError(f"{path} and {seen[utt]} have the same id {utt!r}; give each input once")
        seen[utt] = path
    return list(dict(items).items())


def _listed(list_file: Path) -> list[tuple[str, Path]]:
    if not list_file.is_file():
        raise DataError(f"@{list_file}: no such list file; give @FILE with one audio path per line")
    items = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            path = Path(name).expanduser()
            items.append((_without_suffix(name), path if path.is_absolute() else list_file.parent / path))
    return items


def _without_suffix(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix("")) if path.suffix.lower() in FOLDER_SUFFIXES else name


def check(items: list[tuple[str, Path]], sample_rate: int, report: Path | None = None) -> Inputs:
    """Manifest rows of the usable files (one warning line per unusable one, and per converted one)."""
    from speechrecipe.data.scan import probe_files, write_bad_audio_report

    infos = probe_files([path for _, path in items], sample_rate, full=True, num_workers=1) if items else []
    rows, bad = [], []
    for (utt, path), info in zip(items, infos):
        if info.problem:
            bad.append((str(path), info.problem))
            log.warning("%s: %s; left out%s", path, info.problem, f" (listed in {report})" if report else "")
            continue
        for warning in info.warnings:
            log.warning("%s: %s, as stage 0 does", path, warning)
        rows.append({"id": utt, "path": os.fspath(path), "num_frames": info.num_frames, "sample_rate": info.sample_rate,
                     "channels": info.channels, "duration": info.duration})
    if report is not None and bad:
        write_bad_audio_report(report, bad)
    return Inputs(rows, bad)


def audio_inputs(audio: Any, sample_rate: int) -> tuple[Inputs, bool]:
    """`audio` for a loaded model's methods: a path, (samples, rate), or a list of either → (Inputs, was a list).
    Samples are a 1-D array (mono) or [T, C] / [C, T] with C < T (channels are averaged)."""
    batched = isinstance(audio, list)
    items, temporary = [], []
    for k, one in enumerate(audio if batched else [audio]):
        if isinstance(one, (str, os.PathLike)):
            items.append((_without_suffix(str(one)), Path(one)))
        elif isinstance(one, tuple) and len(one) == 2:
            path = _as_wav(*one)
            temporary.append(path)
            items.append((f"input-{k}", path))
        else:
            raise DataError(f"audio input {k}: {type(one).__name__}; give a file path or (samples, sample_rate)")
    try:
        found = check(items, sample_rate)
    except BaseException:
        for path in temporary:
            path.unlink(missing_ok=True)
        raise
    found.temporary = temporary
    if found.bad:
        found.close()
        path, problem = found.bad[0]
        raise DataError(f"{path}: {problem}; give readable audio")
    return found, batched


def _as_wav(samples: Any, rate: int) -> Path:
    import numpy as np
    import soundfile as sf

    data = np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples, dtype=np.float32)
    if data.ndim == 2 and data.shape[0] < data.shape[1]:
        data = data.T  # [C, T] → [T, C]
    if data.ndim not in (1, 2) or not int(rate) > 0:
        raise DataError(f"samples of shape {tuple(data.shape)} at {rate} Hz; give [T] or [T, C] samples and a positive rate")
    handle, name = tempfile.mkstemp(suffix=".wav", prefix="speechrecipe-")
    os.close(handle)
    sf.write(name, data, int(rate), subtype="FLOAT")
    return Path(name)
