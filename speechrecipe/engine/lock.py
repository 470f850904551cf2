"""One live run per target_dir: a pid file, taken over when its process is gone."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from speechrecipe.errors import SpeechRecipeError
from speechrecipe.process import pid_alive

log = logging.getLogger(__name__)


class TargetLock:
    """Context manager holding `path` for this process (torchrun: rank 0 only)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.owner = f"{os.getpid()}@{socket.gethostname()}"

    def _holder(self) -> tuple[int, str] | None:
        try:
            pid, _, host = self.path.read_text().strip().partition("@")
            return int(pid), host
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "TargetLock":
        # the lock appears with its owner already written (link of a finished file), so a second
        # run never reads an empty lock and mistakes a starting run for a dead one
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.owner)
        try:
            while True:
                try:
                    os.link(tmp, self.path)
                    return self
                except FileExistsError:
                    self._check_stale()
        finally:
            tmp.unlink(missing_ok=True)

    def _check_stale(self) -> None:
        holder = self._holder()
        if holder and holder[1] == socket.gethostname() and pid_alive(holder[0]) and holder[0] != os.getpid():
            raise SpeechRecipeError(
                f"{self.path.parent} is in use by a live run (pid {holder[0]}); "
                "wait for it to finish or use another --target-dir"
            )
        if holder and holder[1] != socket.gethostname():
            raise SpeechRecipeError(
                f"{self.path.parent} is locked by pid {holder[0]} on host {holder[1]}; "
                f"if that run is gone, delete {self.path}"
            )
        log.warning("taking over %s left by pid %s, which is no longer running", self.path, holder[0] if holder else "?")
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self._holder() and f"{self._holder()[0]}" == str(os.getpid()):
            self.path.unlink(missing_ok=True)
