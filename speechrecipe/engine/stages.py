"""A problem's stage table: `@stage` marks a method as a numbered stage with a role; Problem.stages() reads
the marks along the class hierarchy. Imports no torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Keys that change no number a run produces (speed, logging, where to resume from, when to validate and
# save and which checkpoint to keep: the weights of every step stay the same). No stage depends on them.
RUNTIME_KEYS = (
    "prepare_data.num_workers",
    "train.num_workers",
    "train.prefetch_batches",
    "train.log_step",
    "train.tensorboard",
    "train.eval_step",
    "train.save_step",
    "train.keep_num_ckpts",
    "train.auto_resume",
    "train.resume_ckpt_dir",
    "train.valid_metric",
    "train.valid_higher_better",
    "train.max_nonfinite_updates",
    "train.max_wall_secs",
    "train.find_unused_parameters",
)
# Keys that may change while training continues from the latest checkpoint.
TRAIN_RESUME_SAFE = ("train.total_steps",)
TRAIN_IGNORED = RUNTIME_KEYS  # its name in plug-ins written before the standard stages (engine/recipe.py)


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
