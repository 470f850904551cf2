"""SIGUSR1/SIGTERM outside training: a stage ends after its current atomic write, stage 3 after its current pair,
with the requeue exit code; the same command then continues. (Training: tests/test_resume.py, test_distributed.py.)"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from speechrecipe import preemption
from speechrecipe.errors import REQUEUE_EXIT, Interrupted
from speechrecipe.fileio import atomic_write_text

from helpers import TINY, wait_for

CHECKPOINTS = "evaluate.test_ckpt_steps=[step-4,step-8,step-12,step-16,step-20,step-24]"


def test_an_armed_stage_stops_after_its_current_write_with_the_file_complete(tmp_path):
    with preemption.handling():
        with preemption.armed("stage 0 (prepare data)"):
            atomic_write_text(tmp_path / "a.txt", "a")  # no signal yet: carries on
            os.kill(os.getpid(), signal.SIGUSR1)
            with pytest.raises(Interrupted) as stopped:
                atomic_write_text(tmp_path / "b.txt", "b")
    assert stopped.value.exit_code == REQUEUE_EXIT
    assert "stopped by SIGUSR1 in stage 0 (prepare data), after writing" in str(stopped.value)
    assert (tmp_path / "b.txt").read_text() == "b" and not (tmp_path / "b.txt.tmp").exists()


def test_writes_outside_an_armed_stage_are_not_stop_points(tmp_path):
    with preemption.handling():
        os.kill(os.getpid(), signal.SIGTERM)
        atomic_write_text(tmp_path / "a.txt", "a")  # training's own saves: the trainer decides
        assert preemption.received() == signal.SIGTERM
        with pytest.raises(Interrupted):
            preemption.stop_point("before stage 3 (evaluate)")


def test_ctrl_c_interrupts_at_once_outside_training_and_waits_for_the_update_in_it():
    with preemption.handling():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs as os.kill returns
    with preemption.handling(), preemption.training():
        os.kill(os.getpid(), signal.SIGINT)
        assert preemption.received() == signal.SIGINT  # the trainer saves after this update, then raises
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: at once
            os.kill(os.getpid(), signal.SIGINT)


def test_a_forked_process_ignores_the_signal_its_parent_handles():
    with preemption.handling():
        pid = os.fork()
        if pid == 0:  # a DataLoader worker, the audio scan's pool: the main process decides
            os.kill(os.getpid(), signal.SIGUSR1)
            os._exit(0 if preemption.received() is None else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert preemption.received() is None


def command(target: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "run", "asv", "--target-dir", str(target), "-c", str(TINY),
            CHECKPOINTS, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Stages 0-4, uninterrupted, evaluating six checkpoints."""
    target = tmp_path_factory.mktemp("trained")
    result = subprocess.run(command(target), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return target


@pytest.mark.e2e
def test_sigusr1_during_stage_3_stops_after_a_pair_and_the_rerun_continues(trained, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    shutil.rmtree(target / "evaluation")
    shutil.rmtree(target / "results")
    for record in ("stage-3.json", "stage-4.json"):
        (target / "records" / record).unlink()
    process = subprocess.Popen(command(target), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for(lambda: any((target / "evaluation").glob("*/voxceleb1_o.json")), process)
    os.killpg(process.pid, signal.SIGUSR1)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == REQUEUE_EXIT, stderr
    assert "stopped by SIGUSR1 in stage 3 after the result of step-" in stderr
    done = sorted(p.parent.name for p in (target / "evaluation").glob("*/voxceleb1_o.json"))
    assert 0 < len(done) < 6 and not (target / "records" / "stage-3.json").exists()
    result = subprocess.run(command(target), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert all(f"{name} on voxceleb1_o: already evaluated; skipping" in result.stderr for name in done)
    for path in (trained / "evaluation").rglob("*"):
        if path.is_file() and path.name != "latest.json":  # latest.json lists absolute paths
            assert path.read_bytes() == (target / path.relative_to(trained)).read_bytes(), path
