"""The prepared-data cache shared by experiments: --clear-cache leaves a folder a live run uses, a
folder that must be prepared again while another run uses it is refused, an incomplete folder is
prepared again (never reused)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechrecipe.errors import REQUEUE_EXIT

TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
QUICK = ("-c", str(TINY), "train.total_steps=4", "train.save_step=2", "train.eval_step=4")


def prepared_folders(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "asv").iterdir() if p.is_dir() and not p.name.startswith("."))


def error_line(result) -> str:
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


@pytest.mark.e2e
def test_incomplete_cache_folder_is_prepared_again(cli, tmp_path):
    target, cache = tmp_path / "exp", tmp_path / "cache"
    assert cli("run", "asv", "--target-dir", target, "--cache-dir", cache, *QUICK, "--stop", "1").exit_code == 0
    (folder,) = prepared_folders(cache)
    trials = (folder / "trials_valid.tsv").read_bytes()
    (folder / "trials_valid.tsv").unlink()
    result = cli("run", "asv", "--target-dir", target, "--cache-dir", cache, *QUICK, "--stop", "1")
    assert result.exit_code == 0, result.stderr
    assert f"cache folder {folder} is incomplete (trials_valid.tsv is missing); preparing it again" in result.stderr
    assert "reusing it" not in result.stderr
    assert (folder / "trials_valid.tsv").read_bytes() == trials


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "timed out"
        time.sleep(0.3)


def _events(target: Path, kind: str) -> list[dict]:
    log = target / "train_log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@pytest.mark.e2e
def test_clear_cache_leaves_the_folder_a_live_run_uses(cli, tmp_path):
    cache, live, other = tmp_path / "cache", tmp_path / "live", tmp_path / "other"
    # a second folder, which nobody uses: --clear-cache deletes it
    assert cli("run", "asv", "--target-dir", other, "--cache-dir", cache, *QUICK, "prepare_data.valid_count=3",
               "--stop", "0").exit_code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechrecipe", "run", "asv", "--target-dir", str(live), "--cache-dir", str(cache),
         "-c", str(TINY), "train.total_steps=2000", "train.eval_step=4", "train.log_step=2", "--stop", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _events(live, "valid"), proc)  # training, and validating from the cache
        result = cli("run", "asv", "--target-dir", other, "--cache-dir", cache, *QUICK, "prepare_data.valid_count=3",
                     "--stop", "0", "--clear-cache")
        assert result.exit_code == 0, result.stderr
        record = (live / "records" / "stage-0.json").read_text()
        (live_folder,) = [f for f in prepared_folders(cache) if f.name in record]
        assert f"--clear-cache: kept {live_folder}: {live.resolve()} (pid {proc.pid}) is using it" in result.stderr
        assert "--clear-cache: deleted" in result.stderr  # the other one (prepared again by this run)

        # preparing the live run's folder again (it is incomplete now) is refused while that run uses it
        (live_folder / "test_voxceleb1_o.jsonl").unlink()
        refused = cli("run", "asv", "--target-dir", tmp_path / "third", "--cache-dir", cache, *QUICK, "--stop", "0")
        assert refused.exit_code == 1
        assert error_line(refused).startswith(f"error: {live_folder} must be prepared again")
        assert f"{live.resolve()} (pid {proc.pid}) is using it" in error_line(refused)

        done = len(_events(live, "valid"))
        _wait_for(lambda: len(_events(live, "valid")) > done, proc)  # it validates again after the clear
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == REQUEUE_EXIT, stderr
    assert "FileNotFoundError" not in stderr and "Traceback" not in stderr


@pytest.mark.e2e
def test_two_runs_started_together_on_a_fresh_cache_build_the_mini_corpus_once(tmp_path):
    """Issue 23.2: diarization builds its mini corpus on first use; two runs started together on a fresh cache
    both succeed, one building the corpus and preparing the folder, the other waiting and then reusing both."""
    cache = tmp_path / "cache"
    tiny = Path(__file__).parent / "fixtures" / "tiny_diarization.yaml"
    runs = [subprocess.Popen([sys.executable, "-m", "speechrecipe", "run", "diarization", "--stop", "0", "-c", str(tiny),
                              "--target-dir", str(tmp_path / name), "--cache-dir", str(cache)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [run.communicate(timeout=600)[1] for run in runs]
    for run, stderr in zip(runs, outputs):
        assert run.returncode == 0, stderr
    assert sum("built the mini diarization corpus" in stderr for stderr in outputs) == 1, outputs
    assert sum("prepared data in" in stderr for stderr in outputs) == 1, outputs
    assert sum("prepared data found in cache" in stderr for stderr in outputs) == 1, outputs
    (corpus,) = (cache / "diarization" / "mini_corpus").iterdir()  # no partial copy left
    assert (corpus / "mini_corpus.json").is_file()


@pytest.mark.e2e
def test_clear_cache_keeps_the_mini_corpus_a_live_diarization_run_reads(cli, tmp_path):
    """The mini corpus is a folder of the cache that no prepared folder's lease covers: the run leases it too."""
    cache, live = tmp_path / "cache", tmp_path / "live"
    tiny = Path(__file__).parent / "fixtures" / "tiny_diarization.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "speechrecipe", "run", "diarization", "--target-dir", str(live),
                             "--cache-dir", str(cache), "-c", str(tiny), "train.total_steps=2000", "train.log_step=2",
                             "--stop", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _events(live, "train"), proc)  # training, reading the mini corpus's audio
        result = cli("run", "diarization", "--target-dir", tmp_path / "other", "--cache-dir", cache, "-c", tiny,
                     "--stop", "0", "--clear-cache")
        assert result.exit_code == 0, result.stderr
        mini = cache / "diarization" / "mini_corpus"
        assert f"--clear-cache: kept {mini}: {live.resolve()} (pid {proc.pid}) is using it" in result.stderr
        assert "built the mini diarization corpus" not in result.stderr
        done = len(_events(live, "train"))
        _wait_for(lambda: len(_events(live, "train")) > done, proc)  # it goes on training
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr  # SIGTERM: saved and stopped, "requeue me" (errors.REQUEUE_EXIT)
