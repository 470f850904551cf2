"""Reading audio (soundfile only; torchaudio >= 2.9 no longer decodes) and checking files are usable."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torch

# libsndfile's SF_ERR_UNRECOGNISED_FORMAT: the bytes are not any format it knows.
_SF_ERR_UNRECOGNISED_FORMAT = 1
_SF_ERR_SYSTEM = 2
_DATA_SIZE_MISMATCH = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)
_STREAMING_PLACEHOLDER = 0x7FFFF000
# Frames per block when scanning a whole file: bounds memory for hour-long recordings.
_BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header (and, with a full check, its samples) says; `problem` is set when unusable.

    num_frames and sample_rate describe the file itself, before any resampling.
    """

    num_frames: int
    sample_rate: int
    channels: int
    duration: float
    problem: str | None = None
    warnings: tuple[str, ...] = ()


def read_audio(
    path: str | Path, start: int = 0, num_frames: int = -1, sample_rate: int = 16000
) -> torch.Tensor:
    """Read `path` as a mono float32 tensor [T] at `sample_rate`.

    `start` and `num_frames` count frames of the FILE (at its own rate, as manifests store them);
    `num_frames=-1` reads to the end. Channels are averaged; a different rate is resampled.
    """
    # imported here so that checking a corpus (probe_audio, in forked workers) never loads torch
    import torch

    data, file_rate = sf.read(path, start=start, frames=num_frames, dtype="float32", always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    wav = torch.from_numpy(np.ascontiguousarray(mono))
    if file_rate != sample_rate:
        import torchaudio.functional

        wav = torchaudio.functional.resample(wav, file_rate, sample_rate)
    return wav


def probe_audio(path: str | Path, sample_rate: int = 16000, full: bool = True) -> AudioInfo:
    """Check one file. `full=False` reads only the header; `full=True` also decodes every sample."""
    try:
        f = sf.SoundFile(path)
    except sf.LibsndfileError as e:
        return _failed(_open_problem(path, e))
    with f:
        frames, rate, channels = f.frames, f.samplerate, f.channels
        problem = _header_problem(f)
        if problem is None and full:
            try:
                problem = _samples_problem(f)
            except (RuntimeError, OSError):  # libsndfile decode errors ("flac decoder lost sync")
                problem = "corrupt or truncated"
    warnings = []
    if channels > 1:
        warnings.append("stereo → downmixed" if channels == 2 else f"{channels} channels → downmixed")
    if rate != sample_rate:
        warnings.append(f"sample rate {rate} → resampled to {sample_rate}")
    return AudioInfo(frames, rate, channels, frames / rate, problem, tuple(warnings))


def _failed(problem: str) -> AudioInfo:
    return AudioInfo(0, 0, 0, 0.0, problem)


def _open_problem(path: str | Path, error: sf.LibsndfileError) -> str:
    # Only the failure path pays for the stat calls.
    if not os.path.exists(path):
        return "broken or looping symbolic link" if os.path.islink(path) else "file not found"
    if os.path.getsize(path) == 0:
        return "empty file"
    if error.code == _SF_ERR_UNRECOGNISED_FORMAT:
        return "not an audio file"
    if error.code == _SF_ERR_SYSTEM:
        return "unreadable (permission or I/O error)"
    return "corrupt or truncated"


def _header_problem(f: sf.SoundFile) -> str | None:
    if f.frames == 0:
        return "no samples"
    # libsndfile silently shortens a WAV whose data chunk runs past the end of the file and logs
    # "data : 32000 (should be 15978)": a truncated file. Writers streaming to a pipe cannot know
    # the size and leave a placeholder (sox 0x7ffff000, ffmpeg 0xffffffff, some 0): those are fine.
    log = f.extra_info
    if "should be" in log:
        match = _DATA_SIZE_MISMATCH.search(log)
        declared, present = (int(n) for n in match.groups()) if match else (0, 0)
        if present < declared < _STREAMING_PLACEHOLDER:
            return "corrupt or truncated"
    return None


def _samples_problem(f: sf.SoundFile) -> str | None:
    # Only float subtypes can hold NaN/inf; integer reads skip a float conversion.
    subtype = f.subtype
    is_float = subtype in ("FLOAT", "DOUBLE")
    dtype = "float32" if is_float else "int16" if subtype == "PCM_16" else "int32"
    read = 0
    nonzero = False
    while True:
        # buffer_read skips SoundFile.read's array bookkeeping: ~20% faster on short files
        block = np.frombuffer(f.buffer_read(_BLOCK_FRAMES, dtype=dtype), dtype=dtype)
        frames = len(block) // f.channels
        read += frames
        if is_float and not np.isfinite(block).all():
            return "non-finite samples (NaN/inf)"
        nonzero = nonzero or bool(block.any())
        if frames < _BLOCK_FRAMES:
            break
    if read < f.frames:
        return "corrupt or truncated"
    if not nonzero:
        return "all-zero samples"
    return None
