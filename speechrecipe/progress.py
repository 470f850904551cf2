"""Progress of long loops: a tqdm bar on a terminal, plain lines in a file or a pipe. The one place that
imports tqdm: every progress display, and the console log lines written beside a bar, go through here.

A redrawing bar written to a log file or a pipe is one endless line of carriage returns and cursor
escapes; there, `progress` prints one plain line at each `set_postfix` (the trainer calls it every
`train.log_step` updates), at every tenth of the total, and at the end.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False, tenths: bool = True, **tqdm_options: Any):
    """tqdm(...) when stderr is a terminal, else a PlainProgress with the same few methods
    (`tenths=False`: plain lines only at set_postfix and the end, e.g. every train.log_step)."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                    dynamic_ncols=True, **tqdm_options)
    return PlainProgress(iterable, total, desc, unit, initial, disable or None, tenths)


def write_line(text: str, stream: IO) -> None:
    """One whole line on `stream`, above a live bar if there is one (bars are drawn on terminals only)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        tqdm.write(text, file=stream)
    else:
        stream.write(text + "\n")
        stream.flush()


class PlainProgress:
    """The part of tqdm's interface the toolkit uses, printing whole lines to stderr."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str, initial: int,
                 disable: bool | None, tenths: bool = True):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n, self.disable, self.tenths = initial, bool(disable), tenths
        self.started = time.monotonic()
        self._tenth = self._tenths(initial)
        self._printed_at = initial

    def _tenths(self, n: int) -> int:
        return 10 * n // self.total if self.total else 0

    def _line(self, postfix: str = "") -> None:
        if self.disable:
            return
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        share = f" ({100 * self.n // self.total}%)" if self.total else ""
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"{self.desc}: {self.unit} {count}{share}, {elapsed:.0f} s{postfix}\n")
        sys.stderr.flush()
        self._printed_at = self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.tenths and self.total and self._tenths(self.n) > self._tenth:
            self._tenth = self._tenths(self.n)
            if self.n < self.total:  # the end is printed by close
                self._line()

    def set_postfix(self, **values: Any) -> None:
        self._line(" " + " ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        if self.n != self._printed_at:
            self._line()
        self._printed_at = self.n

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
