"""One live run per target_dir: a pid file, taken over when its process is gone.

The lock file appears with its owner already written (a hard link of a finished file), so no run
ever reads an empty lock. Taking over a stale lock happens under an flock on target_dir itself:
two runs that find the same dead pid cannot both delete the lock and both go on, one of them
deletes it and links its own, the other then finds a live owner.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from speechrecipe.errors import RunFailure, SpeechRecipeError
from speechrecipe.process import pid_alive, process_start

log = logging.getLogger(__name__)


class Holder(NamedTuple):
    pid: int
    host: str
    started: str | None  # the process's start time when it took the lock (None: not recorded)

    def alive(self) -> bool:
        """Its process still runs (on this host): the pid is live and was not reused since."""
        if not pid_alive(self.pid):
            return False
        now = process_start(self.pid)
        return not (self.started and now and now != self.started)


def read_holder(path: Path) -> Holder | None:
    """Who holds the lock file at `path` ("pid@host", then "started <time>"); None: no readable lock."""
    try:
        first, *rest = Path(path).read_text().strip().splitlines()
        pid, _, host = first.partition("@")
        started = rest[0].removeprefix("started ").strip() if rest else None
        return Holder(int(pid), host, started)
    except (OSError, ValueError):
        return None


@contextmanager
def _takeover_guard(directory: Path) -> Iterator[None]:
    """Exclusive flock on `directory` while a stale lock is checked and removed (released if we die)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: the link below still admits one run at a time
            log.debug("no flock on %s", directory)
        yield
    finally:
        os.close(fd)  # releases the flock


class TargetLock:
    """Context manager holding `path` for this process (torchrun: rank 0 only)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.host = socket.gethostname()
        started = process_start(os.getpid())
        self.owner = f"{os.getpid()}@{self.host}" + (f"\nstarted {started}" if started else "")

    def _holder(self) -> Holder | None:
        return read_holder(self.path)

    def __enter__(self) -> "TargetLock":
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.owner)
        except OSError as err:  # the first write into target_dir
            tmp.unlink(missing_ok=True)
            raise RunFailure(f"{self.path.parent}: cannot write there ({err.strerror or err}); make it writable, "
                             "free space there, or choose another --target-dir") from None
        try:
            while True:
                try:
                    os.link(tmp, self.path)
                    return self
                except FileExistsError:
                    with _takeover_guard(self.path.parent):
                        self._remove_if_stale()
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_if_stale(self) -> None:
        """Delete the lock if its run is gone; raise if it is live. Call under _takeover_guard."""
        holder = self._holder()
        if holder is None:
            if self.path.exists():  # unreadable or garbage: no run wrote it
                log.warning("taking over %s, which names no run", self.path)
                self.path.unlink(missing_ok=True)
            return
        if holder.host != self.host:
            raise SpeechRecipeError(
                f"{self.path.parent} is locked by pid {holder.pid} on host {holder.host}; "
                f"if that run is gone, delete {self.path}"
            )
        if holder.pid == os.getpid():
            log.warning("taking over %s, left by an earlier run in this process", self.path)
        elif pid_alive(holder.pid):
            if holder.alive():
                raise SpeechRecipeError(
                    f"{self.path.parent} is in use by a live run (pid {holder.pid}); wait for it to finish or use "
                    f"another --target-dir (if `ps -p {holder.pid} -o args` shows no speechrecipe run, "
                    f"delete {self.path})"
                )
            log.warning("taking over %s: pid %d now belongs to another process (started after the run "
                        "that took the lock)", self.path, holder.pid)
        else:
            log.warning("taking over %s left by pid %d, which is no longer running", self.path, holder.pid)
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        holder = self._holder()
        if holder and holder.pid == os.getpid():
            self.path.unlink(missing_ok=True)
