"""Packed clips: every row's audio decoded once into one flat sample file, read back by slicing.

For corpora of short clips (Speech Commands: 1 s) opening and parsing a file costs more than the
samples in it, so in the training loop that cost is paid on every batch. A pack holds each row's
clip (its `start`/`num_frames` span, at the dataset's sample rate) back to back in one file that
is memory-mapped: reading a clip is a slice, shared by all DataLoader workers through the page
cache. The samples are exactly what `read_audio` returns: 16-bit PCM at the target rate is kept
as int16 and scaled by 2^-15 on reading (libsndfile's own conversion, bit for bit); anything
else (float, 24-bit, resampled) is stored as float32.

Files in `directory`: `<key>.samples` (raw samples), `<key>.npy` (N + 1 offsets) and
`<key>.json` (dtype, row ids, written last: a pack without it is unfinished and built again).
The key is the manifest's sha256 and the sample rate, so an edited manifest gets a new pack.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import soundfile as sf

from speechrecipe.data.audio import read_audio
from speechrecipe.errors import DataError, RunFailure
from speechrecipe.fileio import atomic_write_text
from speechrecipe.process import pid_alive

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT = 1
_INT16_SCALE = np.float32(1.0 / 32768.0)


class PackedClips:
    """Row id → its clip as a float32 array, from a memory-mapped pack."""

    def __init__(self, stem: Path):
        self.stem = stem
        meta = json.loads(stem.with_suffix(".json").read_text())
        self.dtype = np.dtype(meta["dtype"])
        self.offsets = np.load(stem.with_suffix(".npy"))
        self.position = {row_id: i for i, row_id in enumerate(meta["ids"])}
        self._samples: np.ndarray | None = None

    @property
    def samples(self) -> np.ndarray:
        # opened lazily: a pickled pack (a spawned worker) maps the file itself instead of copying it
        if self._samples is None:
            mapped = np.memmap(self.stem.with_suffix(".samples"), dtype=self.dtype, mode="r")
            self._samples = mapped.view(np.ndarray)  # plain slices: memmap's subclass hooks cost per slice
        return self._samples

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_samples": None}

    def clip(self, row_id: str, offset: int = 0, frames: int = -1) -> np.ndarray:
        """`frames` samples of the row's clip from `offset` on (-1: to its end), as float32."""
        begin, end = self._bounds(row_id, offset, frames)
        part = self.samples[begin:end]
        return part * _INT16_SCALE if self.dtype == np.int16 else np.array(part)

    def batch(self, spans: Sequence[tuple[str, int, int]]) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(row id, offset, frames) spans → right-padded float32 [B, T] and lengths, as torch tensors."""
        import torch

        bounds = [self._bounds(*span) for span in spans]
        lens = [end - begin for begin, end in bounds]
        out = np.zeros((len(bounds), max(lens, default=0)), dtype=self.dtype)
        samples = self.samples
        for row, (begin, end) in zip(out, bounds):
            row[: end - begin] = samples[begin:end]
        # numpy, not torch: torch would run this on its intra-op threads, which the training step
        # uses at the same time when batches are made in a background thread
        if self.dtype == np.int16:
            out = np.multiply(out, _INT16_SCALE, dtype=np.float32)
        return torch.from_numpy(out), torch.tensor(lens, dtype=torch.long)

    def _bounds(self, row_id: str, offset: int, frames: int) -> tuple[int, int]:
        i = self.position[row_id]
        begin, end = int(self.offsets[i]) + offset, int(self.offsets[i + 1])
        return begin, end if frames < 0 else min(end, begin + frames)


def open_or_build(rows: Sequence[dict], manifest: Path, directory: Path, sample_rate: int) -> PackedClips:
    """The pack of `manifest`'s rows at `sample_rate`, built first if it is not in `directory`."""
    from speechrecipe.fileio import file_digest

    if len({row["id"] for row in rows}) != len(rows):
        raise DataError(f"{manifest}: row ids repeat, so its clips cannot be packed by id; "
                        "set build_dataset.pack_audio=false")
    stem = directory / f"{manifest.stem}-{file_digest(manifest)[:16]}-{sample_rate}"
    if not stem.with_suffix(".json").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        # one builder at a time (torchrun ranks, experiments sharing the cache); the rest then find it
        with open(stem.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not stem.with_suffix(".json").is_file():
                _build(rows, stem, sample_rate, manifest)
    return PackedClips(stem)


def _build(rows: Sequence[dict], stem: Path, sample_rate: int, manifest: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.int16 if all(_is_pcm16_at(row, sample_rate) for row in rows[:1]) else np.float32
    estimate = sum(int(r["num_frames"]) * sample_rate // int(r["sample_rate"]) for r in rows) * np.dtype(dtype).itemsize
    free = shutil.disk_usage(stem.parent).free
    if estimate > free:
        raise DataError(f"packing {manifest} needs about {estimate / 2**30:.1f} GiB in {stem.parent} and "
                        f"{free / 2**30:.1f} GiB are free; free space or set build_dataset.pack_audio=false")
    log.info("packing the %d clips of %s into %s (read once, then sliced)", len(rows), manifest.name, stem.parent)
    _remove_orphans(stem)
    tmp = stem.parent / f".{stem.name}.{os.getpid()}.samples"
    try:
        offsets = _write_samples(rows, tmp, sample_rate, dtype, manifest.stem)
        if offsets is None:  # a clip is not 16-bit PCM at the target rate: store every clip as float32
            dtype = np.float32
            offsets = _write_samples(rows, tmp, sample_rate, dtype, manifest.stem)
        np.save(tmp.with_suffix(".npy"), np.asarray(offsets, dtype=np.int64))
        os.replace(tmp, stem.with_suffix(".samples"))
        os.replace(tmp.with_suffix(".npy"), stem.with_suffix(".npy"))
    except OSError as error:  # disk full, permissions: nothing of the experiment is touched
        raise RunFailure(f"could not write the pack of {manifest} in {stem.parent}: {error.strerror or error}; "
                         "free space there (or set build_dataset.pack_audio=false) and run the same command again") from error
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".npy").unlink(missing_ok=True)
    meta = {"format": FORMAT, "dtype": np.dtype(dtype).name, "sample_rate": sample_rate,
            "manifest": str(manifest), "ids": [row["id"] for row in rows]}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta))  # last: it marks the pack complete
    log.info("packed %d clips (%.1f MiB, %s)", len(rows), offsets[-1] * np.dtype(dtype).itemsize / 2**20,
             np.dtype(dtype).name)


def _remove_orphans(stem: Path) -> None:
    """Temporaries of earlier builds of this pack whose process is gone (killed mid-build)."""
    for path in stem.parent.glob(f".{stem.name}.*"):
        pid = path.name[len(stem.name) + 2 :].split(".")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            path.unlink(missing_ok=True)


def _write_samples(rows: Sequence[dict], path: Path, sample_rate: int, dtype, name: str) -> list[int] | None:
    """Every row's clip back to back into `path`; the offsets, or None if a clip cannot be `dtype`."""
    from speechrecipe.progress import progress

    offsets = [0]
    with open(path, "wb") as out:
        for row in progress(rows, desc=f"pack {name}", unit="clip", leave=False):
            try:
                clip = _decode(row, sample_rate, dtype)
            except (sf.LibsndfileError, RuntimeError, OSError) as error:
                raise DataError(f"{row['path']}: cannot be decoded for packing ({error}); prepare again with "
                                "prepare_data.check_audio=full, which leaves such files out") from error
            if clip is None:
                return None
            out.write(clip.tobytes())
            offsets.append(offsets[-1] + len(clip))
    return offsets


def _is_pcm16_at(row: dict, sample_rate: int) -> bool:
    try:
        info = sf.info(row["path"])
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False  # reading it for the pack names the file
    return info.subtype == "PCM_16" and info.samplerate == sample_rate and info.channels == 1


def _decode(row: dict, sample_rate: int, dtype) -> np.ndarray | None:
    """The row's clip in `dtype`; None when int16 was asked for and the file is not 16-bit mono PCM at the rate."""
    start, frames = int(row.get("start", 0)), int(row["num_frames"])
    if dtype == np.float32:
        return read_audio(row["path"], start, frames, sample_rate).numpy()
    with sf.SoundFile(row["path"]) as f:
        if f.subtype != "PCM_16" or f.samplerate != sample_rate or f.channels != 1:
            return None
        f.seek(start)
        return f.read(frames, dtype="int16")
