"""Stage completion records: what config and inputs a finished stage saw."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechrecipe.config import digest


@dataclass
class StageRecord:
    """Written when a stage finishes; compared on the next run to decide done or stale."""

    stage: int
    name: str
    deps: dict[str, Any]
    upstream: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    finished_at: float = 0.0
    config_digest: str = ""

    @property
    def id(self) -> str:
        return digest([self.deps, self.upstream, self.files])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "StageRecord | None":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.finished_at))


@dataclass
class StageState:
    """done, stale (with reasons) or pending; `resumable` when only resume-safe keys changed."""

    status: str
    reasons: list[str] = field(default_factory=list)
    resumable: bool = False
    record: StageRecord | None = None

    def describe(self) -> str:
        if self.status == "done" and self.record:
            return f"done {self.record.when} (config {self.record.config_digest})"
        if self.status == "stale":
            resume = " (training continues from the latest checkpoint)" if self.resumable else ""
            return "stale: " + "; ".join(self.reasons) + resume
        return "pending"


def compare(
    record: StageRecord | None,
    deps: dict[str, Any],
    upstream: dict[str, str],
    resume_safe: tuple[str, ...],
    file_digest,
) -> StageState:
    """The state of a stage given its record and what it would depend on now."""
    if record is None:
        return StageState("pending")
    changed = sorted(k for k in set(deps) | set(record.deps) if deps.get(k) != record.deps.get(k))
    reasons = [f"{k} {record.deps.get(k)!r} → {deps.get(k)!r}" for k in changed]
    reasons += [f"stage {s} re-ran since" for s in sorted(upstream) if record.upstream.get(s) != upstream[s]]
    for path, old in record.files.items():
        now = file_digest(Path(path)) if Path(path).is_file() else None
        if now != old:
            reasons.append(f"{path} {'changed' if now else 'is missing'}")
    if not reasons:
        return StageState("done", record=record)
    only_safe = bool(changed) and all(k in resume_safe for k in changed) and len(reasons) == len(changed)
    return StageState("stale", reasons, resumable=only_safe, record=record)
