"""Stage 4 of asv at VoxCeleb1-E scale (1M trials, 20k utterances, 1,000 speakers), with and without intervals.

    .venv/bin/python bench/bench_report.py --trials 1000000 --rounds 2

Builds a finished stage 3 in a temporary target_dir (one checkpoint's `.scores` file and result record,
the test manifest naming each utterance's speaker), then times `ASV.report_stage` as the runner calls it:
read the scores, choose the headline, 95 % intervals by speaker (report.resamples, default 1000), results
files and the DET plot. The baseline is the same stage with report.resamples=0 (no intervals), measured
in the same run, alternating (A B A B ...). Target: stage 4 with intervals under 10 s on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from speechrecipe.config import load_config
from speechrecipe.engine.runner import experiment_paths
from speechrecipe.problems.asv import ASV


def build_stage3(target: Path, cache: Path, trials: int, utterances: int, speakers: int, seed: int = 0) -> ASV:
    """A target_dir whose stage 3 evaluated one checkpoint on 'big': scores with a per-speaker offset."""
    conf = load_config("asv", [], ["prepare_data.test_sets=[{name: big, trial_file: big.txt}]"])
    problem = ASV(conf, experiment_paths(ASV, conf, target, cache))
    rng = np.random.default_rng(seed)
    speaker = np.arange(utterances) * speakers // utterances
    names = [f"id{s:05d}/video/{k:05d}.wav" for k, s in enumerate(speaker)]
    enroll = rng.integers(0, utterances, trials)
    target_trial = rng.random(trials) < 0.5
    same = speaker[enroll] * (utterances // speakers) + rng.integers(0, utterances // speakers, trials)
    test = np.where(target_trial, np.minimum(same, utterances - 1), rng.integers(0, utterances, trials))
    labels = speaker[enroll] == speaker[test]
    offset = rng.normal(0, 0.3, speakers)
    scores = rng.normal(0, 1, trials) + 2.0 * labels + offset[speaker[enroll]]
    problem.paths.cache.mkdir(parents=True)
    with open(problem.paths.manifest("test_big"), "w") as f:
        f.writelines(json.dumps({"id": n, "speaker": f"id{s:05d}"}) + "\n" for n, s in zip(names, speaker))
    out = problem.paths.evaluation / "valid_best"
    out.mkdir(parents=True)
    with open(out / "big.scores", "w") as f:
        f.writelines(f"{names[e]} {names[t]} {s:.6f} {int(y)}\n" for e, t, s, y in zip(enroll, test, scores, labels))
    from speechrecipe.metrics.eer import eer
    from speechrecipe.metrics.mindcf import min_dcf
    from speechrecipe.tasks.scoring import read_score_table

    _, s, y = read_score_table(out / "big.scores")  # as stage 3 does: the metrics of the scores as written
    metrics = {"eer": eer(s, y), "mindcf_0.01": min_dcf(s, y, 0.01), "mindcf_0.05": min_dcf(s, y, 0.05)}
    record = {"checkpoint": "valid_best", "step": 100, "test_set": "big", "metrics": metrics, "key": {}}
    (out / "big.json").write_text(json.dumps(record))
    (problem.paths.evaluation / "latest.json").write_text(json.dumps([str(out / "big.json")]))
    return problem


def timed(problem: ASV, resamples: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one stage 4."""
    problem.conf.report.resamples = resamples
    start, cpu = time.perf_counter(), time.process_time()
    problem.report_stage()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--utterances", type=int, default=20_000)
    parser.add_argument("--speakers", type=int, default=1_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        problem = build_stage3(Path(tmp) / "exp", Path(tmp) / "cache", args.trials, args.utterances, args.speakers)
        problem.report_stage()  # imports (matplotlib, the DET plot's) outside the timings
        times: dict[int, list[tuple[float, float]]] = {0: [], args.resamples: []}
        for _ in range(args.rounds):
            for resamples in times:
                times[resamples].append(timed(problem, resamples))
        row = json.loads((problem.paths.results / "results.json").read_text())["big"]
    base, full = min(times[0]), min(times[args.resamples])
    print(f"{args.trials:,} trials, {args.utterances:,} utterances, {args.speakers:,} speakers; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; best of {args.rounds}, alternating\n")
    print("| stage 4 (asv) | wall s | CPU s | wall ratio to no intervals |")
    print("|---|---|---|---|")
    print(f"| report.resamples=0 (no intervals: read scores, results, DET plot) | {base[0]:.2f} | {base[1]:.2f} | 1.00 |")
    print(f"| report.resamples={args.resamples} (95 % intervals by speaker) | {full[0]:.2f} | {full[1]:.2f} | "
          f"{full[0] / base[0]:.2f} |")
    eer = row["intervals"]["eer"]
    print(f"\nEER {100 * eer['value']:.2f} % ({100 * eer['low']:.2f}–{100 * eer['high']:.2f}), {eer['units']} {eer['unit']}s")


if __name__ == "__main__":
    main()
