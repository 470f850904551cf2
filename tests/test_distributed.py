"""torchrun: two CPU processes (gloo) train one model on two shards of the batches, resume exactly."""
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

from helpers import TINY, assert_identical, final_state, wait_for


STEPS = 60  # long enough (a few seconds) to be killed in the middle


def torchrun(target: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "speechrecipe", "run", "asv", "--target-dir", str(target), "-c", str(TINY),
            f"train.total_steps={STEPS}", *extra]


def run(target: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun(target, *extra), capture_output=True, text=True, timeout=600)


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted two-process run of stages 0-4."""
    target = tmp_path_factory.mktemp("ddp-reference")
    result = run(target)
    assert result.returncode == 0, result.stderr
    return target


@pytest.mark.e2e
def test_two_processes_train_on_their_shards_and_rank_0_does_the_rest(reference, tmp_path):
    log = (reference / "log.txt").read_text()
    assert "training on 2 processes (torchrun)" in log
    assert (reference / "results" / "results.json").is_file()  # stages 3-4 ran
    state = final_state(reference, STEPS)
    assert len(state["rng_ranks"]) == 2 and not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    single = tmp_path / "single"
    result = subprocess.run([sys.executable, "-m", "speechrecipe", "run", "asv", "--stop", "2", "--target-dir",
                             str(single), "-c", str(TINY), f"train.total_steps={STEPS}"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # two shards of 8 clips per update: the model sees other batches than one process would
    one, two = final_state(single, STEPS)["model"], state["model"]
    assert any(not torch.equal(one[k], two[k]) for k in one)
    events = [json.loads(line) for line in (reference / "train_log.jsonl").read_text().splitlines()]
    assert {e["event"] for e in events} >= {"train", "valid", "save"}  # written once, by rank 0
    assert len([e for e in events if e["event"] == "save"]) == len(set(e["step"] for e in events if e["event"] == "save"))


@pytest.mark.e2e
def test_sigkill_of_the_whole_job_resumes_bit_identical(reference, tmp_path):
    process = subprocess.Popen(torchrun(tmp_path, "--stop", "2"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: (tmp_path / "checkpoints" / "step-12.ckpt").is_file() or process.poll() is not None, process)
    time.sleep(0.05)
    workers = children(process.pid)
    if process.poll() is None:  # the agent and both workers (torchrun starts each in a session of its own)
        for pid in [process.pid, *workers]:
            os.kill(pid, signal.SIGKILL)
    process.communicate()
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.01)
    assert not (tmp_path / "checkpoints" / f"step-{STEPS}.ckpt").is_file(), "training ended before the kill"
    result = run(tmp_path, "--stop", "2")
    assert result.returncode == 0, result.stderr
    assert "resuming from" in (tmp_path / "log.txt").read_text()
    assert_identical(final_state(tmp_path, STEPS), final_state(reference, STEPS))


@pytest.mark.e2e
def test_sigterm_to_torchrun_saves_one_checkpoint_and_resumes_bit_identical(reference, tmp_path):
    process = subprocess.Popen(torchrun(tmp_path, "--stop", "2"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "checkpoints" / "step-12.ckpt").is_file(), process)
    process.send_signal(signal.SIGTERM)  # torchrun passes it to both workers
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "stopped by SIGTERM at step" in stderr and "run the same command again to resume" in stderr
    stopped_at = int(stderr.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert stopped_at < STEPS and (tmp_path / "checkpoints" / f"step-{stopped_at}.ckpt").is_file()
    result = run(tmp_path, "--stop", "2")
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(tmp_path, STEPS), final_state(reference, STEPS))


def stop_and_resume(reference: Path, target: Path, deliver, env: dict | None = None) -> str:
    """Start a torchrun job, deliver SIGUSR1 at a random update with `deliver(agent)`, expect one save at a step
    every rank agreed on, resume, compare with the uninterrupted run; the stopped job's stderr."""
    process = subprocess.Popen(torchrun(target, "--stop", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **(env or {})})
    rng = random.Random(str(target))
    step = rng.choice([8, 12, 16])
    wait_for(lambda: (target / "checkpoints" / f"step-{step}.ckpt").is_file(), process)
    time.sleep(rng.uniform(0.0, 0.05))
    deliver(process)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr  # torchrun's own code for a worker that exited non-zero
    stopped_at = int(stderr.split("stopped by SIGUSR1 at step ")[1].split(";")[0])
    assert stopped_at < STEPS and (target / "checkpoints" / f"step-{stopped_at}.ckpt").is_file()
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "stop"] == [stopped_at]
    result = run(target, "--stop", "2")
    assert result.returncode == 0, result.stderr
    assert_identical(final_state(target, STEPS), final_state(reference, STEPS))
    return stderr


@pytest.mark.e2e
def test_sigusr1_forwarded_by_torchrun_saves_once_and_resumes_bit_identical(reference, tmp_path):
    """torchrun forwards SIGUSR1 only when told to (README, Preemption): --signals-to-handle, or its variable
    PET_SIGNALS_TO_HANDLE; torch before that option read TORCHELASTIC_SIGNALS_TO_HANDLE."""
    signals = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
    stop_and_resume(reference, tmp_path, lambda agent: agent.send_signal(signal.SIGUSR1),
                    env={"PET_SIGNALS_TO_HANDLE": signals, "TORCHELASTIC_SIGNALS_TO_HANDLE": signals})


@pytest.mark.e2e
def test_sigusr1_to_the_workers_process_groups_saves_once_and_resumes_bit_identical(reference, tmp_path):
    """As Slurm signals every process of a job step: each worker's session (torchrun starts one per worker)."""
    def deliver(agent: subprocess.Popen) -> None:
        for pid in children(agent.pid):
            os.killpg(pid, signal.SIGUSR1)

    stderr = stop_and_resume(reference, tmp_path, deliver)
    assert f"exitcode  : {REQUEUE_EXIT}" in stderr  # torchrun exits 1; its summary names the workers' code


@pytest.mark.e2e
def test_a_failure_on_rank_0_before_training_stops_every_rank_with_its_message(tmp_path):
    result = run(tmp_path, "prepare_data.dataset_root=/nonexistent")
    assert result.returncode != 0
    assert "error: prepare_data.dataset_root: /nonexistent does not exist" in result.stderr
    assert "error: rank 0 stopped with an error; this rank stops with it" in result.stderr


@pytest.mark.e2e
def test_a_parameter_without_gradient_names_find_unused_parameters(tmp_path):
    package = tmp_path / "pkg" / "spare"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "problems.py").write_text(
        "import torch\n"
        "from speechrecipe.problems.asv import ASV\n\n"
        "class SpareASV(ASV):\n"
        "    def build_downstream(self, conf, input_dim):\n"
        "        net = super().build_downstream(conf, input_dim)\n"
        "        net.spare = torch.nn.Linear(2, 2)  # trainable, never used by the loss\n"
        "        return net\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "pkg")}

    def launch(target: Path, *extra: str) -> subprocess.CompletedProcess:
        command = [arg if arg != "asv" else "spare.problems:SpareASV" for arg in torchrun(target, "--stop", "2", *extra)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)

    result = launch(tmp_path / "refused", "train.total_steps=4")
    assert result.returncode != 0
    assert "set train.find_unused_parameters=true" in result.stderr
    result = launch(tmp_path / "allowed", "train.total_steps=4", "train.find_unused_parameters=true")
    assert result.returncode == 0, result.stderr


@pytest.mark.e2e
def test_two_ranks_equal_one_process_accumulating_two_batches_bit_for_bit(tmp_path):
    """Rank r of 2 takes batches r, r+2, ...; one process with gradient_accumulate=2 takes the same
    pairs in one update. DDP averages (g0 + g1) / 2 and the single process sums g0 / 2 + g1 / 2,
    equal in floating point, so the ks linear probe (no batch norm, no dropout) ends identical."""
    steps = ("--stop", "2", "train.total_steps=20", "train.eval_step=20", "train.save_step=20",
             "build_downstream.name=probe")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "speechrecipe", "run", "ks", "--target-dir", str(tmp_path / "ddp"), *steps],
                         capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun sets for each of its processes
    one = subprocess.run([sys.executable, "-m", "speechrecipe", "run", "ks", "--target-dir", str(tmp_path / "one"), *steps,
                          "train.gradient_accumulate=2"], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr
    a = torch.load(tmp_path / "ddp" / "checkpoints" / "step-20.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "checkpoints" / "step-20.ckpt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
