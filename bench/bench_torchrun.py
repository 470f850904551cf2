"""Training throughput of one process against torchrun with N processes, same machine, same run.

    .venv/bin/python bench/bench_torchrun.py --problem asv --steps 60 --nproc 2

Runs `speechrecipe run PROBLEM --stop 2` on its bundled mini corpus (the default config) once as
a single process and once under `torchrun --standalone --nproc-per-node N`, each in a fresh
target_dir, and averages train_log.jsonl's utt_per_s (all ranks together) and data_wait over the
log windows after the first. On a CPU the single process uses torch's default intra-op threads
and torchrun gives each process one (torchrun sets OMP_NUM_THREADS=1), so both use every core.
Each update of the torchrun run sees N times the batch, so compare utterances/s, not steps/s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def averages(target: Path) -> dict[str, float]:
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    train = [e for e in events if e.get("event") == "train"][1:]
    return {key: sum(e[key] for e in train) / len(train) for key in ("utt_per_s", "data_wait")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="asv")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    common = ["run", args.problem, "--stop", "2", f"train.total_steps={args.steps}", "train.log_step=10",
              f"train.eval_step={args.steps}", f"train.save_step={args.steps}"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_torchrun_") as work:
        env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(Path(work) / "cache")}
        launchers = {"1 process": [sys.executable, "-m", "speechrecipe"],
                     f"torchrun, {args.nproc} processes": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                           "--nproc-per-node", str(args.nproc), "-m", "speechrecipe"]}
        for i, (name, launcher) in enumerate(launchers.items()):
            target = Path(work) / f"exp-{i}"
            subprocess.run([*launcher, *common, "--target-dir", str(target)], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows.append((name, averages(target)))
    first = rows[0][1]["utt_per_s"]
    print(f"| {args.problem} | utterances/s | vs 1 process | data wait |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['utt_per_s']:,.1f} | {r['utt_per_s'] / first:.2f}x | {100 * r['data_wait']:.1f} % |")
    print(f"(load average after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
