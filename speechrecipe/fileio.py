"""Files the toolkit writes and the digests it keeps of them: the one place for both.

Every file written in target_dir or the cache goes through `atomic_open` (directly or through
`atomic_write_text` / `atomic_write_bytes`): a temporary file beside it, fsynced and renamed over it,
so a kill or a full disk never leaves half a file. Imports no torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from speechrecipe import preemption


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """Write to a temporary file beside `path`, flush, fsync, then rename it over `path`.

    `mode` is "w" (UTF-8 text) or "wb". Whatever the writer raises (a full disk included), the
    temporary file (`path.tmp`) is removed and an earlier `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with naming(path), open(tmp, mode, encoding=None if "b" in mode else "utf-8", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        # lexists: a leftover temporary may be a dangling link; unlink removes the link, not its target
        if os.path.lexists(tmp):
            tmp.unlink()
    fsync_dir(path.parent)  # the rename itself survives a power cut
    preemption.after_write(path)  # a stage that a signal asked to stop stops here, with this file complete


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError raised inside names `path` where the system named no file (a failed write(), fsync() or close():
    a full disk), so the error line says which file."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


def write_figure(figure: Any, path: str | Path) -> None:
    """A matplotlib figure as `path` (the format its suffix names, 100 dpi), atomically."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=Path(path).suffix.lstrip(".") or "png", dpi=100)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole UTF-8 text file atomically."""
    with atomic_open(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a whole binary file atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Write JSON (non-ASCII kept as is) atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def fsync_dir(directory: str | Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str | Path) -> str:
    """sha256 hex digest of the file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def digest(data: Any) -> str:
    """Stable short hash of JSON-serialisable data."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
