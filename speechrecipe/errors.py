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


class Interrupted(SpeechRecipeError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved. exit_code is 128 + signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
