"""target_dir/last_run.json: which stage the latest run that ran a stage is in, and how that run ended.

`speechrecipe status` reads it: the stage a live run is in; a run that failed, where and why; a run that
stopped without a word (SIGKILL, a power cut: the file still says "running" and its pid is gone). Written when a
stage begins and when that run ends; a run that runs no stage (everything up to date, a refused config) leaves
it as it was. Imports no torch.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from speechrecipe.fileio import atomic_write_json

log = logging.getLogger(__name__)

FILE = "last_run.json"


def begin_stage(target_dir: Path, number: int, name: str) -> None:
    atomic_write_json(Path(target_dir) / FILE, {"pid": os.getpid(), "stage": number, "name": name, "state": "running",
                                                "at": time.time()})


def end(target_dir: Path, state: str, summary: str = "") -> None:
    """state: "finished", "failed" or "interrupted", with the line that says where and why. Best effort: a run
    that fails on a full disk reports its own error, not this file's."""
    last = read(target_dir) or {}
    try:
        atomic_write_json(Path(target_dir) / FILE, {**last, "state": state, "summary": summary, "at": time.time()})
    except OSError as err:
        log.debug("could not write %s: %s", Path(target_dir) / FILE, err)


def read(target_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(target_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "stage" in data else None
