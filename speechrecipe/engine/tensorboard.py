"""TensorBoard event files beside train_log.jsonl (`train.tensorboard: true`, the optional extra
`pip install 'speechrecipe[tensorboard]'`): the train and valid scalars of train_log.jsonl.

train_log.jsonl is the record; the event files are derived from it. A run (re)starting at step S
rewrites them from train_log.jsonl's events up to S, each step once, then appends as it trains: a
run killed after step S logged steps beyond S that the resumed run logs again, and TensorBoard
would otherwise show those steps twice.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from speechrecipe.errors import ConfigError

KINDS = ("train", "valid")
NOT_SCALARS = ("event", "step", "time", "metric", "higher_better")


def require_tensorboard() -> None:
    """One line naming the fix when the extra is missing (checked before any stage runs)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard: the tensorboard package is not installed; "
                          "pip install 'speechrecipe[tensorboard]', or set train.tensorboard=false")


class TensorBoardLog:
    """Scalars of train/valid events as `<kind>/<name>` at their step."""

    def __init__(self, log_dir: Path, train_log: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        shutil.rmtree(log_dir, ignore_errors=True)
        self.writer = SummaryWriter(str(log_dir), flush_secs=10)
        for event in logged_events(train_log, start_step):
            self.write(event)

    def write(self, event: dict[str, Any]) -> None:
        if event.get("event") not in KINDS:
            return
        for name, value in event.items():
            if name not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{event['event']}/{name}", value, event["step"])

    def close(self) -> None:
        self.writer.close()


def logged_events(train_log: Path, up_to_step: int) -> list[dict[str, Any]]:
    """train/valid events of train_log.jsonl at steps <= up_to_step, the last of each (kind, step)."""
    if not train_log.is_file():
        return []
    found: dict[tuple[str, int], dict] = {}
    for line in train_log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if event.get("event") in KINDS and event.get("step", up_to_step + 1) <= up_to_step:
            found[(event["event"], event["step"])] = event
    return sorted(found.values(), key=lambda e: (e["step"], KINDS.index(e["event"])))
