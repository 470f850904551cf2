"""Finding audio files in a tree and checking many of them in parallel (what makes stage 0 fast)."""
from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


from speechrecipe import preemption
from speechrecipe.data.audio import AudioInfo, probe_audio
from speechrecipe.data.tsv import write_tsv
from speechrecipe.errors import DataError
from speechrecipe.progress import progress

log = logging.getLogger(__name__)

# Below this many files a process pool costs more than it saves.
_MIN_PARALLEL_FILES = 256


def find_audio(root: str | Path, extensions: tuple[str, ...] = ("wav", "flac")) -> list[Path]:
    """Every file under `root` whose extension is in `extensions` (any case), sorted.

    Names starting with "." are skipped: macOS "._00001.wav" resource forks are not audio. A link
    named like audio that leads nowhere (or to itself) is returned, so probing lists it in
    bad_audio.tsv; a folder reached again through a link (a loop) or unreadable is skipped with a warning.
    """
    suffixes = tuple("." + e.lower().lstrip(".") for e in extensions)
    found: list[str] = []
    stack, seen = [os.fspath(root)], set()
    while stack:
        for entry in _folder_entries(stack.pop(), seen):
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                stack.append(entry.path)
            elif entry.name.lower().endswith(suffixes):
                found.append(entry.path)
    found.sort()
    return [Path(p) for p in found]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to itself: "too many levels of symbolic links"
        return False


def _folder_entries(folder: str, seen: set[tuple[int, int]]) -> list[os.DirEntry]:
    """The entries of `folder`, or [] (with a warning) for one already scanned or unreadable."""
    try:
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in seen:
            log.warning("skipping %s: a link back to a folder already scanned (a loop)", folder)
            return []
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as err:
        log.warning("skipping folder %s: %s", folder, err.strerror or err)
        return []


def probe_files(
    paths: list[Path],
    sample_rate: int = 16000,
    full: bool = True,
    num_workers: int = 2,
    desc: str = "checking audio",
) -> list[AudioInfo]:
    """`probe_audio` on every path, in `num_workers` forked processes, in order, with a progress bar."""
    paths_str = [os.fspath(p) for p in paths]
    probe_chunk = functools.partial(_probe_chunk, sample_rate=sample_rate, full=full)
    infos: list[AudioInfo] = []
    with progress(total=len(paths_str), desc=desc, unit="files", unit_scale=True, mininterval=0.5) as bar:
        if num_workers <= 1 or len(paths_str) < _MIN_PARALLEL_FILES:
            for path in paths_str:
                infos.append(probe_audio(path, sample_rate, full))
                bar.update()
            return infos
        # Big chunks keep inter-process traffic to a few dozen messages per worker, yet small
        # enough that the bar moves and both workers finish together.
        size = max(64, min(2000, len(paths_str) // (num_workers * 16)))
        chunks = [paths_str[i : i + size] for i in range(0, len(paths_str), size)]
        # fork: workers inherit the imported modules, so start-up costs milliseconds. They ignore the signals a
        # cluster sends the whole process group (this process stops the stage; speechrecipe/preemption.py); an
        # executor, unlike multiprocessing.Pool, is shut down without signalling its workers.
        pool = ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=preemption.ignore_signals)
        try:
            for chunk_infos in pool.map(probe_chunk, chunks):
                infos.extend(chunk_infos)
                bar.update(len(chunk_infos))
                preemption.poll(f"while {desc}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return infos


def _probe_chunk(paths: list[str], sample_rate: int, full: bool) -> list[AudioInfo]:
    return [probe_audio(path, sample_rate, full) for path in paths]


def write_bad_audio_report(path: str | Path, bad: list[tuple[Path, str]]) -> None:
    """TSV with header `path<TAB>problem`, one unusable file per line (header only when none)."""
    write_tsv(path, bad, header=("path", "problem"))


def summarize_checks(
    paths: list[Path], infos: list[AudioInfo], report_path: str | Path, strict: bool
) -> set[Path]:
    """Write the bad-audio report and return the unusable paths; with `strict`, raise if there are any.

    Logs one warning line for the unusable files and one per kind of conversion (downmix, resample).
    """
    bad = [(path, info.problem) for path, info in zip(paths, infos) if info.problem]
    write_bad_audio_report(report_path, bad)
    if bad:
        first = f"{bad[0][0]}: {bad[0][1]}"
        count = f"{len(bad)} file is" if len(bad) == 1 else f"{len(bad)} files are"
        if strict:
            raise DataError(
                f"{count} unusable (first: {first}); see {report_path}; fix or remove them, "
                "or set prepare_data.strict=false to leave them out"
            )
        log.warning("%s unusable and left out (first: %s); see %s", count, first, report_path)
    kinds = Counter(w for info in infos if not info.problem for w in info.warnings)
    for warning, n in sorted(kinds.items()):
        log.warning("%d audio files: %s", n, warning)
    return {path for path, _ in bad}
