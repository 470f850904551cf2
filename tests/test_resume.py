"""Kill training at any instant, resume, and end bit-identical to an uninterrupted run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from speechrecipe.errors import REQUEUE_EXIT

from helpers import TINY, assert_identical, final_state, kill, wait_for

# recipes/voxceleb1/asv.yaml's crops and batches: 3 s at most (the mini corpus has 1.5-5.9 s), no repetition,
# duration-bucketed batches of varying padded length
S3PRL_CROPS = ("build_dataset.crop_mode=max", "build_dataset.crop_secs=3.0", "build_dataset.min_secs=2.0",
               "build_batch_sampler.bucket=true", "build_batch_sampler.bucket_batches=4")


def command(target: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "run", "asv", "--stop", "2", "--target-dir", str(target),
            "-c", str(TINY), *extra]


def run(target: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(target, *extra), capture_output=True, text=True, timeout=600)


def start(target: Path, *extra: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(command(target, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    """Uninterrupted runs: plain, with 2 DataLoader workers, with gradient accumulation, with s3prl's crops."""
    out = {}
    for name, extra in {"plain": (), "workers": ("--num-workers", "2"), "accumulate": ("train.gradient_accumulate=3",),
                        "s3prl": S3PRL_CROPS}.items():
        target = tmp_path_factory.mktemp(f"reference-{name}")
        result = run(target, *extra)
        assert result.returncode == 0, result.stderr
        out[name] = final_state(target)
    return out


VARIANTS = {"plain": (), "workers": ("--num-workers", "2"), "accumulate": ("train.gradient_accumulate=3",),
            "prefetch": ("train.prefetch_batches=2",), "s3prl": S3PRL_CROPS}
SAME_AS = {"prefetch": "plain"}  # a prefetch thread changes only when batches are made, never which


@pytest.mark.e2e
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resume_after_sigkill_is_bit_identical(tmp_path, reference, variant):
    extra = VARIANTS[variant]
    rng = random.Random(variant)
    for step in sorted(rng.sample([4, 8, 12, 16], 2)):
        process = start(tmp_path, *extra)
        wait_for(lambda: (tmp_path / "checkpoints" / f"step-{step}.ckpt").is_file(), process)
        time.sleep(rng.uniform(0.0, 0.02))  # somewhere before the next checkpoint
        kill(process, tmp_path)
    result = run(tmp_path, *extra)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in (tmp_path / "log.txt").read_text()
    resumes = [e for e in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if e["event"] == "resume"]
    assert resumes and all(0 < e["restore_s"] <= e["seconds"] for e in resumes)  # timed up to the first new batch
    assert_identical(final_state(tmp_path), reference[SAME_AS.get(variant, variant)])


@pytest.mark.e2e
def test_kill_during_checkpoint_write_leaves_no_complete_looking_file(tmp_path, reference):
    process = start(tmp_path)
    checkpoints = tmp_path / "checkpoints"
    wait_for(lambda: checkpoints.is_dir() and any(p.suffix == ".tmp" for p in checkpoints.iterdir()), process)
    kill(process, tmp_path)
    for path in (tmp_path / "checkpoints").glob("step-*.ckpt"):
        torch.load(path, weights_only=True)  # every complete-looking checkpoint loads
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(tmp_path), reference["plain"])


@pytest.mark.e2e
def test_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    process = start(tmp_path)
    wait_for(lambda: (tmp_path / "checkpoints" / "step-12.ckpt").is_file(), process)
    kill(process, tmp_path)
    latest = max((tmp_path / "checkpoints").glob("step-*.ckpt"), key=lambda p: int(p.stem.split("-")[1]))
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"checkpoint {latest} is unreadable" in result.stderr
    assert_identical(final_state(tmp_path), reference["plain"])


@pytest.mark.parametrize("signum, code, extra", [(signal.SIGTERM, REQUEUE_EXIT, ()), (signal.SIGUSR1, REQUEUE_EXIT, ()),
                                                 (signal.SIGINT, 130, ()),
                                                 (signal.SIGINT, 130, ("train.prefetch_batches=2",))])
@pytest.mark.e2e
def test_signal_saves_a_checkpoint_and_exits_with_resume_hint(tmp_path, reference, signum, code, extra):
    process = start(tmp_path, *extra)
    wait_for(lambda: (tmp_path / "checkpoints" / "step-8.ckpt").is_file(), process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert f"stopped by {signal.Signals(signum).name} at step" in stderr
    assert "run the same command again to resume" in stderr
    stopped_at = int(stderr.split(" at step ")[1].split(";")[0])
    assert (tmp_path / "checkpoints" / f"step-{stopped_at}.ckpt").is_file()
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(tmp_path), reference["plain"])


@pytest.mark.e2e
def test_resume_from_another_run_with_resume_ckpt_dir(tmp_path, reference):
    first = tmp_path / "first"
    process = start(first)
    wait_for(lambda: (first / "checkpoints" / "step-12.ckpt").is_file(), process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    second = tmp_path / "second"
    result = run(second, f"train.resume_ckpt_dir={first / 'checkpoints'}")
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(second), reference["plain"])


def saves_for_a_stop(target: Path) -> list[dict]:
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "stop"]


@pytest.mark.e2e
@pytest.mark.parametrize("variant", ["plain", "workers"])
def test_sigusr1_to_the_process_group_saves_once_and_resumes_bit_identical(tmp_path, reference, variant):
    """Slurm's --signal=USR1 reaches every process of the job, DataLoader workers included: one save, exit 75."""
    extra = VARIANTS[variant]
    rng = random.Random(f"usr1-{variant}")
    process = start(tmp_path, *extra, start_new_session=True)
    step = rng.choice([4, 8, 12])
    wait_for(lambda: (tmp_path / "checkpoints" / f"step-{step}.ckpt").is_file(), process)
    time.sleep(rng.uniform(0.0, 0.05))  # at a random update after it
    os.killpg(process.pid, signal.SIGUSR1)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == REQUEUE_EXIT, stderr
    stopped_at = int(stderr.split("stopped by SIGUSR1 at step ")[1].split(";")[0])
    assert (tmp_path / "checkpoints" / f"step-{stopped_at}.ckpt").is_file()
    assert f"saved {tmp_path / 'checkpoints' / f'step-{stopped_at}.ckpt'} for SIGUSR1" in stderr
    assert [e["step"] for e in saves_for_a_stop(tmp_path)] == [stopped_at]  # one save, by the main process
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr
    result = run(tmp_path, *extra)
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(tmp_path), reference[variant])


@pytest.mark.e2e
def test_a_second_signal_during_the_save_is_ignored(tmp_path, reference):
    process = start(tmp_path)
    wait_for(lambda: (tmp_path / "checkpoints" / "step-8.ckpt").is_file(), process)
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: saves_for_a_stop(tmp_path) or any(p.suffix == ".tmp" for p in (tmp_path / "checkpoints").iterdir())
             or "stopping at the next safe point" in (tmp_path / "log.txt").read_text(), process)
    for _ in range(3):
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == REQUEUE_EXIT, stderr
    stopped_at = int(stderr.split("stopped by SIGUSR1 at step ")[1].split(";")[0])
    torch.load(tmp_path / "checkpoints" / f"step-{stopped_at}.ckpt", weights_only=True)
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(tmp_path), reference["plain"])


@pytest.mark.e2e
def test_max_wall_secs_saves_and_exits_for_requeue_then_resumes_bit_identical(tmp_path, reference):
    result = run(tmp_path, "train.max_wall_secs=0.001")  # passed by the first update: stops at step 1
    assert result.returncode == REQUEUE_EXIT, result.stderr
    assert "stopped by train.max_wall_secs=0.001 at step 1;" in result.stderr
    assert (tmp_path / "checkpoints" / "step-1.ckpt").is_file()
    result = run(tmp_path)  # without the limit (a runtime key: the same training)
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(tmp_path), reference["plain"])
