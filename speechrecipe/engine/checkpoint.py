"""Atomic checkpoint files (torch is imported only to save and load): step-N.ckpt, valid_best.ckpt and a `latest` pointer.

A checkpoint is written to a temporary name, fsynced and renamed, so a crash never
leaves a file that looks complete; old ones are pruned only after the new one is safe.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from speechrecipe.errors import RunFailure, os_error_in
from speechrecipe.fileio import atomic_open

log = logging.getLogger(__name__)

BEST = "valid_best"
LATEST_POINTER = "latest"
_STEP = re.compile(r"^step-(\d+)\.ckpt$")


def step_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step}.ckpt"


def named_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.ckpt"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to path.tmp, fsync, rename; a failure leaves earlier files intact."""
    import torch

    try:
        with atomic_open(path, "wb") as handle:
            torch.save(state, handle)
    except (OSError, RuntimeError) as err:
        cause = os_error_in(err)  # torch.save wraps a failed write in a RuntimeError
        if cause is None:
            raise
        raise _write_failure(path, cause) from err


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file (the `latest` pointer, a result) atomically; failures as for save_atomic."""
    try:
        with atomic_open(path) as handle:
            handle.write(text)
    except OSError as err:
        raise _write_failure(path, err) from err


def _write_failure(path: Path, err: OSError) -> RunFailure:
    return RunFailure(f"could not write {path}: {err.strerror or err}; earlier checkpoints and results "
                      "are intact; free space and run the same command again to resume")


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU (tensors and plain containers only)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every step-N.ckpt, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), directory / m.group(0)) for m in map(_STEP.match, os.listdir(directory)) if m]
    return sorted(found)


def load_latest(directory: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable step checkpoint; unreadable ones are reported and skipped."""
    for step, path in reversed(step_checkpoints(directory)):
        try:
            return load(path), path
        except Exception as err:  # noqa: BLE001 - any failure to read means unusable
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, str(err).splitlines()[0][:120])
    return None


def save_step(state: dict[str, Any], directory: Path, step: int, keep: int | None) -> Path:
    """Save step-N.ckpt, point `latest` at it, then prune beyond `keep` (valid_best is never pruned)."""
    path = step_path(directory, step)
    save_atomic(state, path)
    write_text_atomic(directory / LATEST_POINTER, path.name + "\n")
    if keep and keep > 0:
        for _, old in step_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def resolve(directory: Path, name: str) -> Path | None:
    """A checkpoint by name: `valid_best`, `last`, `step-N` or a file path."""
    if name == "last":
        found = step_checkpoints(directory)
        return found[-1][1] if found else None
    candidate = Path(name) if Path(name).suffix == ".ckpt" else named_path(directory, name)
    return candidate if candidate.is_file() else None


def list_checkpoints(directory: Path) -> list[str]:
    """Names of the checkpoints in `directory`, valid_best first."""
    names = [p.stem for _, p in step_checkpoints(directory)]
    return ([BEST] if named_path(directory, BEST).is_file() else []) + names
