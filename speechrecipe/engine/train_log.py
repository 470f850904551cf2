"""Reading train_log.jsonl: where training stands and how fast it went. Imports no torch.

The trainer appends one JSON line per event: "start" (a training session begins), "train" (a log
step: loss, rates), "valid", "save", "resume", "nonfinite"; each with its step and time. A session
killed after its last checkpoint leaves events that the resumed session logs again: readers keep
the last event of each (kind, step).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def read_events(train_log: Path) -> list[dict[str, Any]]:
    """Every event in order (a line cut short by a kill is skipped); [] without a log."""
    if not train_log.is_file():
        return []
    events = []
    for line in train_log.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@dataclass
class Progress:
    """Where training stands, from its log."""

    step: int
    total_steps: int | None
    loss: float | None
    utt_per_s: float | None
    steps_per_s: float | None  # over the current session's log steps
    wall_s: float | None  # summed over sessions, from each start to its last event

    @property
    def eta_s(self) -> float | None:
        if not self.steps_per_s or self.total_steps is None or self.step >= self.total_steps:
            return None
        return max(self.total_steps - self.step, 0) / self.steps_per_s


def progress(events: list[dict[str, Any]]) -> Progress | None:
    """The latest step, loss and rates, the session's speed and the training wall time; None before any event."""
    if not events:
        return None
    sessions = _sessions(events)
    current = sessions[-1]
    trains = [e for e in current if e["event"] == "train"]
    last = trains[-1] if trains else next((e for e in reversed(events) if e["event"] == "train"), {})
    starts = [e for e in events if e["event"] == "start"]
    total = starts[-1].get("total_steps") if starts else None
    return Progress(step=max(e["step"] for e in current), total_steps=total, loss=last.get("loss"),
                    utt_per_s=last.get("utt_per_s"), steps_per_s=_speed(trains), wall_s=_wall(sessions))


def utt_per_s(events: list[dict[str, Any]]) -> float | None:
    """Mean training throughput over the log steps (each step once)."""
    unique = {e["step"]: e["utt_per_s"] for e in events if e["event"] == "train" and "utt_per_s" in e}
    return sum(unique.values()) / len(unique) if unique else None


def _sessions(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    sessions: list[list[dict]] = [[]]
    for event in events:
        if event["event"] == "start" and sessions[-1]:
            sessions.append([])
        sessions[-1].append(event)
    return sessions


def _speed(trains: list[dict[str, Any]]) -> float | None:
    timed = [e for e in trains if "time" in e]
    if len(timed) < 2 or timed[-1]["time"] <= timed[0]["time"]:
        return None
    return (timed[-1]["step"] - timed[0]["step"]) / (timed[-1]["time"] - timed[0]["time"])


def _wall(sessions: list[list[dict[str, Any]]]) -> float | None:
    spans = [s[-1]["time"] - s[0]["time"] for s in sessions if s and s[0]["event"] == "start" and "time" in s[-1]]
    return sum(spans) if spans else None


def best_validation(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best validation of the log (what valid_best holds): {metric, value, step, higher_better}; None before one."""
    valids = {e["step"]: e for e in events if e.get("event") == "valid"}  # the last of each step
    if not valids:
        return None
    last = valids[max(valids)]
    metric, higher = last["metric"], last["higher_better"]
    scored = [e for e in valids.values() if e.get(metric) is not None]
    if not scored:
        return None
    best = (max if higher else min)(scored, key=lambda e: e[metric])
    return {"metric": metric, "value": best[metric], "step": best["step"], "higher_better": higher}
