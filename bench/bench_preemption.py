"""Stage 3 on 1 process against torchrun with 2, and the time from SIGUSR1 to exit (issue 28).

    .venv/bin/python bench/bench_preemption.py --steps 30 --repeats 3

1. Trains the default asv model on its bundled mini corpus for --steps updates (a checkpoint every steps/3), then
   times stage 3 (log.txt's "stage 3 (evaluate) done in X s", and the whole command) over 4 pairs
   (3 step checkpoints and valid_best on voxceleb1_o) and over 1 pair (`last`): one process with torch's default
   threads, one process with OMP_NUM_THREADS=1 (the bytes torchrun's workers reproduce), torchrun with 2 processes.
2. Starts the same training --repeats times (no validation or regular save in sight), sends SIGUSR1 to the process
   group once the first log window is written, and times until the process has exited (exit code 75), with the
   save's own duration from train_log.jsonl's "stop" event.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = [sys.executable, "-m", "speechrecipe", "run", "asv"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "speechrecipe",
            "run", "asv"]


def stage_3(launcher: list[str], trained: Path, target: Path, env: dict, common: list[str],
            checkpoints: str) -> tuple[float, float]:
    """(stage 3's own seconds, the command's seconds) on a copy of `trained` without its stage 3."""
    shutil.copytree(trained, target)
    shutil.rmtree(target / "evaluation", ignore_errors=True)
    (target / "records" / "stage-3.json").unlink(missing_ok=True)
    began = time.perf_counter()
    result = subprocess.run([*launcher, "--stop", "3", "--target-dir", str(target), *common,
                             f"evaluate.test_ckpt_steps={checkpoints}"], env=env, capture_output=True, text=True)
    if result.returncode != 0 or "stage 2 (train) is up to date" not in (target / "log.txt").read_text():
        raise SystemExit(f"stage 3 run failed or trained again:\n{result.stderr[-2000:]}")
    total = time.perf_counter() - began
    inside = float(re.findall(r"stage 3 \(evaluate\) done in ([\d.]+) s", (target / "log.txt").read_text())[-1])
    return inside, total


def stop_time(target: Path, common: list[str], env: dict) -> tuple[float, float, int, float]:
    """(seconds from SIGUSR1 to exit, seconds the save took, step saved, seconds from SIGUSR1 to the saved file)."""
    process = subprocess.Popen([*RUN, *common, "--stop", "2", "--target-dir", str(target)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = target / "train_log.jsonl"
    while not (log.is_file() and '"event": "train"' in log.read_text()):
        if process.poll() is not None:
            raise SystemExit("training ended before the signal")
        time.sleep(0.01)
    began, sent = time.perf_counter(), time.time()
    os.killpg(process.pid, signal.SIGUSR1)
    code = process.wait()
    took = time.perf_counter() - began
    assert code == 75, code
    (stop,) = [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "stop"]
    return took, stop["seconds"], stop["step"], stop["time"] - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only-stop", action="store_true", help="skip part 1")
    args = parser.parse_args()
    every = args.steps // 3
    common = [f"train.total_steps={args.steps}", f"train.save_step={every}", f"train.eval_step={every}",
              "train.keep_num_ckpts=0"]
    many = f"[step-{every},step-{2 * every},step-{3 * every},valid_best]"
    with tempfile.TemporaryDirectory(prefix="bench_preemption_") as work:
        env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(Path(work) / "cache")}
        trained = Path(work) / "trained"
        if not args.only_stop:
            stage_3_table(trained, common, many, env, Path(work))
        # no validation or regular save near the signal: the stop finishes one update, saves, exits
        quiet = [*common, *(f"train.{key}={100 * args.steps}" for key in ("total_steps", "eval_step", "save_step"))]
        times = [stop_time(Path(work) / f"stop-{i}", quiet, env) for i in range(args.repeats)]
        print("\n| SIGUSR1 to exit, default asv model | median s | max s | to the saved file s (median) | save s (median) "
              "| steps saved |")
        print("|---|---|---|---|---|---|")
        print(f"| {args.repeats} runs | {statistics.median(t[0] for t in times):.2f} | {max(t[0] for t in times):.2f} | "
              f"{statistics.median(t[3] for t in times):.2f} | {statistics.median(t[1] for t in times):.3f} | "
              f"{', '.join(str(t[2]) for t in times)} |")
    print(f"(load average after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


def stage_3_table(trained: Path, common: list[str], many: str, env: dict, work: Path) -> None:
    """Part 1: train once, then stage 3 on copies, one row per launch."""
    subprocess.run([*RUN, *common, "--stop", "2", "--target-dir", str(trained)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    one_thread = {**env, "OMP_NUM_THREADS": "1"}
    runs = {"1 process (default threads)": (RUN, env), "1 process, OMP_NUM_THREADS=1": (RUN, one_thread),
            "torchrun, 2 processes": (TORCHRUN, env)}
    print("| stage 3 of asv (mini corpus) | 4 pairs: stage 3 s | command s | 1 pair: stage 3 s | command s |")
    print("|---|---|---|---|---|")
    for i, (name, (launcher, environment)) in enumerate(runs.items()):
        four = stage_3(launcher, trained, work / f"four-{i}", environment, common, many)
        one = stage_3(launcher, trained, work / f"one-{i}", environment, common, "[last]")
        print(f"| {name} | {four[0]:.1f} | {four[1]:.1f} | {one[0]:.1f} | {one[1]:.1f} |")


if __name__ == "__main__":
    main()
