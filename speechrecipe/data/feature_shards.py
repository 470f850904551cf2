"""Dumped features: large shard files plus an index, written resumably and read memory-mapped.

A dump is a folder:

    features.json          what was dumped: upstream, dtype, frame rate, layers, dim, plan digest
    shard-00000.bin        the features of a run of utterances, back to back, C order
    shard-00000.json       that shard's index entries (written after its .bin: it marks the shard done)
    index.jsonl            every entry, in shard order (written last: it marks the dump complete)

An entry is {"id", "shard", "offset" (bytes), "shape" ([frames, layers, dim]), "dtype", "num_samples",
"audio"}; "audio" records what it was made from: the manifest row's `num_frames`, `sample_rate` and `start`
and the sha256 of its audio file, so a reader can refuse a dump of another version of the corpus
(`same_audio`). features.json holds the sample rate and the upstream's settings.
Which utterances go into which shard is a pure function of the manifest rows and `shard_secs`
(`plan_shards`), and every shard is computed in the same batches whoever computes it, so a
resumed or a multi-process dump writes the same bytes as one uninterrupted process.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from speechrecipe.data.manifest import read_jsonl, write_jsonl
from speechrecipe.fileio import atomic_open, atomic_write_text
from speechrecipe.errors import ConfigError, DataError

FOLDER = "features"  # a dump's folder inside the dump-feature target_dir
META = "features.json"
INDEX = "index.jsonl"
DTYPES = ("float16", "float32")


def dump_folder(target_dir: Path) -> Path:
    return Path(target_dir).expanduser() / FOLDER


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def plan_shards(rows: list[dict], shard_secs: float) -> list[list[dict]]:
    """Rows sorted by id, cut into consecutive runs of at least `shard_secs` of audio (the last may be shorter)."""
    shards: list[list[dict]] = [[]]
    seconds = 0.0
    for row in sorted(rows, key=lambda r: r["id"]):
        if seconds >= shard_secs:
            shards.append([])
            seconds = 0.0
        shards[-1].append(row)
        seconds += row_seconds(row)
    return [s for s in shards if s]


def row_seconds(row: dict) -> float:
    return int(row["num_frames"]) / int(row["sample_rate"])


def batches_of(rows: list[dict], batch_secs: float) -> list[list[dict]]:
    """Length-sorted batches of one shard under a padded-audio budget (longest × count ≤ batch_secs)."""
    ordered = sorted(rows, key=lambda r: (row_seconds(r), r["id"]))
    out: list[list[dict]] = []
    for row in ordered:
        if out and row_seconds(row) * (len(out[-1]) + 1) <= batch_secs:
            out[-1].append(row)
        else:
            out.append([row])
    return out


class ShardWriter:
    """Appends utterance features to one shard; `close` makes it visible (bin, then its index)."""

    def __init__(self, folder: Path, number: int, dtype: str):
        self.folder, self.number, self.dtype = Path(folder), number, dtype
        self.entries: list[dict] = []
        self._bin = atomic_open(self.folder / f"{shard_name(number)}.bin", "wb")
        self._file: IO = self._bin.__enter__()
        self._offset = 0

    def add(self, utt: str, feats: np.ndarray, num_samples: int, audio: dict | None = None) -> None:
        """feats [frames, layers, dim], stored as this writer's dtype; `audio`: what they were made from
        (`audio_source` of the manifest row)."""
        data = np.ascontiguousarray(feats, dtype=self.dtype)
        self._file.write(data.tobytes())
        self.entries.append({"id": utt, "shard": self.number, "offset": self._offset, "shape": list(data.shape),
                             "dtype": self.dtype, "num_samples": int(num_samples), "audio": audio})
        self._offset += data.nbytes

    def close(self, plan: str) -> None:
        self._bin.__exit__(None, None, None)
        atomic_write_text(self.folder / f"{shard_name(self.number)}.json", json.dumps({"plan": plan, "entries": self.entries}))

    def abort(self) -> None:
        """Leave no partial shard (the temporary file is removed)."""
        self._bin.__exit__(RuntimeError, RuntimeError("aborted"), None)


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) → sha256: each file hashed once a process


def audio_digest(path: str | Path) -> str:
    """sha256 of an audio file's bytes, remembered while the file is unchanged (size and mtime)."""
    from speechrecipe.fileio import file_digest

    stat = os.stat(path)
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


def audio_source(row: dict) -> dict:
    """What a manifest row's features are made from: its span of which audio (a file's sha256, not its path,
    so a byte-identical copy of the corpus elsewhere is the same corpus)."""
    return {"num_frames": int(row["num_frames"]), "sample_rate": int(row["sample_rate"]),
            "start": int(row.get("start", 0)), "sha256": audio_digest(row["path"])}


def same_audio(shards: "FeatureShards", rows: list[dict]) -> str:
    """"" when every row's audio is what the dump was made from, else what differs (how many, the first)."""
    differ = []
    for row in rows:
        made_from = shards.entries[row["id"]].get("audio")
        if made_from is None:
            return "it does not record the audio it was made from (dumped by an older speechrecipe)"
        mine = audio_source(row)
        for key, what in (("sample_rate", "Hz"), ("num_frames", "samples"), ("start", "start"), ("sha256", "sha256")):
            if made_from[key] != mine[key]:
                differ.append(f"{row['id']}: {made_from[key]} {what} in the dump, {mine[key]} in the manifest ({row['path']})")
                break
    if differ:
        return f"{len(differ)} of {len(rows)} utterances are other audio than it was made from (first: {differ[0]})"
    return ""


def finished_shard(folder: Path, number: int, plan: str) -> list[dict] | None:
    """The entries of shard `number` if it was completed under this `plan`, else None."""
    path = Path(folder) / f"{shard_name(number)}.json"
    if not path.is_file() or not (Path(folder) / f"{shard_name(number)}.bin").is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    return data["entries"] if data.get("plan") == plan else None


def write_index(folder: Path, entries: list[dict]) -> Path:
    write_jsonl(Path(folder) / INDEX, entries)
    return Path(folder) / INDEX


def read_meta(folder: Path, key: str) -> dict:
    """features.json of a finished dump, or a ConfigError naming `key` and the fix."""
    if not (folder / INDEX).is_file() or not (folder / META).is_file():
        raise ConfigError(f"{key}: {folder} holds no finished feature dump ({INDEX} is missing); "
                          "run `speechrecipe run dump-feature` with that target_dir first")
    return json.loads((folder / META).read_text())


@dataclass
class FeatureShards:
    """Read-only access to a finished dump; each shard is memory-mapped once, on first use."""

    folder: Path
    meta: dict
    entries: dict[str, dict]

    @classmethod
    def open(cls, folder: str | Path, key: str = "build_upstream.precomputed.path") -> "FeatureShards":
        folder = Path(folder).expanduser()
        meta = read_meta(folder, key)
        return cls(folder, meta, {e["id"]: e for e in read_jsonl(folder / INDEX)})

    def __post_init__(self) -> None:
        self._maps: dict[int, np.memmap] = {}

    @property
    def frame_rate(self) -> float:
        """Frames per second of audio."""
        return self.meta["sample_rate"] / self.meta["hop_samples"]

    def frames(self, utt: str) -> int:
        return int(self.entries[utt]["shape"][0])

    def get(self, utt: str, start: int = 0, count: int = -1) -> np.ndarray:
        """Frames [start, start + count) of an utterance ([frames, layers, dim]; count -1: to the end), a view."""
        entry = self.entries[utt]
        shape = entry["shape"]
        count = shape[0] - start if count < 0 else count
        return self._array(entry)[start : start + count]

    def _array(self, entry: dict) -> np.ndarray:
        shard = entry["shard"]
        if shard not in self._maps:
            path = self.folder / f"{shard_name(shard)}.bin"
            size = path.stat().st_size
            self._maps[shard] = np.memmap(path, dtype=np.uint8, mode="r", shape=(size,)) if size else np.zeros(0, np.uint8)
        itemsize = np.dtype(entry["dtype"]).itemsize
        nbytes = int(np.prod(entry["shape"])) * itemsize
        raw = self._maps[shard][entry["offset"] : entry["offset"] + nbytes]
        if raw.size != nbytes:
            raise DataError(f"{self.folder / shard_name(shard)}.bin is shorter than its index says "
                            f"({entry['id']}); dump again with --force or another target_dir")
        return raw.view(entry["dtype"]).reshape(entry["shape"])

    def missing(self, ids: list[str]) -> list[str]:
        return [u for u in ids if u not in self.entries]

    def __getstate__(self) -> dict:  # DataLoader workers map the shards themselves
        return {"folder": self.folder, "meta": self.meta, "entries": self.entries}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._maps = {}


def shard_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("shard-*.bin"))


def total_bytes(folder: Path) -> int:
    return sum(os.path.getsize(p) for p in shard_files(folder))
