"""The shared prepared-data cache: who is using a cache folder, clearing it safely, and knowing it complete.

Several experiments (target_dirs) share `cache_dir/<problem>/<key>/`. Each run holds a shared flock
on `cache_dir/<problem>/.locks/<key>` for as long as it runs (a `CacheLease`); preparing a folder
again needs it exclusively, and `--clear-cache` deletes only the folders nobody holds, so it never
pulls the data from under a live run. The kernel drops a killed run's flock, so no lease goes stale.
Beside each lock, `<key>.<pid>` names the holder's target_dir, for messages.

Runs of one folder take turns from their start until their stage 0 is done or skipped (`<key>.prepare`, an
exclusive flock taken before the shared one): one at a time plans, builds what is built on first use and
prepares or reuses the folder, so runs started together on a fresh cache prepare it once, and a shared hold that
refuses preparing the folder again is always a run past its stage 0, one that reads the folder.

A folder is complete when `files.json` (the size and sha256 of every file prepare wrote) matches what
is there; an incomplete folder is prepared again, never reused. Imports no torch.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from speechrecipe.errors import DataError
from speechrecipe.fileio import atomic_write_text, file_digest
from speechrecipe.process import pid_alive

log = logging.getLogger(__name__)

LOCKS = ".locks"
FILES = "files.json"  # written by mark_complete, before summary.json
_NOT_LISTED = {FILES, "summary.json", "corpus.json"}  # written after the listing, or the listing itself


def _lock_path(cache_root: Path, key: str) -> Path:
    return Path(cache_root) / LOCKS / key


def holders(cache_root: Path, key: str, but: int | None = None) -> list[str]:
    """'target_dir (pid N)' of each live run holding a lease on this folder, except pid `but`."""
    found = []
    for info in sorted((Path(cache_root) / LOCKS).glob(f"{key}.*")):
        pid = info.name.rpartition(".")[2]
        if pid.isdigit() and int(pid) != but and pid_alive(int(pid)):
            try:
                found.append(f"{info.read_text(encoding='utf-8')} (pid {pid})")
            except OSError:
                continue
    return found


def _flock(fd: int, how: int, waiting: str) -> None:
    """flock(fd, how); when another process holds it, say so (`waiting`) before waiting for it."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("%s", waiting)
        fcntl.flock(fd, how)


class CacheLease:
    """A run's hold on its cache folder: shared while it runs, exclusive while it prepares the folder. `turns`:
    taken in turns until end_turn() (its prepared folder); False for a shared folder it only reads (a mini corpus)."""

    def __init__(self, cache_root: Path, key: str, user: str, turns: bool = True):
        self.cache_root, self.key, self.user, self.turns = Path(cache_root), key, user, turns
        self.lock = _lock_path(cache_root, key)
        self.info = self.lock.with_name(f"{key}.{os.getpid()}")
        self.fd: int | None = None
        self.turn_fd: int | None = None

    def __enter__(self) -> "CacheLease":
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        if self.turns:
            self.turn_fd = os.open(self.lock.with_name(f"{self.key}.prepare"), os.O_RDWR | os.O_CREAT, 0o666)
            _flock(self.turn_fd, fcntl.LOCK_EX, f"waiting for another run to finish preparing or checking {self.cache_root / self.key}")
        self.fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o666)
        _flock(self.fd, fcntl.LOCK_SH, f"waiting for another run to finish preparing or clearing {self.cache_root / self.key}")
        atomic_write_text(self.info, self.user)
        return self

    def end_turn(self) -> None:
        """Stage 0 is done or skipped: let the next run of this folder check it (this one keeps its shared hold)."""
        if self.turn_fd is not None:
            os.close(self.turn_fd)  # releases the flock
            self.turn_fd = None

    def __exit__(self, *exc) -> None:
        self.end_turn()
        self.info.unlink(missing_ok=True)
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None

    @contextmanager
    def exclusive(self, why: str) -> Iterator[None]:
        """Hold the folder alone (to prepare it again); refuse while another live run uses it."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self.fd, fcntl.LOCK_SH)  # a refused upgrade drops the shared lock: take it again
            users = holders(self.cache_root, self.key, but=os.getpid()) or ["another run"]
            raise DataError(f"{self.cache_root / self.key} must be prepared again ({why}), but {', '.join(users)} "
                            "is using it; wait for that run to finish, or give this one another --cache-dir") from None
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_SH)


@contextmanager
def exclusive_use(lease: CacheLease | None, why: str) -> Iterator[None]:
    """lease.exclusive(why), or nothing for a problem run without a lease (library use, tests)."""
    if lease is None:
        yield
    else:
        with lease.exclusive(why):
            yield


@contextmanager
def building(cache_root: Path, name: str) -> Iterator[None]:
    """One process at a time builds `cache_root/name` (something several prepared folders read, e.g. a corpus
    generated on first use): the others wait, then find it built."""
    lock = _lock_path(cache_root, f"{name}.build")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _flock(fd, fcntl.LOCK_EX, f"waiting for another run building {Path(cache_root) / name}")
        yield
    finally:
        os.close(fd)


def clear_cache(cache_root: Path) -> None:
    """Delete every prepared folder of this problem that no live run holds; name the ones kept."""
    cache_root = Path(cache_root)
    if not cache_root.is_dir():
        return
    for leftover in cache_root.glob(".deleting-*"):  # a clear that was killed half-way
        shutil.rmtree(leftover, ignore_errors=True)
    for stray in [p for p in cache_root.iterdir() if not p.is_dir() and not p.name.startswith(".")]:
        stray.unlink()  # not a prepared folder: nobody leases it
    for folder in sorted(p for p in cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        lock = _lock_path(cache_root, folder.name)
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                users = holders(cache_root, folder.name) or ["another run"]
                log.warning("--clear-cache: kept %s: %s is using it", folder, ", ".join(users))
                continue
            trash = folder.with_name(f".deleting-{folder.name}-{os.getpid()}")
            folder.rename(trash)  # gone from its name at once; the deletion itself may take a while
            shutil.rmtree(trash, ignore_errors=True)
            log.info("--clear-cache: deleted %s", folder)
        finally:
            os.close(fd)


def mark_complete(folder: Path) -> None:
    """Record the size and sha256 of every file in `folder` (subfolders are their own business)."""
    files = {p.name: [p.stat().st_size, file_digest(p)]
             for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name not in _NOT_LISTED}
    atomic_write_text(Path(folder) / FILES, json.dumps(files, indent=1))


def incomplete(folder: Path) -> list[str]:
    """Why `folder` is not the complete result of a preparation ([] when it is)."""
    try:
        listed = json.loads((Path(folder) / FILES).read_text())
    except (OSError, ValueError):
        return [f"{FILES} is missing or unreadable"]
    problems = []
    for name, (size, sha) in listed.items():
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != size or file_digest(path) != sha:
            problems.append(f"{name} changed")
    return problems
