"""One live run per target_dir: a pid file, taken over when its process is gone."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from speechrecipe.errors import SpeechRecipeError

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_stale()
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(self.owner)
            return self

    def _check_stale(self) -> None:
        holder = self._holder()
        if holder and holder[1] == socket.gethostname() and _alive(holder[0]) and holder[0] != os.getpid():
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
