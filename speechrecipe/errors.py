"""Errors the CLI turns into one line on stderr and an exit code."""
from __future__ import annotations


class SpeechRecipeError(Exception):
    """A failure we can explain in one line; the message names the key or file and the fix."""

    exit_code = 1


class ConfigError(SpeechRecipeError):
    """Bad usage or configuration: unknown key, wrong type, missing value, bad stage range."""

    exit_code = 2


class DataError(SpeechRecipeError):
    """The corpus or an input file is missing or unusable."""

    exit_code = 1


class RunFailure(SpeechRecipeError):
    """A stage failed while running (non-finite loss, disk full, ...)."""

    exit_code = 1


# "Stopped early, every file complete: run the same command again" (sysexits.h's EX_TEMPFAIL), after SIGUSR1,
# SIGTERM or train.max_wall_secs: a batch script requeues the job on it (README, "Preemption").
REQUEUE_EXIT = 75


class Interrupted(SpeechRecipeError):
    """A signal (or train.max_wall_secs) stopped the run at a safe point (speechrecipe/preemption.py).

    exit_code: 130 after Ctrl-C (SIGINT: the user stopped it), else REQUEUE_EXIT."""

    def __init__(self, message: str, signum: int):
        import signal

        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signal.SIGINT if signum == signal.SIGINT else REQUEUE_EXIT


def describe(err: BaseException) -> str:
    """The one line a failure is reported with: ours as raised, an OSError's file and fix, else type and message."""
    if isinstance(err, SpeechRecipeError):
        return str(err)
    if os_error_in(err) is not None:  # a full disk, a read-only folder: say which file and what to do
        return describe_os_error(os_error_in(err))
    return f"{type(err).__name__}: {err}"


def os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind `err` (itself, or one it was raised from or during), else None.

    torch.save reports a failed write as RuntimeError("[enforce fail at inline_container.cc...]")
    raised while handling the OSError that says what really happened.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def describe_os_error(err: OSError) -> str:
    """One line: the file, what the system said, and what to do."""
    import errno

    # fileio writes through `<name>.tmp`: name the file the user knows
    reason = err.strerror or str(err)
    if err.filename:
        where = str(err.filename).removesuffix(".tmp")
    else:  # every writer names its file (fileio.naming); should one not, the traceback in log.txt does
        where, reason = "a write", f"{reason} (the system named no file; the traceback in log.txt shows which)"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there (or use another --target-dir / --cache-dir) and run the same command again"
    elif err.errno == errno.EFBIG:
        advice = "the file size limit (ulimit -f) was reached; raise it and run the same command again"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make it writable or choose another --target-dir / --cache-dir"
    else:
        advice = "fix that and run the same command again"
    return f"{where}: {reason}; {advice}"
