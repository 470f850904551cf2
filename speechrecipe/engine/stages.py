"""A problem's stage table: `@stage` marks a method as a numbered stage with a role; Problem.stages() reads
the marks along the class hierarchy. Imports no torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Stage:
    """One row of a problem's stage table."""

    number: int
    name: str
    description: str
    uses: tuple[str, ...]
    ignore: tuple[str, ...]
    resume_safe: tuple[str, ...]
    method: str
    role: str = ""  # one of ROLES: what the engine treats specially (see ROLES)
    # files it reads (names or glob patterns in the cache, else target_dir); when given, its record
    # depends on their contents instead of on every earlier stage's record
    reads: tuple[str, ...] = ()
    # under torchrun, every rank runs it (rank 0 alone runs the others; the training stage always runs on all)
    all_ranks: bool = False


# Stage roles the engine knows. "prepare": parses the corpus into the cache (its inputs include the
# corpus files themselves); "train": makes checkpoints (guarded against config changes, run by every
# torchrun rank); "evaluate": writes evaluation/ (results the report reads); "report": results/.
ROLES = ("prepare", "train", "evaluate", "report", "")


def stage(
    number: int,
    name: str,
    description: str,
    role: str = "",
    uses: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    resume_safe: tuple[str, ...] = (),
    reads: tuple[str, ...] = (),
    all_ranks: bool = False,
) -> Callable:
    """Declare a method as stage `number` with a `role` (ROLES); `uses` are the config sections it depends
    on, `reads` the files of earlier stages it reads (without `reads`, it depends on every earlier stage's
    record)."""
    if role not in ROLES:
        raise ValueError(f"@stage({number}, {name!r}): role {role!r} is not one of {ROLES}")

    if role == "report" and "report" not in uses:  # report.select / resamples / seed re-run the report alone
        uses = (*uses, "report")

    def mark(method: Callable) -> Callable:
        method._stage = Stage(number, name, description, tuple(uses), tuple(ignore), tuple(resume_safe),
                              method.__name__, role, tuple(reads), all_ranks)
        return method

    return mark
