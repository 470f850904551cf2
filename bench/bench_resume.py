"""Kill and resume: N training runs killed with SIGKILL at random times, resumed, compared bit for bit.

    .venv/bin/python bench/bench_resume.py --trials 10

Runs stages 0-2 of tests/fixtures/tiny_asv.yaml once uninterrupted (the reference), then per trial:
starts the same command in a fresh target_dir, sends SIGKILL at a random time after its first
checkpoint (step 4), drawn uniformly up to the time the reference took from step 4 to its last
checkpoint (step 24), runs the command again, and
compares the final checkpoint with the reference by torch.equal on every model and optimizer
tensor. The resume time is the trainer's `resume` event in train_log.jsonl: from the start of
restoring to the first new batch in hand (restore_s: loading the checkpoint into model, optimizer
and RNGs only); it is given as a ratio to the median `save` event of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "tiny_asv.yaml"
STEPS = 24  # train.total_steps of tiny_asv.yaml


def command(target: Path) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "run", "asv", "--stop", "2", "--target-dir", str(target), "-c", str(TINY)]


def final(target: Path) -> dict:
    return torch.load(target / "checkpoints" / f"step-{STEPS}.ckpt", weights_only=True)


def identical(a: dict, b: dict) -> bool:
    """Counters, every model tensor and every optimizer state tensor equal."""
    if a["counters"] != b["counters"] or a["model"].keys() != b["model"].keys():
        return False
    if not all(torch.equal(t, b["model"][k]) for k, t in a["model"].items()):
        return False
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    return sa.keys() == sb.keys() and all(
        torch.equal(torch.as_tensor(v), torch.as_tensor(sb[p][k])) for p in sa for k, v in sa[p].items())


def wait_for(path: Path, process: subprocess.Popen) -> float:
    """Seconds until `path` exists (or the process ends)."""
    began = time.perf_counter()
    while not path.is_file() and process.poll() is None:
        time.sleep(0.002)
    return time.perf_counter() - began


def reference(root: Path, env: dict) -> tuple[dict, float]:
    """The uninterrupted run: its final state, and the seconds from its first to its last checkpoint."""
    target = root / "reference"
    process = subprocess.Popen(command(target), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(target / "checkpoints" / "step-4.ckpt", process)
    window = wait_for(target / "checkpoints" / f"step-{STEPS}.ckpt", process)
    if process.wait() != 0:
        sys.exit(f"reference run failed (exit {process.returncode})")
    return final(target), window


def trial(target: Path, kill_after: float, env: dict) -> dict:
    """Kill `kill_after` seconds after the first checkpoint, resume, and read the resumed run's events."""
    process = subprocess.Popen(command(target), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(target / "checkpoints" / "step-4.ckpt", process)
    time.sleep(kill_after)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(p.stem.split("-")[1]) for p in (target / "checkpoints").glob("step-*.ckpt"))
    resumed = subprocess.run(command(target), env=env, capture_output=True, text=True)
    if resumed.returncode != 0:
        sys.exit(f"resumed run failed:\n{resumed.stderr[-2000:]}")
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    resume = [e for e in events if e["event"] == "resume"]
    last_resume = events.index(resume[-1]) if resume else 0
    saves = [e["seconds"] for e in events[last_resume:] if e["event"] == "save"]
    return {"killed": killed, "kill_after": kill_after, "last_saved": saved[-1] if saved else None,
            "resume": resume[-1] if resume else None, "save_s": statistics.median(saves) if saves else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="draws the kill times")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_resume_") as tmp:
        root = Path(tmp)
        env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(root / "cache")}
        want, window = reference(root, env)
        size = (root / "reference" / "checkpoints" / f"step-{STEPS}.ckpt").stat().st_size
        print(f"reference: {window:.1f} s from the first checkpoint (step 4) to the last (step {STEPS}); "
              f"a checkpoint is {size / 1e6:.1f} MB")
        rows = []
        for n in range(args.trials):
            row = trial(root / f"trial-{n}", rng.uniform(0, window), env)
            row["identical"] = identical(final(root / f"trial-{n}"), want)
            rows.append(row)
            r = row["resume"]
            print(f"trial {n}: SIGKILL {row['kill_after']:.2f} s after step 4 "
                  f"({'killed' if row['killed'] else 'had already finished'}), "
                  f"last checkpoint step {row['last_saved']}, "
                  + (f"resume {r['seconds'] * 1e3:.0f} ms (restore {r['restore_s'] * 1e3:.0f} ms), "
                     f"save {row['save_s'] * 1e3:.0f} ms, " if r and row["save_s"] else "no resume, ")
                  + f"bit-identical: {row['identical']}", flush=True)
    summarize(rows)


def summarize(rows: list[dict]) -> None:
    killed = [r for r in rows if r["killed"]]
    timed = [r for r in killed if r["resume"] and r["save_s"]]
    ratios = [r["resume"]["seconds"] / r["save_s"] for r in timed]
    restore = [r["resume"]["restore_s"] / r["save_s"] for r in timed]
    print(f"\n{sum(r['identical'] for r in rows)} of {len(rows)} trials bit-identical "
          f"({len(killed)} killed mid-training, {sum(r['identical'] for r in killed)} of them bit-identical)")
    if timed:
        print(f"resume until the first new batch: median {statistics.median(r['resume']['seconds'] for r in timed) * 1e3:.0f} ms, "
              f"{statistics.median(ratios):.2f}x one checkpoint save (range {min(ratios):.2f}-{max(ratios):.2f}); "
              f"restore only: {statistics.median(restore):.2f}x; "
              f"save median {statistics.median(r['save_s'] for r in timed) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
