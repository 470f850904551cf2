"""asv training crops: "fixed" (every crop crop_secs long, repeating short files) and "max" (s3prl's
max_secs: crop only longer files, never repeat), on real audio files."""
from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrecipe.data.manifest import longer_than
from speechrecipe.data.preprocessors import RandomCrop

RATE = 16000


def write_row(tmp_path, name: str, secs: float) -> tuple[dict, torch.Tensor]:
    """A float wav whose samples all differ (a ramp), so any stretch of it is found at one place only."""
    frames = int(secs * RATE)
    samples = np.linspace(-0.9, 0.9, frames, dtype=np.float32)
    path = tmp_path / f"{name}.wav"
    sf.write(path, samples, RATE, subtype="FLOAT")
    row = {"id": name, "path": str(path), "num_frames": frames, "sample_rate": RATE, "channels": 1, "duration": secs}
    return row, torch.from_numpy(samples)


def crop(mode: str, row: dict, seed: int, secs: float = 2.0) -> torch.Tensor:
    return RandomCrop(RATE, (), secs, mode=mode).preprocessing(row, random.Random(seed))["wav"]


def offset_in(whole: torch.Tensor, part: torch.Tensor) -> int:
    """Where `part` lies in `whole` as one contiguous stretch (the ramp's samples are distinct)."""
    (where,) = torch.nonzero(whole == part[0], as_tuple=True)
    assert where.numel() == 1
    start = int(where[0])
    assert torch.equal(whole[start : start + part.numel()], part)
    return start


def test_max_mode_keeps_a_short_utterance_whole_without_repetition(tmp_path):
    row, audio = write_row(tmp_path, "short", 1.3)
    for seed in range(3):
        wav = crop("max", row, seed)
        assert wav.numel() == audio.numel()  # not repeated up to 2 s, not cut
        assert torch.equal(wav, audio)


def test_fixed_mode_repeats_a_short_utterance_to_the_crop_length(tmp_path):
    row, audio = write_row(tmp_path, "short", 1.3)
    wav = crop("fixed", row, 0)
    assert wav.numel() == 2 * RATE
    assert torch.equal(wav[: audio.numel()], audio)
    assert torch.equal(wav[audio.numel() :], audio[: 2 * RATE - audio.numel()])  # the repetition


@pytest.mark.parametrize("mode", ["fixed", "max"])
def test_both_modes_crop_a_long_utterance_at_a_seeded_random_start(tmp_path, mode):
    row, audio = write_row(tmp_path, "long", 5.0)
    starts = set()
    for seed in range(6):
        wav = crop(mode, row, seed)
        assert wav.numel() == 2 * RATE
        starts.add(offset_in(audio, wav))
        assert torch.equal(wav, crop(mode, row, seed))  # same seed, same crop
    assert len(starts) == 6


def test_batch_pads_max_mode_crops_to_the_longest(tmp_path):
    rows = [write_row(tmp_path, name, secs)[0] for name, secs in (("a", 1.0), ("b", 1.5), ("c", 3.0))]
    cropper = RandomCrop(RATE, (), 2.0, mode="max")
    batch = cropper.make_batch(rows, [0, 1, 2])
    assert batch["wavs"].shape == (3, 2 * RATE)
    assert batch["wav_lens"].tolist() == [RATE, int(1.5 * RATE), 2 * RATE]
    assert [cropper.find_length(r) for r in rows] == [RATE, int(1.5 * RATE), 2 * RATE]  # what bucketing sorts by
    assert not batch["wavs"][0, RATE:].any() and not batch["wavs"][1, int(1.5 * RATE) :].any()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="crop mode 'repeat'"):
        RandomCrop(RATE, (), 2.0, mode="repeat")


def test_min_secs_keeps_only_longer_utterances():
    rows = [{"id": str(n), "num_frames": n, "sample_rate": RATE} for n in (RATE, 2 * RATE, 2 * RATE + 1)]
    assert [r["id"] for r in longer_than(rows, 2.0)] == [str(2 * RATE + 1)]
    assert longer_than(rows, 0.0) == rows


def test_unknown_crop_mode_is_a_config_error_before_any_stage(cli, tmp_path):
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "build_dataset.crop_mode=repeat")
    assert result.exit_code == 2
    assert "build_dataset.crop_mode: 'repeat' is not one of fixed, max" in result.stderr
    assert not (tmp_path / "exp" / "records").exists()


@pytest.mark.e2e
def test_min_secs_leaving_no_utterance_is_one_clear_line(cli, tmp_path):
    result = cli("run", "asv", "--stop", "2", "--target-dir", tmp_path / "exp", "build_dataset.min_secs=60")
    assert result.exit_code == 1
    assert "build_dataset.min_secs=60: no training utterance is longer; lower it" in result.stderr
