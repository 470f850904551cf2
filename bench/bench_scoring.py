"""Verification scoring at VoxCeleb1-E scale: 1M trials over 20k embeddings, against a bare gather-dot.

    .venv/bin/python bench/bench_scoring.py --trials 1000000 --utterances 20000

Times, best of 3:
- bare: a chunked gather-and-dot as one would write it,
  `out[s:s+4096] = (table[enroll[s:s+4096]] * table[test[s:s+4096]]).sum(1)`;
- the same in one shot, `(table[enroll] * table[test]).sum(1)`;
- speechrecipe's stage-3 scoring: `cosine_scores` then `eer` (the target: <= 1.2x bare);
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

    def chunked() -> torch.Tensor:
        out = torch.empty(args.trials)
        for s in range(0, args.trials, 4096):
            out[s : s + 4096] = (table[enroll[s : s + 4096]] * table[test[s : s + 4096]]).sum(1)
        return out

    bare = best_of(3, chunked)
    one_shot = best_of(3, lambda: (table[enroll] * table[test]).sum(1))
    scoring = best_of(3, lambda: cosine_scores(table, enroll, test))
    scores = cosine_scores(table, enroll, test)
    torch.testing.assert_close(scores, chunked())
    with_eer = best_of(3, lambda: eer(cosine_scores(table, enroll, test), labels))

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
    print(f"| bare chunked gather-and-dot (4096 trials a chunk) | {bare:.3f} | 1.00 |")
    print(f"| bare one-shot `(table[e] * table[t]).sum(1)` | {one_shot:.3f} | {one_shot / bare:.2f} |")
    print(f"| speechrecipe `cosine_scores` | {scoring:.3f} | {scoring / bare:.2f} |")
    print(f"| speechrecipe `cosine_scores` + `eer` | {with_eer:.3f} | {with_eer / bare:.2f} |")
    print(f"| whole back-end: parse trials, score, EER, 2 x minDCF, write scores file | {whole:.3f} | {whole / bare:.1f} |")


if __name__ == "__main__":
    main()
