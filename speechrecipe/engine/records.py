"""Stage completion records: what config and inputs a finished stage saw."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechrecipe.fileio import atomic_write_text, digest

MISSING = "missing"  # the digest of an input file that is not there (yet)
# How a stage's config dependencies are chosen: 2, the standard stages of engine/recipe.py depend on every key
# but the ones it names (records made before say 1: their stages depended on listed sections).
DEPENDENCY_RULES = 2


@dataclass
class StageRecord:
    """Written when a stage finishes; compared on the next run to decide done or stale."""

    stage: int
    name: str
    deps: dict[str, Any]
    inputs: dict[str, str]  # what it read: an earlier stage's record id or a file's sha256, by name
    files: dict[str, str] = field(default_factory=dict)
    finished_at: float = 0.0
    config_digest: str = ""
    # where target_dir and the cache were ({"target": ..., "cache": ...}), so a copied target_dir
    # or another --cache-dir finds the recorded files where they are now
    roots: dict[str, str] = field(default_factory=dict)
    rules: int = 1  # DEPENDENCY_RULES when written; records without the field are older

    @property
    def id(self) -> str:
        """Identifies what the stage produced; the same wherever target_dir and the cache lie."""
        files = {_portable(path, self.roots): sha for path, sha in self.files.items()}
        return digest([self.deps, self.inputs, files])

    def where_now(self, path: str, roots: dict[str, str]) -> Path:
        """A recorded file's path under today's roots (target_dir or cache may have moved)."""
        found = _split(path, self.roots)
        if found and found[0] in roots:
            return Path(roots[found[0]]) / found[1]
        return Path(path)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1, default=str))

    @classmethod
    def load(cls, path: Path) -> "StageRecord | None":
        try:
            data = json.loads(path.read_text())
            if "upstream" in data:  # the field's name in records written before
                data["inputs"] = data.pop("upstream")
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.finished_at))


def _split(path: str, roots: dict[str, str]) -> tuple[str, str] | None:
    """(root name, path relative to it) for the innermost root holding `path`, or None."""
    for name, root in sorted(roots.items(), key=lambda item: -len(item[1])):
        if Path(path).is_relative_to(root):
            return name, Path(path).relative_to(root).as_posix()
    return None


def _portable(path: str, roots: dict[str, str]) -> str:
    found = _split(path, roots)
    return f"${found[0]}/{found[1]}" if found else path


CORPUS = "corpus"  # stage 0's input: the corpus files it prepared from (data/corpus_state.py)
CACHE_FOLDER = "cache folder"  # stage 0's output folder: the cache key (prepare_data and the cache layout)


def _input_changed(key: str, now: str | None) -> str | None:
    """Why an input differs: an earlier stage's record (key: its number) or a file it reads (key: its name)."""
    if key.isdigit():
        return f"stage {key} re-ran since"
    if key == CORPUS:  # not prepared now (another cache key, or deleted): the other reasons say why
        return "the corpus changed since it was prepared" if now else None
    if key == CACHE_FOLDER:
        return "its cache folder is another one now (another prepare_data or cache layout)"
    return f"{key} is missing" if now in (None, MISSING) else f"{key} changed"


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
    inputs: dict[str, str] | None,
    resume_safe: tuple[str, ...],
    file_digest,
    roots: dict[str, str] | None = None,
) -> StageState:
    """The state of a stage given its record and what it would depend on now (files under `roots`)."""
    if record is None:
        return StageState("pending")
    if record.rules != DEPENDENCY_RULES and record.deps != deps:  # chosen otherwise: comparing them would mislead
        return StageState("stale", [f"recorded by an earlier speechrecipe (dependency rules {record.rules}, now "
                                    f"{DEPENDENCY_RULES}); it runs again and reuses what it can"], record=record)
    changed = sorted(k for k in set(deps) | set(record.deps) if deps.get(k) != record.deps.get(k))
    reasons = [f"{k} {record.deps.get(k)!r} → {deps.get(k)!r}" for k in changed]
    if inputs is not None:  # None: an earlier stage runs first, so its inputs cannot be judged yet
        # a changed config key also moves the cache folder: name the folder only when nothing else explains it
        why = [_input_changed(k, inputs.get(k)) for k in sorted(set(inputs) | set(record.inputs))
               if record.inputs.get(k) != inputs.get(k) and not (k == CACHE_FOLDER and changed)]
        reasons += [reason for reason in why if reason]
    differ: dict[str, list[Path]] = {"changed": [], "missing": []}
    for recorded, old in record.files.items():
        path = record.where_now(recorded, roots or {})
        now = file_digest(path) if path.is_file() else None
        if now != old:
            differ["changed" if now else "missing"].append(path)
    for how, paths in differ.items():
        if len(paths) == 1:
            reasons.append(f"{paths[0]} {'changed' if how == 'changed' else 'is missing'}")
        elif paths:
            reasons.append(f"{len(paths)} files it wrote are {how} (first: {paths[0]})")
    if not reasons:
        return StageState("done", record=record)
    only_safe = bool(changed) and all(k in resume_safe for k in changed) and len(reasons) == len(changed)
    return StageState("stale", reasons, resumable=only_safe, record=record)
