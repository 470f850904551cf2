"""On-the-fly augmentation (asv build_dataset.augment) on real noise and impulse-response files."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from speechrecipe.data.augment import Augmenter, build_augmenter, speed_perturb
from speechrecipe.errors import ConfigError, DataError

RATE = 16000
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"


def tone(hz: float, secs: float) -> torch.Tensor:
    t = torch.arange(int(secs * RATE)) / RATE
    return 0.5 * torch.sin(2 * torch.pi * hz * t)


def peak_hz(wav: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wav * torch.hann_window(wav.numel()))
    return float(spectrum.abs().argmax()) * RATE / wav.numel()


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """noise/: two noise recordings (one shorter than a crop); rirs/: a delayed decaying impulse response."""
    rng = np.random.default_rng(0)
    (tmp_path / "noise" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "noise" / "long.wav", rng.uniform(-0.2, 0.2, 3 * RATE).astype("float32"), RATE, subtype="PCM_16")
    sf.write(tmp_path / "noise" / "sub" / "short.flac", rng.uniform(-0.2, 0.2, RATE // 4).astype("float32"), RATE)
    rir = np.zeros(RATE // 2, dtype="float32")
    rir[100] = 1.0
    rir[101:] = 0.3 * np.exp(-np.arange(rir.size - 101) / 800) * rng.standard_normal(rir.size - 101)
    (tmp_path / "rirs").mkdir()
    sf.write(tmp_path / "rirs" / "room.wav", rir, RATE, subtype="FLOAT")
    return tmp_path / "noise", tmp_path / "rirs"


def section(**kw):
    base = dict(speed_perturb=False, speeds=[0.9, 1.0, 1.1], noise_dir=None, noise_prob=1.0, snr_db=[10.0, 10.0],
                rir_dir=None, reverb_prob=1.0)
    return OmegaConf.create({**base, **kw})


def test_everything_off_builds_no_augmenter():
    assert build_augmenter(section(), RATE) is None


def test_noise_is_added_at_the_drawn_snr(folders):
    augmenter = build_augmenter(section(noise_dir=str(folders[0])), RATE)
    assert sorted(Path(p).name for p, _ in augmenter.noises) == ["long.wav", "short.flac"]
    clean = tone(300, 2.0)
    for seed in range(6):  # both files get drawn; the short one is repeated to the crop's length
        noisy = augmenter(clean, random.Random(seed))
        noise = noisy - clean
        snr = 10 * torch.log10(clean.pow(2).mean() / noise.pow(2).mean())
        assert noisy.shape == clean.shape and float(snr) == pytest.approx(10.0, abs=1e-3)


def test_reverberation_keeps_length_and_aligns_the_direct_path(folders, tmp_path):
    clean = tone(300, 1.0) * torch.linspace(0, 1, RATE)
    room = sf.read(folders[1] / "room.wav", dtype="float32")[0]
    wet = build_augmenter(section(rir_dir=str(folders[1])), RATE)(clean, random.Random(0))
    expected = np.convolve(clean.numpy(), room / np.linalg.norm(room))[100 : 100 + RATE]  # from the RIR's peak on
    assert wet.shape == clean.shape and np.allclose(wet.numpy(), expected, atol=1e-5)
    delayed = tmp_path / "delta"
    delayed.mkdir()
    sf.write(delayed / "delta.wav", np.eye(1, 300, 250, dtype="float32")[0], RATE, subtype="FLOAT")
    assert torch.allclose(build_augmenter(section(rir_dir=str(delayed)), RATE)(clean, random.Random(0)), clean, atol=1e-5)


def test_speed_perturbation_changes_tempo_and_pitch_together():
    fast = speed_perturb(tone(400, 1.1), 1.1, RATE)
    assert fast.numel() == RATE and peak_hz(fast) == pytest.approx(440, abs=3)
    slow = speed_perturb(tone(400, 0.9), 0.9, RATE)
    assert slow.numel() == RATE and peak_hz(slow) == pytest.approx(360, abs=3)
    assert speed_perturb(tone(400, 1.0), 1.0, RATE).numel() == RATE


def test_the_same_sample_seed_gives_the_same_augmentation(folders):
    augmenter = build_augmenter(section(noise_dir=str(folders[0]), rir_dir=str(folders[1]), noise_prob=0.5,
                                        reverb_prob=0.5, snr_db=[0.0, 20.0]), RATE)
    clean = tone(300, 1.0)
    runs = [[augmenter(clean, random.Random(seed)) for seed in range(8)] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert len({round(float(w.sum()), 4) for w in runs[0]}) > 4  # the seeds differ in what they draw


def test_empty_or_bad_folders_name_the_key_and_the_file(folders, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"build_dataset.augment.noise_dir: .*empty holds no .wav or .flac files"):
        build_augmenter(section(noise_dir=str(tmp_path / "empty")), RATE)
    bad = folders[1] / "broken.wav"
    bad.write_text("not audio")
    with pytest.raises(DataError, match=r"build_dataset.augment.rir_dir: .*broken.wav: not an audio file"):
        build_augmenter(section(rir_dir=str(folders[1])), RATE)


@pytest.mark.e2e
def test_training_with_every_augmentation_is_reproducible(folders, tmp_path):
    """Two runs of the CLI with speed perturbation, noise and reverberation end with identical weights."""
    noise, rirs = folders
    states = []
    for name in ("a", "b"):
        target = tmp_path / name
        command = [sys.executable, "-m", "speechrecipe", "run", "asv", "--stop", "2", "--target-dir", str(target),
                   "-c", str(TINY), "train.total_steps=4", "train.save_step=4", "train.eval_step=4",
                   "build_dataset.augment.speed_perturb=true", f"build_dataset.augment.noise_dir={noise}",
                   f"build_dataset.augment.rir_dir={rirs}", "train.num_workers=2"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        states.append(torch.load(target / "checkpoints" / "step-4.ckpt", weights_only=False)["model"])
    assert states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])

    missing = subprocess.run([sys.executable, "-m", "speechrecipe", "run", "asv", "--target-dir", str(tmp_path / "c"),
                              "-c", str(TINY), f"build_dataset.augment.noise_dir={tmp_path / 'nowhere'}"],
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "build_dataset.augment.noise_dir: " in missing.stderr
    assert not (tmp_path / "c" / "records").exists()  # refused before any stage ran
