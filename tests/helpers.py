"""Helpers several test modules share: driving and killing runs, comparing final states, the docs' walkthrough."""
from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"


def kill(process: subprocess.Popen, target: Path, last_step: int = 24) -> None:
    """SIGKILL a run that is still training: the kill must land before its last checkpoint."""
    assert process.poll() is None, "the run ended before the kill"
    assert not (target / "checkpoints" / f"step-{last_step}.ckpt").is_file(), "training had already finished"
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, process.returncode


def wait_for(path_test, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path_test():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "timed out waiting for training progress"
        time.sleep(0.001)


def final_state(target: Path, step: int = 24) -> dict:
    return torch.load(target / "checkpoints" / f"step-{step}.ckpt", weights_only=True)


def assert_identical(a: dict, b: dict) -> None:
    assert a["counters"] == b["counters"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"model tensor {name} differs"
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        for name, value in state_a[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_b[key][name])), f"optimizer {key}.{name}"


def walkthrough_files() -> dict[str, str]:
    """The code blocks of docs/architecture.md marked `file=NAME`, by NAME."""
    text = (REPO / "docs" / "architecture.md").read_text()
    return {name: body for name, body in re.findall(r"```\w+ file=(\S+)\n(.*?)```", text, flags=re.S)}


def write_walkthrough(folder: Path) -> Path:
    folder.mkdir(parents=True)
    files = walkthrough_files()
    assert set(files) == {"folders.py", "folders.yaml"}, files
    for file_name, body in files.items():
        (folder / file_name).write_text(body)
    return folder / "folders.py"
