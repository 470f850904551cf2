"""Preemption: SIGUSR1 or SIGTERM (a cluster's warning before it kills or requeues a job) and Ctrl-C stop a run at
its next safe point, which leaves every file complete; the run exits with REQUEUE_EXIT (Ctrl-C: 130).

One handler per run, installed by `handling()` in the process that runs the stages. Processes forked from it
(DataLoader workers, stage 0's audio scan) inherit the handler and ignore the signal, so a signal sent to the
whole process group ends in one clean stop, made by the main process. Where the run stops:
- training (engine/trainer.py) polls `received()` after every update, saves step-N.ckpt and raises Interrupted
  (under torchrun the ranks agree on the step with the all-reduce they make every update);
- stage 3 (engine/pairs.py) stops after the result of the pair it is on;
- any other stage stops after its current atomic write (fileio.atomic_open calls `after_write`), and the runner
  stops before starting the next stage.
A second signal while the stop is under way is logged and ignored. Ctrl-C (SIGINT) is the user's: outside training
it raises KeyboardInterrupt at once, as does a second Ctrl-C in training (a temporary file being written is removed;
every complete one stays as it was). Imports no torch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from speechrecipe.errors import Interrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
_BEGAN = time.monotonic()  # the command's start: train.max_wall_secs counts from here


class _State:
    owner: int | None = None  # pid of the process whose handler acts; forked children ignore signals
    received: int | None = None
    armed: str | None = None  # the stage whose atomic writes are stop points (None: no stage is)
    training: bool = False  # Ctrl-C too waits for a safe point (elsewhere it interrupts at once, as it always did)


def handling() -> contextlib.AbstractContextManager:
    """Install the handler for the run (nested calls keep the outer one)."""
    return _installed() if _State.owner != os.getpid() else contextlib.nullcontext()


@contextlib.contextmanager
def _installed() -> Iterator[None]:
    _State.owner, _State.received = os.getpid(), None
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _State.owner = None


def _handler(signum: int, _frame) -> None:
    if os.getpid() != _State.owner:  # a forked worker: the main process decides when to stop
        return
    name = signal.Signals(signum).name
    if signum == signal.SIGINT and not _State.training and _State.received in (None, signal.SIGINT):
        raise KeyboardInterrupt  # outside training Ctrl-C stops at once: every file is written atomically anyway
    if _State.received is None:
        _State.received = signum
        log.warning("received %s: stopping at the next safe point (after this update or this write)", name)
    elif signum == signal.SIGINT and _State.received == signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C twice: stop now (a file being written is left as its .tmp, then removed)
    else:
        log.warning("received %s again while stopping: ignored; the save under way is completed", name)


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Within, the first Ctrl-C also waits for the trainer's safe point (and saves there)."""
    _State.training = True
    try:
        yield
    finally:
        _State.training = False


def received() -> int | None:
    """The signal that asked this process to stop, if any."""
    return _State.received


def elapsed_secs() -> float:
    """Seconds since the command started."""
    return time.monotonic() - _BEGAN


@contextlib.contextmanager
def armed(stage: str) -> Iterator[None]:
    """Within, every completed atomic write is a stop point (a stage that only rank 0 runs: 0, 1, 4)."""
    _State.armed = stage
    try:
        yield
    finally:
        _State.armed = None


def after_write(path: Path) -> None:
    """Called by fileio.atomic_open once `path` is complete."""
    poll(f"after writing {path}")


def poll(where: str) -> None:
    """A stop point inside an armed stage (between the chunks of a long loop that writes nothing)."""
    if _State.armed is not None:
        stop_point(f"in {_State.armed}, {where}")


def ignore_signals() -> None:
    """In a worker process (DataLoader, process pool): leave the stopping to the main process."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def stop_point(where: str, signum: int | None = None) -> None:
    """Raise Interrupted when a signal arrived (or `signum`, the one the torchrun ranks agreed on, is given)."""
    signum = signum if signum is not None else _State.received
    if signum:
        _State.armed = None
        raise Interrupted(f"stopped by {signal.Signals(signum).name} {where}; every file written is complete; "
                          "run the same command again to resume", signum)
