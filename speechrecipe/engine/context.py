"""What the command line gives a run besides its config. Imports no torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunContext:
    """Runtime settings from the command line, not part of the experiment's config."""

    device: str = "auto"
    num_workers: int | None = None  # None: the config's train.num_workers
    force: bool = False
    redo: int | None = None  # --redo N: stage N runs again from scratch
    command: str = ""  # the command line of this run, as a user would type it again (experiment.json keeps it)
