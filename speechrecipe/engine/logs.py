"""Console and target_dir logging; console lines go through progress.write_line so progress bars stay whole."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = "speechrecipe"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleHandler(logging.StreamHandler):
    """Write records with progress.write_line, so they do not break a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from speechrecipe.progress import write_line

        try:
            write_line(self.format(record), self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_console(verbose: bool = False) -> None:
    """Console logging for the package: INFO (DEBUG with --verbose) to stderr."""
    root = logging.getLogger(ROOT)
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if isinstance(handler, ConsoleHandler):
            root.removeHandler(handler)
    handler = ConsoleHandler()
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)


class TargetLogHandler(logging.FileHandler):
    """target_dir/log.txt. A write that fails (a full disk) turns file logging off with one line on the
    console, instead of logging's traceback for every record; the run goes on or fails on its own."""

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a bad log call, not the file: logging's own report
            return super().handleError(record)
        logging.getLogger(ROOT).removeHandler(self)
        try:
            self.close()
        except OSError:  # flushing what is buffered fails the same way
            pass
        sys.stderr.write(f"warning: {self.baseFilename}: cannot write ({getattr(error, 'strerror', None) or error}); "
                         "logging to the console only\n")


def attach_file_log(path: Path) -> None:
    """Append everything, tracebacks included, to target_dir/log.txt (one file at a time)."""
    detach_file_log()
    root = logging.getLogger(ROOT)
    root.setLevel(logging.DEBUG)
    handler = TargetLogHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(handler)


def to_file(level: int, message: str) -> None:
    """A line for target_dir/log.txt only: the console gets the CLI's own line for the same thing."""
    root = logging.getLogger(ROOT)
    record = root.makeRecord(f"{ROOT}.run", level, __file__, 0, message, (), None)
    for handler in list(root.handlers):
        if isinstance(handler, TargetLogHandler):
            handler.handle(record)


def detach_file_log() -> None:
    """Stop writing to the target_dir log (a run has ended; the process may start another)."""
    root = logging.getLogger(ROOT)
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


def follower_console(rank: int) -> None:
    """torchrun ranks other than 0: warnings and errors only, each line marked with the rank."""
    for handler in logging.getLogger(ROOT).handlers:
        if isinstance(handler, ConsoleHandler):
            handler.setLevel(max(handler.level, logging.WARNING))
            handler.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s"))
