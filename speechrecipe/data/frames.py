"""Samples of dumped features (the `precomputed` upstream): a row's frames, looked up by utterance id.

The batch carries the frames under "feats" [B, frames, layers, dim] in the dump's dtype and "feat_lens" in
frames (data/batch_keys.py): the upstream's input, which for `precomputed` is features. Training
crops are taken in frames (`crop_secs` × frames per second), so normalisation done by the upstream
(cmn) covers the whole utterance, not the crop; see docs/architecture.md.
"""
from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig

from speechrecipe.data.batch_keys import FEATURES, PRECOMPUTED
from speechrecipe.data.feature_shards import FeatureShards, dump_folder, same_audio
from speechrecipe.errors import ConfigError, DataError
from speechrecipe.fileio import digest

KEY = "build_upstream.precomputed.path"
log = logging.getLogger(__name__)
_CHECKED: set[tuple] = set()  # (dump, its plan, the rows) found made from the same audio in this process


@dataclass
class FrameClip:
    """A row's dumped frames and labels; with `crop_secs`, a random crop in frames (training).

    `repeat_short`: shorter utterances are repeated to fill the crop (asv's RandomCrop); otherwise
    they are used whole (the classifiers' Clip with max_secs)."""

    shards: FeatureShards
    label_keys: tuple[str, ...] = ()
    labels: Callable[[dict], dict] | None = None
    crop_secs: float | None = None
    repeat_short: bool = False

    @property
    def inputs_per_second(self) -> float:
        """Frames per second of audio: what batch lengths and evaluation budgets count."""
        return self.shards.frame_rate

    def find_length(self, row: dict) -> int:
        return self.shards.frames(row["id"])

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        return {"id": row["id"], "frames": self._frames(row, rng), **(self.labels(row) if self.labels else {})}

    def _frames(self, row: dict, rng: random.Random) -> np.ndarray:
        total = self.shards.frames(row["id"])
        if self.crop_secs is None:
            return self.shards.get(row["id"])
        want = int(self.crop_secs * self.shards.frame_rate)
        if total > want:
            return self.shards.get(row["id"], rng.randrange(total - want + 1), want)
        frames = self.shards.get(row["id"])
        if self.repeat_short and total < want:
            frames = np.concatenate([frames] * -(-want // max(total, 1)))[:want]
        return frames

    def collate_fn(self, samples: list[dict]) -> dict:
        lens = [len(s["frames"]) for s in samples]
        first = samples[0]["frames"]
        padded = np.zeros((len(samples), max(lens), *first.shape[1:]), dtype=first.dtype)
        for i, sample in enumerate(samples):
            padded[i, : lens[i]] = sample["frames"]
        data, lengths = FEATURES
        batch = {"ids": [s["id"] for s in samples], data: torch.from_numpy(padded),
                 lengths: torch.tensor(lens, dtype=torch.long), "audio_seconds": sum(lens) / self.inputs_per_second}
        for key in self.label_keys:
            batch[key] = torch.tensor([s[key] for s in samples], dtype=torch.long)
        return batch

    def make_batch(self, rows: list[dict], seeds: list[int]) -> dict:
        return self.collate_fn([self.preprocessing(row, random.Random(seed)) for row, seed in zip(rows, seeds)])


@dataclass
class TranscribedFrames(FrameClip):
    """asr from a dump: a row's whole frames and, with `tokenize`, its token ids padded with 0 into "targets"
    [B, L] with "target_lens" (as data/preprocessors.py's TranscribedUtterance does for waveforms)."""

    tokenize: Callable[[str], list[int]] | None = None

    def preprocessing(self, row: dict, rng: random.Random) -> dict:
        from speechrecipe.data.preprocessors import with_tokens

        return with_tokens(super().preprocessing(row, rng), row, self.tokenize)

    def collate_fn(self, samples: list[dict]) -> dict:
        from speechrecipe.data.preprocessors import with_targets

        return with_targets(super().collate_fn(samples), samples, self.tokenize)


def precomputed(upstream_conf: DictConfig, rows: list[dict] | None = None) -> FeatureShards | None:
    """The dump `build_upstream.precomputed.path` names when that upstream is chosen (else None);
    with `rows`, every row's id must be in it."""
    if upstream_conf.name != PRECOMPUTED:
        return None
    path = upstream_conf.get(PRECOMPUTED, {}).get("path")
    if not path:
        raise ConfigError(f"{KEY}: give the target_dir of a dump-feature run (build_upstream.name is precomputed)")
    folder = dump_folder(Path(str(path)))
    index = folder / "index.jsonl"
    shards = _open(str(folder), index.stat().st_mtime_ns if index.is_file() else 0)
    missing = shards.missing([row["id"] for row in rows or []])
    if missing:
        raise DataError(f"{KEY}: {len(missing)} of {len(rows)} utterances are not in the dump {folder} "
                        f"(first: {missing[0]}); dump the same corpus with the same prepare_data options")
    if rows:
        _check_made_from(folder, shards, rows)
    return shards


def _check_made_from(folder: Path, shards: FeatureShards, rows: list[dict]) -> None:
    """The dump was made from this corpus's audio (each row's length, rate and file digest), whatever its path;
    checked once per set of rows a process (validation builds its dataset again at every eval_step)."""
    key = (str(folder), shards.meta.get("plan"), digest([[r["id"], r["path"], r["num_frames"]] for r in rows]))
    if key in _CHECKED:
        return
    differ = same_audio(shards, rows)
    if differ:
        raise DataError(f"{KEY}: the dump {folder} was not made from this corpus: {differ}; dump this corpus again "
                        "(speechrecipe run dump-feature) or name its dump")
    if not any(checked[0] == str(folder) for checked in _CHECKED):  # said once a dump
        log.info("features from the dump %s (upstream %s %s, as dumped); this config's build_upstream options "
                 "other than precomputed are not used", folder, shards.meta.get("upstream"), shards.meta.get("upstream_conf"))
    _CHECKED.add(key)


@functools.lru_cache(maxsize=4)
def _open(folder: str, index_mtime: int) -> FeatureShards:
    """Opened once per version of the index: validation builds its dataset again at every eval_step."""
    return FeatureShards.open(folder, KEY)


def check_precomputed(conf: DictConfig) -> None:
    """Before any stage: a finished dump at the dataset's sample rate, and no waveform augmentation."""
    shards = precomputed(conf.build_upstream)
    if shards is None:
        return
    rate = conf.build_dataset.sample_rate
    if shards.meta["sample_rate"] != rate:
        raise ConfigError(f"{KEY}: the dump is at {shards.meta['sample_rate']} Hz, build_dataset.sample_rate is {rate}; "
                          "make them equal")
    augment = conf.build_dataset.get("augment") or {}
    # asv's keys (speed, noise and room folders) and ks's (time shift, background noise): key -> "off"
    off = {"speed_perturb": "false", "noise_dir": "null", "rir_dir": "null", "shift_ms": "0", "noise_prob": "0"}
    on = [key for key in off if augment.get(key) and key != "noise_prob"]
    if "shift_ms" in augment and augment.get("noise_prob"):  # ks mixes its corpus's noise; asv's needs noise_dir
        on.append("noise_prob")
    if on:
        raise ConfigError("build_dataset.augment: waveform augmentation needs waveforms; with precomputed features "
                          f"turn it off ({', '.join(f'{key}={off[key]}' for key in on)}) or compute features on the fly")
