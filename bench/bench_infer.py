"""Inference real-time factor of `speechrecipe.load(...)` against a bare loop over the same model (issue 26).

    .venv/bin/python bench/bench_infer.py --threads 1 2 --rounds 3

For each problem, a target_dir with the DEFAULT model (conf/<problem>.yaml; 2 updates: speed does not depend
on the weights) is trained on its bundled mini corpus (once, under --work), then its test-set audio is run:
- speechrecipe: `model.run_rows(rows)`: the problem's evaluation loop (length-sorted padded batches of
  build_batch_sampler.eval_batch_secs, the problem's output post-processing: softmax, decoding, stitching);
- bare: the same task module on one file at a time (read with soundfile, no padding, no batching), with
  the same output step (softmax, test_step, decoding for asr; for diarization the same overlapping chunks
  of evaluate.chunk_secs, one chunk at a time, stitched as stage 3 does: the same output).
Audio reading is in both. Each round times both, alternating (each over as many passes of the test set as
make about a second); the median round is kept. The RTF is
processing seconds per second of audio; `bare / speechrecipe` ≥ 1 means speechrecipe is faster.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBLEMS = {  # problem: overrides that make a 2-update default run
    "asv": [],
    "ks": [],
    "sid": [],
    "intent": [],
    "asr": [],
    "diarization": ["evaluate.tune.apply=false", "prepare_data.check_audio=header"],
}
MIN_ROUND_SECS = 1.0  # each round repeats the test set until it has run this long (timer and scheduler noise)
TRAIN = ["train.total_steps=2", "train.eval_step=2", "train.save_step=2", "train.log_step=1", "train.num_workers=0"]


def trained(problem: str, work: Path) -> Path:
    target = work / problem
    if not (target / "checkpoints" / "valid_best.ckpt").is_file():
        subprocess.run([sys.executable, "-m", "speechrecipe", "run", problem, "--stop", "2", "--target-dir", str(target),
                        "--cache-dir", str(work / "cache"), *TRAIN, *PROBLEMS[problem]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return target


def test_rows(work: Path, problem: str) -> list[dict]:
    from speechrecipe.data.manifest import read_jsonl

    manifest = sorted((work / "cache" / problem).glob("*/test_*.jsonl"))[0]
    return [row for row in read_jsonl(manifest) if "start" not in row]


def bare_loop(model, rows: list[dict]) -> None:
    """One file at a time through the same task: read, forward, the problem's output step."""
    import torch

    from speechrecipe.data.audio import read_audio

    from speechrecipe.inference.models import Classifier, Diarizer, Transcriber
    from speechrecipe.tasks.asr import decode_batch

    task, rate = model.task, model.sample_rate
    with torch.inference_mode():
        for row in rows:
            wav = read_audio(row["path"], sample_rate=rate)[None]
            batch = {"ids": [row["id"]], "wavs": wav, "wav_lens": torch.tensor([wav.shape[1]])}
            if isinstance(model, Classifier):
                [torch.softmax(x, -1) for x in task.logits(wav, batch["wav_lens"])]
            elif isinstance(model, Transcriber):
                decode_batch(task.test_step(batch), model.decoders)
            elif isinstance(model, Diarizer):
                bare_diarize(model, wav)
            else:
                task.test_step(batch)


def bare_diarize(model, wav):
    """Stage 3's chunks of one recording, one chunk at a time, stitched: the same probabilities."""
    import torch

    from speechrecipe.tasks.diarization import plan_chunks, stitch

    grid, c = model.problem.frame_grid, model.conf.evaluate
    chunk, overlap = int(c.chunk_secs * grid.sample_rate), int(c.chunk_overlap_secs * grid.sample_rate)
    samples = wav.shape[1]
    found = []
    for start in plan_chunks(samples, chunk, overlap, grid.hop_samples):
        piece = wav[:, start:start + chunk]
        out = model.task.test_step({"ids": ["x"], "wavs": piece, "wav_lens": torch.tensor([piece.shape[1]])})
        found.append((start // grid.hop_samples, out["probs"][0, : grid.num_frames(piece.shape[1])].numpy()))
    return stitch(found, grid.num_frames(samples))


def measure(problem: str, work: Path, threads: int, rounds: int, batch_secs: float | None = None) -> dict:
    import torch

    import speechrecipe

    torch.set_num_threads(threads)
    model = speechrecipe.load(work / problem)
    if batch_secs:  # explore the trade-off: the saved config's evaluation batch budget replaced
        model.conf.build_batch_sampler.eval_batch_secs = batch_secs
    rows = test_rows(work, problem)
    audio = sum(float(row["duration"]) for row in rows)
    model.run_rows(rows), bare_loop(model, rows)  # warm-up
    start = time.perf_counter()
    model.run_rows(rows)
    repeats = max(1, math.ceil(MIN_ROUND_SECS / (time.perf_counter() - start)))  # a small test set: several passes a round
    ours, bare = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            model.run_rows(rows)
        ours.append((time.perf_counter() - start) / repeats)
        start = time.perf_counter()
        for _ in range(repeats):
            bare_loop(model, rows)
        bare.append((time.perf_counter() - start) / repeats)
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    return {"problem": problem, "threads": threads, "eval_batch_secs": model.conf.build_batch_sampler.eval_batch_secs,
            "files": len(rows), "audio_s": round(audio, 1),
            "rtf_speechrecipe": ours_s / audio, "rtf_bare": bare_s / audio, "bare_over_speechrecipe": bare_s / ours_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_infer"))
    parser.add_argument("--eval-batch-secs", type=float, nargs="+", default=[None],
                        help="replace the trained config's build_batch_sampler.eval_batch_secs (default: keep it)")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    print("| problem | eval_batch_secs | threads | files | audio (s) | RTF speechrecipe | RTF bare loop | bare / speechrecipe |")
    print("|---|---|---|---|---|---|---|---|")
    for problem in args.problems:
        trained(problem, args.work)
        for threads, batch_secs in ((t, b) for b in args.eval_batch_secs for t in args.threads):
            r = measure(problem, args.work, threads, args.rounds, batch_secs)
            print(f"| {problem} | {r['eval_batch_secs']:g} | {threads} | {r['files']} | {r['audio_s']} | {r['rtf_speechrecipe']:.4f} | "
                  f"{r['rtf_bare']:.4f} | {r['bare_over_speechrecipe']:.2f} |", flush=True)
            with open(args.work / "results.jsonl", "a") as handle:
                handle.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
