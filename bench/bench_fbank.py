"""The fbank/MFCC frontend on a batch: the whole batch in one stft against blocks of rows (issue 26).

    .venv/bin/python bench/bench_fbank.py [--threads 1 2] [--repeats 20]

nn/upstream.py computes the spectrum of a CPU evaluation batch in blocks of rows of at most
SPECTRUM_BLOCK_SAMPLES (about 10 s of audio; _spectrum_by_rows). This times both ways on
the batch shapes the problems make (evaluation batches of 30-60 s, training batches), checks that the
values are the same bit for bit, and prints a Markdown table (median of --repeats, alternated).
"""
from __future__ import annotations

import argparse
import statistics
import time

SHAPES = [  # (what, rows, seconds per row)
    ("ks training batch: 32 x 1 s", 32, 1.0),
    ("sid training batch: 32 x 2 s crops", 32, 2.0),
    ("asv/sid evaluation batch: 60 s, 8 x 7.5 s", 8, 7.5),
    ("diarization evaluation batch: 30 s, 3 x 8 s chunks", 3, 8.0),
    ("asr evaluation batch: 60 s, 4 x 15 s", 4, 15.0),
    ("the former 240 s evaluation batch: 32 x 7.5 s", 32, 7.5),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import torch

    from speechrecipe.nn.upstream import MFCC, Fbank

    torch.manual_seed(0)
    print("| frontend | batch | threads | whole batch (ms) | blocks of <= 10 s (ms) | speed-up | same values |")
    print("|---|---|---|---|---|---|---|")
    cases = [(cls.__name__, cls().eval(), what, rows, secs) for cls in (Fbank, MFCC) for what, rows, secs in SHAPES]
    inputs = [frontend._frame_input(torch.randn(rows, int(secs * 16000))) for _, frontend, _, rows, secs in cases]
    for threads in args.threads:  # warm-up of every case first: the allocator's thresholds and the FFT plans settle
        torch.set_num_threads(threads)
        for (_, frontend, *_), x in zip(cases, inputs):
            frontend._spectrum(x), frontend._spectrum_by_rows(x)
    for (name, frontend, what, _, _), x in zip(cases, inputs):
        same = torch.equal(frontend._spectrum(x), frontend._spectrum_by_rows(x))
        for threads in args.threads:
            torch.set_num_threads(threads)
            whole, by_rows = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                frontend._spectrum(x)
                whole.append(time.perf_counter() - start)
                start = time.perf_counter()
                frontend._spectrum_by_rows(x)
                by_rows.append(time.perf_counter() - start)
            w, r = statistics.median(whole) * 1000, statistics.median(by_rows) * 1000
            print(f"| {name} | {what} | {threads} | {w:.1f} | {r:.1f} | {w / r:.2f} | "
                  f"{'bit for bit' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
