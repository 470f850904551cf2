"""Diarization speed and accuracy on the mini diarization corpus.

    .venv/bin/python bench/bench_diarization.py [--steps 200] [--rounds 2]   (--rounds 0: skip part 1)

1. Training throughput: stages 0-2 of `diarization` (default config) for a few updates, with the
   default prefetch thread (train.prefetch_batches=2) and without it (0), alternating A B A B over
   --rounds in fresh target dirs; mean audio seconds per second and data-wait fraction of
   train_log.jsonl's windows after the first (warm-up), and the ratio to the no-prefetch baseline.
2. The full default run (--steps updates) through the CLI: test DER of the trained model (dev-tuned
   threshold and median filter), of the same model untrained (one update at learning rate 0, the
   same tuning), and of the all-one-speaker hypothesis (one speaker wherever anyone speaks, i.e. with
   oracle speech activity; and one speaker over the whole recording).
3. Inference real-time factor of the trained model on the test split: seconds to diarize (read,
   chunk, forward, stitch) per second of audio, and the network forward alone.
Prints Markdown tables; `uptime` before and after.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(target: Path, cache: Path, *extra: str, stop: int = 4) -> None:
    command = [sys.executable, "-m", "speechrecipe", "run", "diarization", "--stop", str(stop), "--target-dir",
               str(target), "--cache-dir", str(cache), *extra]
    subprocess.run(command, check=True, capture_output=True, text=True)


def throughput(target: Path, cache: Path, prefetch: int, steps: int) -> dict:
    run(target, cache, f"train.total_steps={steps}", "train.log_step=10", f"train.eval_step={10 * steps}",
        f"train.save_step={steps}", f"train.prefetch_batches={prefetch}", stop=2)
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    windows = [e for e in events if e["event"] == "train"][1:]
    mean = lambda key: sum(e[key] for e in windows) / len(windows)  # noqa: E731
    return {"audio_s_per_s": mean("audio_s_per_s"), "data_wait": mean("data_wait")}


def test_der(target: Path) -> dict:
    return json.loads((target / "results" / "results.json").read_text())["test"]


def one_speaker(cache: Path) -> dict:
    from speechrecipe.data.manifest import read_jsonl
    from speechrecipe.metrics.der import corpus_der

    (manifest,) = [p for p in (cache / "diarization").glob("*/test_test.jsonl")]
    rows = read_jsonl(manifest)
    reference = {r["id"]: [tuple(s) for s in r["segments"]] for r in rows}
    oracle = corpus_der(reference, {k: [(s, e, "one") for s, e, _ in v] for k, v in reference.items()}).rates()
    whole = corpus_der(reference, {r["id"]: [(0.0, r["duration"], "one")] for r in rows}).rates()
    return {"oracle": oracle, "whole": whole}


def inference_rtf(target: Path, cache: Path) -> dict:
    import torch

    from speechrecipe.config import load_config
    from speechrecipe.engine import checkpoint as ckpt
    from speechrecipe.engine.runner import experiment_paths
    from speechrecipe.problems.diarization import Diarization

    conf = load_config("diarization")
    problem = Diarization(conf, experiment_paths(Diarization, conf, target, cache))
    task = problem.build_task(problem.section("build_task"), problem.load_encoder())
    task.load_state_dict(ckpt.load(target / "checkpoints" / "valid_best.ckpt")["model"])
    rows = problem.build_dataset(conf.build_dataset, "test_test", {}).rows
    audio = sum(r["duration"] for r in rows)
    began = time.perf_counter()
    problem.diarize(task, "test_test")
    whole = time.perf_counter() - began
    from speechrecipe.data.audio import read_audio

    wavs = [read_audio(r["path"]) for r in rows]
    began = time.perf_counter()
    with torch.inference_mode():
        for wav in wavs:
            task.logits(wav[None], torch.tensor([wav.numel()]))
    return {"audio_s": audio, "rtf": whole / audio, "forward_rtf": (time.perf_counter() - began) / audio}


def print_speeds(speeds: dict[int, list[dict]], rounds: int) -> None:
    base = sum(s["audio_s_per_s"] for s in speeds[0]) / rounds
    print("\n| case | audio s/s | data wait | ratio |\n|---|---|---|---|", flush=True)
    for prefetch, label in ((2, "prefetch_batches=2 (default)"), (0, "prefetch_batches=0")):
        rate = sum(s["audio_s_per_s"] for s in speeds[prefetch]) / rounds
        wait = sum(s["data_wait"] for s in speeds[prefetch]) / rounds
        print(f"| {label} | {rate:.1f} | {100 * wait:.1f} % | {rate / base:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--speed-steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        work, cache = Path(tmp), Path(tmp) / "cache"
        speeds: dict[int, list[dict]] = {0: [], 2: []}
        for round_ in range(args.rounds):
            for prefetch in (2, 0):
                speeds[prefetch].append(throughput(work / f"speed-{prefetch}-{round_}", cache, prefetch, args.speed_steps))
        if args.rounds:
            print_speeds(speeds, args.rounds)
        trained, untrained = work / "trained", work / "untrained"
        began = time.perf_counter()
        run(trained, cache, f"train.total_steps={args.steps}")
        minutes = (time.perf_counter() - began) / 60
        run(untrained, cache, "train.total_steps=1", "build_optimizer.conf.lr=0.0")
        baseline = one_speaker(cache)
        print(f"\nfull default run (stages 0-4, {args.steps} updates): {minutes:.1f} min\n")
        print("| test split | DER (%) | missed (%) | false alarm (%) | confusion (%) |\n|---|---|---|---|---|")
        for label, r in (("trained", test_der(trained)), ("untrained (lr 0)", test_der(untrained)),
                         ("one speaker where anyone speaks", baseline["oracle"]),
                         ("one speaker over the whole recording", baseline["whole"])):
            print(f"| {label} | {100 * r['der']:.2f} | {100 * r['missed']:.2f} | {100 * r['false_alarm']:.2f} | "
                  f"{100 * r['confusion']:.2f} |")
        rtf = inference_rtf(trained, cache)
        print(f"\ninference on the test split ({rtf['audio_s']:.0f} s of audio): real-time factor {rtf['rtf']:.4f} "
              f"(network forward alone {rtf['forward_rtf']:.4f})")
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
