"""Packed clips (data/packed.py), the batched fetch, and the prefetch thread of the 0-worker trainer."""
from __future__ import annotations

import json
import pickle
import random
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrecipe.data.audio import read_audio
from speechrecipe.data.clips import Clip, FieldLabels
from speechrecipe.data.dataset import ManifestDataset, make_loader
from speechrecipe.data.packed import open_or_build
from speechrecipe.data.sampler import EpochBatchSampler
from speechrecipe.data.prefetch import Prefetch
from speechrecipe.errors import DataError, RunFailure

RATE = 16000


def write(path: Path, frames: int, seed: int, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, frames).astype("float32"), rate, subtype=subtype)
    return path


def manifest(tmp_path: Path, rows: list[dict], name: str = "train") -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def clip_rows(tmp_path: Path) -> list[dict]:
    """Clips of different lengths, and a `_silence_`-style crop of a long file (a row with a start)."""
    rows = [{"id": f"c{i}", "path": str(write(tmp_path / f"c{i}.wav", 1200 + 300 * i, seed=i)),
             "num_frames": 1200 + 300 * i, "sample_rate": RATE, "label": "ab"[i % 2]} for i in range(5)]
    noise = write(tmp_path / "noise.wav", 3 * RATE, seed=9)
    rows.append({"id": "silence0", "path": str(noise), "start": 5000, "num_frames": 1600, "sample_rate": RATE,
                 "label": "a"})
    return rows


LABELS = FieldLabels(("label",), ({"a": 0, "b": 1},))


@pytest.mark.parametrize("max_secs", [None, 0.1])
def test_packed_clips_and_batches_equal_reading_the_files(tmp_path, max_secs):
    rows = clip_rows(tmp_path)
    packed = open_or_build(rows, manifest(tmp_path, rows), tmp_path / "packed", RATE)
    assert packed.dtype == np.int16  # 16-bit PCM at the target rate stays 16-bit on disk
    files, pack = Clip(RATE, ("labels",), LABELS, max_secs), Clip(RATE, ("labels",), LABELS, max_secs, packed)
    for row in rows:
        a, b = files.preprocessing(row, random.Random(3)), pack.preprocessing(row, random.Random(3))
        assert torch.equal(a["wav"], b["wav"]) and a["labels"] == b["labels"], row["id"]
    seeds = [11, 12, 13, 14, 15, 16]
    a, b = files.make_batch(rows, seeds), pack.make_batch(rows, seeds)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key], key


def test_float_and_other_rate_audio_is_packed_as_float32_at_the_target_rate(tmp_path):
    rows = [{"id": "f", "path": str(write(tmp_path / "f.wav", 1600, 1, subtype="FLOAT")), "num_frames": 1600,
             "sample_rate": RATE},
            {"id": "r", "path": str(write(tmp_path / "r.wav", 800, 2, rate=8000)), "num_frames": 800,
             "sample_rate": 8000}]
    packed = open_or_build(rows, manifest(tmp_path, rows), tmp_path / "packed", RATE)
    assert packed.dtype == np.float32
    for row in rows:
        assert np.array_equal(packed.clip(row["id"]), read_audio(row["path"], sample_rate=RATE).numpy())
    assert len(packed.clip("r")) == 1600


def test_pack_is_reused_rebuilt_when_unfinished_and_keyed_by_the_manifest(tmp_path):
    rows = clip_rows(tmp_path)
    path = manifest(tmp_path, rows)
    first = open_or_build(rows, path, tmp_path / "packed", RATE)
    samples = first.stem.with_suffix(".samples")
    built = samples.stat().st_mtime_ns
    assert open_or_build(rows, path, tmp_path / "packed", RATE).stem == first.stem
    assert samples.stat().st_mtime_ns == built  # found, not built again
    first.stem.with_suffix(".json").unlink()  # as if killed before the pack was complete
    orphan = first.stem.parent / f".{first.stem.name}.999999999.samples"  # a dead build's temporary
    orphan.write_bytes(b"x")
    again = open_or_build(rows, path, tmp_path / "packed", RATE)
    assert np.array_equal(again.clip("c1"), first.clip("c1"))
    edited = manifest(tmp_path, rows[:3])
    assert open_or_build(rows[:3], edited, tmp_path / "packed", RATE).stem != first.stem
    assert not [p for p in (tmp_path / "packed").iterdir() if p.name.startswith(".")]  # no temporary left


def test_repeated_row_ids_are_refused(tmp_path):
    rows = clip_rows(tmp_path)[:2]
    rows[1] = {**rows[1], "id": rows[0]["id"]}
    with pytest.raises(DataError, match="row ids repeat.*pack_audio=false"):
        open_or_build(rows, manifest(tmp_path, rows), tmp_path / "packed", RATE)


def test_a_pickled_pack_maps_the_file_instead_of_copying_it(tmp_path):
    rows = clip_rows(tmp_path)
    packed = open_or_build(rows, manifest(tmp_path, rows), tmp_path / "packed", RATE)
    packed.clip("c0")  # maps the samples
    blob = pickle.dumps(packed)
    assert len(blob) < packed.stem.with_suffix(".samples").stat().st_size
    assert np.array_equal(pickle.loads(blob).clip("c4"), packed.clip("c4"))


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [0, 1])
def test_loader_batches_are_the_same_with_and_without_workers_and_pack(tmp_path, workers):
    rows = clip_rows(tmp_path)
    packed = open_or_build(rows, manifest(tmp_path, rows), tmp_path / "packed", RATE)
    sampler = EpochBatchSampler([r["num_frames"] for r in rows], seed=5, batch_size=2, drop_last=True)

    def batches(clip: Clip, n: int) -> list[dict]:
        loader = iter(make_loader(ManifestDataset(rows, clip), sampler, workers, epoch=1, position=1, endless=True))
        return [next(loader) for _ in range(n)]

    for a, b in zip(batches(Clip(RATE, ("labels",), LABELS, 0.05), 5), batches(Clip(RATE, ("labels",), LABELS, 0.05, packed), 5)):
        assert a["ids"] == b["ids"] and torch.equal(a["wavs"], b["wavs"]) and torch.equal(a["labels"], b["labels"])


def test_prefetch_keeps_order_raises_at_the_failing_item_and_stops_on_close():
    def failing():
        yield from range(5)
        raise DataError("bad clip")

    items = Prefetch(failing())
    assert [next(items) for _ in range(5)] == list(range(5))
    with pytest.raises(DataError, match="bad clip"):
        next(items)
    with pytest.raises(DataError):  # the end is sticky
        next(items)

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    items = Prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    count = len(made)
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(made) == count <= 4  # made at most `depth` ahead, and nothing after close


def test_a_file_that_cannot_be_decoded_is_named(tmp_path):
    rows = clip_rows(tmp_path)[:2]
    Path(rows[1]["path"]).write_bytes(b"RIFF....WAVEfmt garbage")
    for order in (rows, rows[::-1]):  # found while packing, or already when choosing the sample type
        with pytest.raises(DataError, match=r"c1.wav: cannot be decoded for packing .*check_audio=full"):
            open_or_build(order, manifest(tmp_path, order), tmp_path / "packed", RATE)
    assert not [p for p in (tmp_path / "packed").iterdir() if p.suffix != ".lock"]  # nothing half-written left


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_packing_is_one_line_and_leaves_no_pack(tmp_path, monkeypatch):
    rows = clip_rows(tmp_path)
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):  # the samples file lands on a full disk
        if str(path).endswith(".samples") and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(RunFailure, match=r"could not write the pack of .*train.jsonl .*No space left on device; free space"):
        open_or_build(rows, manifest(tmp_path, rows), tmp_path / "packed", RATE)
    monkeypatch.undo()
    assert not [p for p in (tmp_path / "packed").iterdir() if p.suffix != ".lock"]
