"""One live run per target_dir."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from speechrecipe.engine.lock import TargetLock
from speechrecipe.errors import SpeechRecipeError


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
