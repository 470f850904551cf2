"""Stage 3 under torchrun (two CPU processes) writes the same bytes as one process with the same thread settings:
pairs go to the ranks in turn, and a pair left over is evaluated by both, each on its share of the batches."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
STEPS = ["train.total_steps=4", "train.save_step=2", "train.eval_step=4", "train.log_step=2", "train.num_workers=0"]
PROBLEMS = {
    "asv": ["-c", str(FIXTURES / "tiny_asv.yaml")],
    "asr": ["-c", str(FIXTURES / "tiny_asr.yaml")],
    "ks": [],
    "diarization": ["-c", str(FIXTURES / "tiny_diarization.yaml")],
}
CHECKPOINTS = "evaluate.test_ckpt_steps=[step-2,step-4,valid_best]"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun gives each worker


def speechrecipe(problem: str, target: Path, cache: Path, *extra: str, ranks: int = 1) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else []
    command = [sys.executable, *launcher, "-m", "speechrecipe", "run", problem, "--stop", "3", "--target-dir",
               str(target), "--cache-dir", str(cache), *PROBLEMS[problem], *STEPS, *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    return result


def evaluated_elsewhere(source: Path, target: Path) -> Path:
    """A copy of a trained target_dir without its stage 3."""
    shutil.copytree(source, target)
    shutil.rmtree(target / "evaluation")
    (target / "records" / "stage-3.json").unlink()
    return target


def assert_same_files(one: Path, sharded: Path) -> int:
    files = [p for p in one.rglob("*") if p.is_file() and p.name != "latest.json"]  # latest.json: absolute paths
    for path in files:
        assert path.read_bytes() == (sharded / path.relative_to(one)).read_bytes(), path
    assert {p.relative_to(sharded) for p in sharded.rglob("*") if p.is_file() and p.name != "latest.json"} == \
        {p.relative_to(one) for p in files}
    return len(files)


@pytest.mark.e2e
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_sharded_stage_3_writes_the_bytes_of_one_process(problem, tmp_path):
    cache = tmp_path / "cache"
    one = tmp_path / "one"
    speechrecipe(problem, one, cache, CHECKPOINTS)
    sharded = evaluated_elsewhere(one, tmp_path / "sharded")
    speechrecipe(problem, sharded, cache, CHECKPOINTS, ranks=2)
    assert assert_same_files(one / "evaluation", sharded / "evaluation") >= 3
    log = (sharded / "log.txt").read_text()
    assert "rank 0: " in log and "rank 1: " in log
    if problem == "asv":  # a single checkpoint and test set: only the utterances can be shared
        single = evaluated_elsewhere(one, tmp_path / "single")
        speechrecipe(problem, single, cache, "evaluate.test_ckpt_steps=[last]", ranks=2)
        log = (single / "log.txt").read_text()
        assert "rank 0: 1 pairs, " in log and "rank 1: 1 pairs, " in log
        assert int(log.split("rank 1: 1 pairs, ")[1].split(" utterances")[0]) > 0
        assert_same_files(one / "evaluation" / "step-4", single / "evaluation" / "step-4")


@pytest.mark.e2e
def test_sharded_stage_3_redoes_only_the_unfinished_pairs(tmp_path):
    cache = tmp_path / "cache"
    one = tmp_path / "one"
    speechrecipe("asv", one, cache, CHECKPOINTS)
    sharded = evaluated_elsewhere(one, tmp_path / "sharded")
    (sharded / "evaluation" / "step-2").mkdir(parents=True)  # what a killed run had finished
    for path in (one / "evaluation" / "step-2").iterdir():
        shutil.copy(path, sharded / "evaluation" / "step-2" / path.name)
    result = speechrecipe("asv", sharded, cache, CHECKPOINTS, ranks=2)
    assert "step-2 on voxceleb1_o: already evaluated; skipping" in result.stderr
    log = (sharded / "log.txt").read_text()
    assert "rank 0: 1 pairs, " in log and "rank 1: 1 pairs, " in log  # two pairs left, one each
    assert_same_files(one / "evaluation", sharded / "evaluation")


@pytest.mark.e2e
def test_sigusr1_during_sharded_stage_3_stops_every_rank_and_the_rerun_continues(tmp_path):
    import signal

    from helpers import wait_for
    from test_distributed import children

    cache, one = tmp_path / "cache", tmp_path / "one"
    many = ["train.total_steps=12", "evaluate.test_ckpt_steps=[step-2,step-4,step-6,step-8,step-10,step-12]"]
    speechrecipe("asv", one, cache, *many)
    sharded = evaluated_elsewhere(one, tmp_path / "sharded")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command = [*launcher, "-m", "speechrecipe", "run", "asv", "--stop", "3", "--target-dir", str(sharded),
               "--cache-dir", str(cache), *PROBLEMS["asv"], *STEPS, *many]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    wait_for(lambda: any((sharded / "evaluation").glob("*/voxceleb1_o.json")), process)
    for pid in children(process.pid):  # Slurm's way: every worker's process group
        os.killpg(pid, signal.SIGUSR1)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0 and "stopped by SIGUSR1 in stage 3" in stderr, stderr
    assert not (sharded / "records" / "stage-3.json").exists()
    speechrecipe("asv", sharded, cache, *many, ranks=2)
    assert_same_files(one / "evaluation", sharded / "evaluation")
