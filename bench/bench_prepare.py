"""Stage-0 speed: VoxCeleb1 verification prep on a synthetic tree, against raw soundfile.info.

    .venv/bin/python bench/bench_prepare.py --num-files 100000

Builds N 0.5 s 16 kHz wav files in VoxCeleb1 layout (100 per speaker; the last 40 speakers are in the trial list), then
times (a) soundfile.info over every file in one process, (b) prepare_voxceleb1_verification with
check_audio=header and (c) with check_audio=full. Each case runs in its own Python process so its
peak RSS (the process, and the largest of its workers) is its own. Prints a Markdown table row.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PER_SPEAKER = 100  # 10 videos x 10 utterances


def utterance(i: int) -> str:
    return f"id{10000 + i // PER_SPEAKER}/vid{i // 10 % 10:02d}/{i % 10 + 1:05d}"


def build_tree(root: Path, num_files: int, num_trials: int = 10000) -> None:
    """Write the files by copying one wav's bytes, its last sample varied so no two are equal."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype("float32")
    sf.write(buffer, noise, 16000, format="WAV", subtype="PCM_16")
    head = buffer.getvalue()[:-2]
    for i in range(num_files):
        path = root / "wav" / f"{utterance(i)}.wav"
        if i % 10 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(head + (i % 30000 + 1).to_bytes(2, "little"))
    num_speakers = -(-num_files // PER_SPEAKER)
    first_test_speaker = num_speakers - max(1, min(40, num_speakers // 10))  # the last 40, like VoxCeleb1
    test_utts = [utterance(i) for i in range(first_test_speaker * PER_SPEAKER, num_files)]
    rng = np.random.default_rng(0)
    with open(root / "veri_test2.txt", "w") as f:
        for _ in range(num_trials):
            a, b = rng.choice(len(test_utts), 2, replace=False)
            label = int(test_utts[a].split("/")[0] == test_utts[b].split("/")[0])
            f.write(f"{label} {test_utts[a]}.wav {test_utts[b]}.wav\n")


def cpu_seconds() -> float:
    """User + system time of this process and its finished children (the pool's workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def run_case(case: str, root: Path, num_workers: int) -> dict:
    """One measurement, in this process: wall and CPU seconds (process and workers), peak RSS (MiB)."""
    if case == "baseline":
        from speechrecipe.data.scan import find_audio

        paths = find_audio(root / "wav")
        start, cpu_start = time.perf_counter(), cpu_seconds()
        for path in paths:
            sf.info(path)
    else:
        from speechrecipe.data.corpora.voxceleb1 import prepare_voxceleb1_verification

        start, cpu_start = time.perf_counter(), cpu_seconds()
        prepare_voxceleb1_verification(
            root, root / f"out_{case}", test_sets=[{"name": "O", "trial_file": "veri_test2.txt"}],
            valid_fraction=0.05, valid_count=None, iden_split=None, seed=0, strict=False,
            check_audio=case, num_workers=num_workers, num_valid_trials=10000)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    rss_mib = [resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_mib": rss_mib[0], "worker_rss_mib": rss_mib[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-files", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="build the tree here and keep it (default: temp dir, deleted)")
    parser.add_argument("--num-workers", type=int, default=os.cpu_count())
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one measurement
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.dir, args.num_workers)))
        return

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        if not (root / "veri_test2.txt").exists():
            start = time.perf_counter()
            build_tree(root, args.num_files)
            print(f"built {args.num_files} files in {time.perf_counter() - start:.1f} s under {root}",
                  file=sys.stderr)
        results = {}
        for case in ("baseline", "header", "full"):
            command = [sys.executable, __file__, "--case", case, "--dir", str(root),
                       "--num-workers", str(args.num_workers)]
            out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            results[case] = json.loads(out.stdout.splitlines()[-1])
    finally:
        if args.dir is None:
            shutil.rmtree(root)
    n = args.num_files
    rate = {case: n / r["seconds"] for case, r in results.items()}

    def cell(case: str) -> str:
        r = results[case]
        return (f"{rate[case]:,.0f} files/s ({rate[case] / rate['baseline']:.2f}x), "
                f"{r['cpu_seconds'] / n * 1e6:.0f} µs CPU/file, "
                f"{r['rss_mib']:.0f} MiB + workers {r['worker_rss_mib']:.0f} MiB")

    print("| files | workers | baseline sf.info, 1 process | prepare, check_audio=header | prepare, check_audio=full |")
    print("|---|---|---|---|---|")
    r = results["baseline"]
    baseline = f"{rate['baseline']:,.0f} files/s, {r['cpu_seconds'] / n * 1e6:.0f} µs CPU/file, {r['rss_mib']:.0f} MiB"
    print(f"| {n:,} | {args.num_workers} | {baseline} | {cell('header')} | {cell('full')} |")
    print(f"(load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
