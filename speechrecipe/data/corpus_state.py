"""What a prepared corpus was made from, so that editing the corpus makes stage 0 prepare it again.

Recorded in the cache as corpus.json when stage 0 prepares: the sha256 of each protocol file (split
lists, trial lists, CSVs, transcripts: small text files) and the modification time of every folder
holding a prepared audio file, with its parent folders up to the dataset root. Adding, removing or
renaming a clip changes its folder's time; editing a list changes its digest. Checking costs one
stat a folder and one read of each protocol file, not a pass over the audio. (An audio file
rewritten in place under the same name is not noticed; `--clear-cache` prepares again.)
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

from speechrecipe.data.manifest import read_jsonl
from speechrecipe.fileio import atomic_write_text, file_digest

FILE_NAME = "corpus.json"


def record(cache: Path, protocol_files: Iterable[Path], root: Path) -> None:
    """Write corpus.json for the manifests in `cache`, made from `protocol_files` under `root`."""
    state = {"files": {str(p): file_digest(p) for p in sorted(set(map(Path, protocol_files))) if p.is_file()},
             "folders": {str(d): _mtime(d) for d in sorted(_folders(cache, root))}}
    atomic_write_text(cache / FILE_NAME, json.dumps(state, indent=0))


def recorded(cache: Path) -> dict | None:
    path = cache / FILE_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def changes(state: dict) -> list[str]:
    """Why the corpus differs from `state` now (empty: it does not)."""
    edited = [p for p, sha in state["files"].items() if (file_digest(p) if os.path.isfile(p) else None) != sha]
    moved = [d for d, mtime in state["folders"].items() if _mtime(Path(d)) != mtime]
    reasons = [f"{p} changed" for p in edited[:3]] + [f"files were added or removed in {d}" for d in moved[:3]]
    more = len(edited) + len(moved) - len(reasons)
    return reasons + ([f"and {more} more"] if more > 0 else [])


def digest_now(state: dict | None, digest: Callable[[Path], str] | None = None) -> str | None:
    """A digest of the corpus as it is now, over what `state` recorded (None: nothing recorded);
    `digest` hashes one file (default: file_digest)."""
    if state is None:
        return None
    digest = digest or file_digest
    now = {"files": {p: digest(Path(p)) if os.path.isfile(p) else None for p in state["files"]},
           "folders": {d: _mtime(Path(d)) for d in state["folders"]}}
    return hashlib.sha256(json.dumps(now, sort_keys=True).encode()).hexdigest()


def _folders(cache: Path, root: Path) -> set[Path]:
    """Folders of every prepared audio file, and theirs up to `root` (only the own folder outside it)."""
    root = root.resolve()
    found: set[Path] = set()
    for manifest in cache.glob("*.jsonl"):
        for folder in {Path(row["path"]).parent for row in read_jsonl(manifest)}:
            while folder not in found:
                found.add(folder)
                if folder == root or root not in folder.parents:
                    break
                folder = folder.parent
    return found


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
