"""Real-time factor of the exported graphs (issue 27) against eager `speechrecipe.load(...)`, per problem.

    .venv/bin/python bench/bench_export.py --rounds 3          # threads: 1 and all cores

For ks, sid, intent and asv, a target_dir with the DEFAULT model (conf/<problem>.yaml; 2 updates, as
bench_infer.py: speed does not depend on the weights) is exported with `--format torchscript --format onnx`,
then its test-set audio (read once, before timing) is run one file at a time (B=1, no padding) through:
- eager: the loaded task (`task.logits` or `task.embed` under inference_mode), what `load(...)` computes;
- torchscript: `torch.jit.load("model.ts")`, same process, same torch thread count;
- onnxruntime: `InferenceSession("model.onnx")`, CPU provider, intra-op threads = the thread count.
Each round times the three in turn; the median round is kept. RTF is processing seconds per second of
audio; `eager / X` > 1 means X is faster than eager. Feature extraction is inside every timing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from bench_infer import test_rows, trained

PROBLEMS = ("ks", "sid", "intent", "asv")


def exported(problem: str, work: Path) -> Path:
    from speechrecipe.inference.bundle import export_bundle

    bundle = work / f"{problem}-bundle"
    if not (bundle / "model.onnx").is_file():
        shutil.rmtree(bundle, ignore_errors=True)
        export_bundle(trained(problem, work), bundle, formats=["torchscript", "onnx"])
    return bundle


def runners(bundle: Path, threads: int) -> dict:
    """{name: function(waveform [1, T], lengths [1])} for eager, torchscript and onnxruntime."""
    import onnxruntime
    import torch

    import speechrecipe

    model = speechrecipe.load(bundle)
    eager = model.task.embed if hasattr(model, "embed") else model.task.logits
    script = torch.jit.load(str(bundle / "model.ts"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return {"eager": eager, "torchscript": script,
            "onnxruntime": lambda w, n: session.run(None, {"waveform": w.numpy(), "lengths": n.numpy()})}


def measure(problem: str, work: Path, threads: int, rounds: int) -> dict:
    import soundfile as sf
    import torch

    torch.set_num_threads(threads)
    bundle = exported(problem, work)
    rows = test_rows(work, problem)
    clips = [torch.from_numpy(sf.read(row["path"], dtype="float32")[0])[None] for row in rows]
    inputs = [(clip, torch.tensor([clip.shape[1]])) for clip in clips]
    audio = sum(clip.shape[1] for clip in clips) / 16000
    run = runners(bundle, threads)
    times: dict[str, list[float]] = {name: [] for name in run}
    with torch.inference_mode():
        for fn in run.values():  # warm-up: TorchScript's profiling executor optimises on its first calls
            for w, n in inputs[:3]:
                fn(w, n)
        for _ in range(rounds):
            for name, fn in run.items():
                start = time.perf_counter()
                for w, n in inputs:
                    fn(w, n)
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"problem": problem, "threads": threads, "files": len(rows), "audio_s": round(audio, 1),
            **{f"rtf_{name}": s / audio for name, s in median.items()},
            "eager_over_torchscript": median["eager"] / median["torchscript"],
            "eager_over_onnxruntime": median["eager"] / median["onnxruntime"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, os.cpu_count() or 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_export"))
    args = parser.parse_args()
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(f"load before: {os.getloadavg()}")
    print("| problem | threads | files | audio (s) | RTF eager | RTF TorchScript | RTF ONNX Runtime "
          "| eager / TorchScript | eager / ONNX Runtime |")
    print("|---|---|---|---|---|---|---|---|---|")
    for problem in args.problems:
        for threads in args.threads:
            r = measure(problem, args.work, threads, args.rounds)
            print(f"| {problem} | {threads} | {r['files']} | {r['audio_s']} | {r['rtf_eager']:.4f} | "
                  f"{r['rtf_torchscript']:.4f} | {r['rtf_onnxruntime']:.4f} | {r['eager_over_torchscript']:.2f} | "
                  f"{r['eager_over_onnxruntime']:.2f} |", flush=True)
            with open(args.work / "results.jsonl", "a") as handle:
                handle.write(json.dumps(r) + "\n")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
