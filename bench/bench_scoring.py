"""Verification scoring at VoxCeleb1-E scale: 1M trials over 20k embeddings, against a bare gather-dot.

    .venv/bin/python bench/bench_scoring.py --trials 1000000 --utterances 20000

Times, best of 3:
- bare: `(table[enroll] * table[test]).sum(1)` in one shot, the shortest correct code;
- speechrecipe's `cosine_scores` (chunked gather-dot, written into one preallocated tensor);
- the whole back-end of stage 3 after embedding: trial list → index tensors (`Trials.from_list`),
  scoring, EER and minDCF at two operating points, and the scores file on disk.
Prints a Markdown table with ratios to the bare gather-dot and peak extra memory of each.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from speechrecipe.metrics.eer import eer
from speechrecipe.metrics.mindcf import min_dcf
from speechrecipe.tasks.scoring import Trials, cosine_scores, write_scores


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--utterances", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    table = F.normalize(torch.randn(args.utterances, args.dim, generator=generator), dim=1)
    enroll = torch.randint(0, args.utterances, (args.trials,), generator=generator)
    test = torch.randint(0, args.utterances, (args.trials,), generator=generator)
    labels = torch.randint(0, 2, (args.trials,), generator=generator)
    names = [f"id{k // 20:05d}/video{k % 7}/{k:05d}.wav" for k in range(args.utterances)]
    listed = list(zip(labels.tolist(), (names[i] for i in enroll.tolist()), (names[i] for i in test.tolist())))

    bare = best_of(3, lambda: (table[enroll] * table[test]).sum(1))
    ours = best_of(3, lambda: cosine_scores(table, enroll, test))
    torch.testing.assert_close(cosine_scores(table, enroll, test), (table[enroll] * table[test]).sum(1))

    with tempfile.TemporaryDirectory() as tmp:
        def backend() -> None:
            trials = Trials.from_list(listed)
            scores = cosine_scores(table[: len(trials.ids)], trials.enroll, trials.test)
            eer(scores, trials.labels)
            min_dcf(scores, trials.labels, 0.01)
            min_dcf(scores, trials.labels, 0.05)
            write_scores(Path(tmp) / "test.scores", trials, scores)

        whole = best_of(1, backend)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.trials:,} trials, {args.utterances:,} embeddings of {args.dim} dims; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}, peak RSS {peak:.0f} MiB\n")
    print("| step | seconds | ratio to bare gather-dot |")
    print("|---|---|---|")
    print(f"| bare `(table[e] * table[t]).sum(1)` | {bare:.3f} | 1.00 |")
    print(f"| speechrecipe `cosine_scores` | {ours:.3f} | {ours / bare:.2f} |")
    print(f"| whole back-end: parse trials, score, EER, 2 x minDCF, write scores file | {whole:.3f} | {whole / bare:.1f} |")


if __name__ == "__main__":
    main()
