"""TensorBoard logging overhead (train.tensorboard=true) as a fraction of the training step time.

    .venv/bin/python bench/bench_tensorboard.py --rounds 2

1. The cost of one logged event: `TensorBoardLog.write` of a train event (5 scalars), the writer closed
   (flushed) inside the timing, per event; CPU time of the process, so the writer thread counts too.
2. The step time of the tiny asv config (tests/fixtures/tiny_asv.yaml, 48 updates, a log line every 4)
   with train.tensorboard off and on, alternating (off on off on ...), each a fresh `speechrecipe run
   --stop 2`, steps/s read from train_log.jsonl.
Overhead = event cost / (log_step × step time); the end-to-end on/off ratio is shown beside it (noisy
under load: the machine is shared).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speechrecipe.engine.tensorboard import TensorBoardLog
from speechrecipe.engine.train_log import progress, read_events

TINY = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny_asv.yaml"
LOG_STEP = 4
EVENT = {"event": "train", "step": 0, "time": 0.0, "lr": 1e-3, "loss": 2.5, "utt_per_s": 120.0,
         "audio_s_per_s": 240.0, "data_wait": 0.05}


def event_cost(count: int) -> float:
    """CPU seconds per logged train event, writer flush and close included."""
    with tempfile.TemporaryDirectory() as tmp:
        log = TensorBoardLog(Path(tmp) / "tb", Path(tmp) / "none.jsonl", 0)
        start = time.process_time()
        for step in range(count):
            log.write({**EVENT, "step": step})
        log.close()
        return (time.process_time() - start) / count


def steps_per_s(tensorboard: bool, cache: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "speechrecipe", "run", "asv", "--stop", "2", "--target-dir", tmp,
                   "--cache-dir", str(cache), "-c", str(TINY), "train.total_steps=48", f"train.log_step={LOG_STEP}",
                   "train.eval_step=1000", "train.save_step=1000", f"train.tensorboard={str(tensorboard).lower()}"]
        subprocess.run(command, check=True, capture_output=True)
        return progress(read_events(Path(tmp) / "train_log.jsonl")).steps_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    cost = event_cost(args.events)
    speeds: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as cache:
        steps_per_s(False, Path(cache))  # prepares the mini corpus once, outside the timings
        for _ in range(args.rounds):
            for tensorboard in speeds:
                speeds[tensorboard].append(steps_per_s(tensorboard, Path(cache)))
    off, on = max(speeds[False]), max(speeds[True])
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; best of {args.rounds} runs each, alternating\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| one logged train event (5 scalars), CPU | {1e6 * cost:.0f} µs |")
    print(f"| step time, tensorboard off | {1000 / off:.1f} ms |")
    print(f"| step time, tensorboard on | {1000 / on:.1f} ms |")
    print(f"| overhead: event cost / (log_step {LOG_STEP} × step time off) | {100 * cost * off / LOG_STEP:.3f} % |")
    print(f"| end to end: step time on / off | {off / on:.3f} |")


if __name__ == "__main__":
    main()
