"""One live run per target_dir."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechrecipe.engine.lock import TargetLock
from speechrecipe.errors import SpeechRecipeError

TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"


def test_live_holder_refuses_with_its_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(f"{holder.pid}@{socket.gethostname()}")
        with pytest.raises(SpeechRecipeError, match=f"in use by a live run \\(pid {holder.pid}\\)"):
            with TargetLock(tmp_path / ".lock"):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid}@{socket.gethostname()}")
    with TargetLock(tmp_path / ".lock"):
        assert (tmp_path / ".lock").read_text().startswith(str(os.getpid()))
    assert "no longer running" in caplog.text
    assert not (tmp_path / ".lock").exists()


CONTENDER = """
import os, sys, time
from speechrecipe.engine.lock import TargetLock
from speechrecipe.engine.logs import setup_console
from speechrecipe.errors import SpeechRecipeError
setup_console()  # as the CLI does: the takeover's warning goes to the console
lock, journal, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time() - 0.05))
while time.time() < start:  # all contenders try at the same instant
    pass
try:
    with TargetLock(lock):
        with open(journal, "a") as f:
            f.write(f"in {os.getpid()}\\n")
        time.sleep(0.5)
        with open(journal, "a") as f:
            f.write(f"out {os.getpid()}\\n")
except SpeechRecipeError as err:
    print(err)
    sys.exit(3)
"""


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


@pytest.mark.e2e
def test_stale_lock_taken_over_by_exactly_one_of_many_contenders(tmp_path):
    """Several runs find the same dead pid at once: one takes the lock, the others see a live run (never two)."""
    lock, journal = tmp_path / ".lock", tmp_path / "journal"
    losers = 0
    for _ in range(12):  # the unguarded takeover let two in about 1 time in 3
        lock.write_text(f"{_dead_pid()}@{socket.gethostname()}")
        journal.write_text("")
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(lock), str(journal), str(start)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(6)]
        outcomes = [(p.wait(timeout=60), p.stdout.read()) for p in procs]
        lines = journal.read_text().splitlines()
        # holders never overlap: each "in <pid>" is followed by that pid's "out <pid>"
        for entered, left in zip(lines[0::2], lines[1::2]):
            assert entered.startswith("in ") and left == "out " + entered[3:], lines
        for code, out in outcomes:
            assert code in (0, 3), out
            assert code == 0 or "in use by a live run" in out
        assert sum(code == 0 for code, _ in outcomes) >= 1
        losers += sum(code == 3 for code, _ in outcomes)
        assert not lock.exists()
    assert losers > 0  # they did contend


def test_lock_of_a_reused_pid_is_taken_over(tmp_path, caplog):
    """The lock names a live process that started after the run that wrote it: that run is gone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(f"{other.pid}@{socket.gethostname()}\nstarted 1")
        with TargetLock(tmp_path / ".lock"):
            assert (tmp_path / ".lock").read_text().startswith(str(os.getpid()))
        assert "now belongs to another process" in caplog.text
    finally:
        other.kill()
        other.wait()


def test_live_holder_message_says_how_to_tell_and_what_to_do(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(f"{holder.pid}@{socket.gethostname()}")
        with pytest.raises(SpeechRecipeError, match=f"ps -p {holder.pid} -o args.*delete .*\\.lock"):
            with TargetLock(tmp_path / ".lock"):
                pass
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.e2e
def test_stale_lock_race_through_the_cli(cli, tmp_path):
    """Three `speechrecipe run`s started together on a target_dir whose lock names a dead pid: they run one
    at a time (log.txt shows each run's start and end in turn) or refuse with one line."""
    target, cache = tmp_path / "exp", tmp_path / "cache"
    common = ["--cache-dir", cache, "-c", TINY, "--stop", "0"]
    assert cli("run", "asv", "--target-dir", tmp_path / "warm", *common).exit_code == 0  # stage 0 reuses the cache
    target.mkdir()
    (target / ".lock").write_text(f"{_dead_pid()}@{socket.gethostname()}")
    procs = [subprocess.Popen([sys.executable, "-m", "speechrecipe", "run", "asv", "--target-dir", str(target),
                               *map(str, common)], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 0 or (proc.returncode == 1 and len(errors) == 1
                                        and "is in use by a live run" in errors[0]), stderr
    marks = [("start" if "run asv in" in line else "end")
             for line in (target / "log.txt").read_text().splitlines()
             if "run asv in" in line or "stage 0 (prepare data) done" in line or "is up to date; skipping" in line]
    assert marks and marks == ["start", "end"] * (len(marks) // 2), marks
    assert not (target / ".lock").exists()
