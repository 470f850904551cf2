"""Issue 14: a live run's `status` (progress, ETA, the lock's process) and TensorBoard event files across a kill."""
from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
# checkpoints at 12 and 24 only: a kill after step 14 leaves logged steps that the resumed run logs again
TRAIN = ("-c", str(TINY), "--stop", "2", "train.log_step=2", "train.save_step=12", "train.eval_step=12",
         "train.tensorboard=true")


def command(target: Path) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "run", "asv", "--target-dir", str(target), *TRAIN]


def train_steps(target: Path) -> list[int]:
    log = target / "train_log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [json.loads(l)["step"] for l in lines[:-1] if '"event": "train"' in l]  # the last line may be half written


def scalar_steps(log_dir: Path) -> Counter:
    """(tag, step) → how often the event files hold it."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found: Counter = Counter()
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                found[(value.tag, event.step)] += 1
    return found


def status(target: Path) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "speechrecipe", "status", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.e2e
def test_status_of_a_live_run_and_tensorboard_steps_once_after_a_kill(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (make install installs it)")
    process = subprocess.Popen(command(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(step >= 14 for step in train_steps(tmp_path)):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)  # held between steps 14 and 24, however fast the machine trains
    lines = status(tmp_path)
    assert f"run: live (pid {process.pid}), in stage 2 (train)" in lines
    (training,) = [l for l in lines if l.startswith("training: ")]
    assert f" of 24, loss " in training and " utt/s, " in training and ", ETA " in training, training
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-12.ckpt"
    assert f"run: none live (the lock's pid {process.pid} is no longer running)" in status(tmp_path)

    result = subprocess.run(command(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    logged = Counter(train_steps(tmp_path))
    assert logged[14] == 2, logged  # train_log.jsonl holds steps 14.. from both sessions
    found = scalar_steps(tmp_path / "tensorboard")
    assert sorted(step for tag, step in found if tag == "train/loss") == list(range(2, 25, 2))
    assert sorted(step for tag, step in found if tag == "valid/eer") == [12, 24]
    assert set(found.values()) == {1}, [k for k, n in found.items() if n > 1]


@pytest.mark.e2e
def test_tensorboard_without_the_package_says_how_to_install_it(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "train.tensorboard=true")
    assert result.exit_code == 2
    assert [l for l in result.stderr.splitlines() if l.startswith("error: ")] == [
        "error: train.tensorboard: the tensorboard package is not installed; pip install 'speechrecipe[tensorboard]', "
        "or set train.tensorboard=false"]
    assert not (tmp_path / "exp" / "checkpoints").exists()
