"""ASR speed and memory: training throughput, decoding real-time factor, step memory vs utterance length.

    .venv/bin/python bench/bench_asr.py [--steps 60] [--threads 1]

1. Training: stages 0-2 of `asr` on the bundled mini corpus with the default config for --steps
   updates (no validation); mean audio seconds per second, utterances per second and data-wait
   fraction of train_log.jsonl's windows after the first (warm-up).
2. Decoding: the trained model's log-probabilities on test-clean; seconds of decoding per second of
   audio (real-time factor) for greedy search and prefix beam search with beam 10, and the network's
   own forward RTF for scale.
3. Memory: one training step (forward + backward) on a batch of synthetic utterances all L seconds
   long, L doubling; the batch is made by the duration budget (build_batch_sampler.max_batch_secs)
   and, for contrast, by a fixed count of 8. Each case runs in a fresh process; the figure is the
   step's peak resident memory above the resident memory just before it.
Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train_throughput(work: Path, steps: int) -> dict:
    target = work / "exp"
    command = [sys.executable, "-m", "speechrecipe", "run", "asr", "--stop", "2", "--target-dir", str(target),
               "--cache-dir", str(work / "cache"), f"train.total_steps={steps}", "train.log_step=10",
               f"train.eval_step={10 * steps}", f"train.save_step={steps}"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    windows = [e for e in events if e["event"] == "train"][1:]
    mean = lambda key: sum(e[key] for e in windows) / len(windows)  # noqa: E731
    return {"target": target, "audio_s_per_s": mean("audio_s_per_s"), "utt_per_s": mean("utt_per_s"),
            "data_wait": mean("data_wait")}


def decoding_rtf(target: Path, cache: Path) -> dict:
    import torch

    from speechrecipe.config import load_config
    from speechrecipe.decoding.ctc import beam_best, greedy
    from speechrecipe.engine import checkpoint as ckpt
    from speechrecipe.engine.runner import experiment_paths
    from speechrecipe.problems.asr import ASR

    conf = load_config("asr")
    problem = ASR(conf, experiment_paths(ASR, conf, target, cache))
    task = problem.build_task(conf.build_task, problem.load_encoder())
    task.load_state_dict(ckpt.load(target / "checkpoints" / "valid_best.ckpt")["model"])
    task.eval()
    dataset = problem.build_dataset(conf.build_dataset, "test_test-clean", None)
    audio = sum(r["duration"] for r in dataset.rows)
    outputs, began = [], time.perf_counter()
    with torch.inference_mode():
        for batch in problem.eval_loader(dataset, conf.build_batch_sampler.eval_batch_secs):
            out = task.test_step(batch)
            outputs += [out["log_probs"][i, :n] for i, n in enumerate(out["lens"].tolist())]
    forward = time.perf_counter() - began
    times = {}
    for name, decode in (("greedy", greedy), ("beam 10", lambda lp: beam_best(lp, 10))):
        began = time.perf_counter()
        for log_probs in outputs:
            decode(log_probs)
        times[name] = (time.perf_counter() - began) / audio
    return {"audio_s": audio, "forward": forward / audio, **times}


def memory_case(length_s: float, batching: str) -> dict:
    """One training step in this process: peak RSS above the RSS before the step (MiB)."""
    import torch

    from speechrecipe.config import load_config
    from speechrecipe.data.sampler import EpochBatchSampler
    from speechrecipe.engine.runner import experiment_paths
    from speechrecipe.problems.asr import ASR

    conf = load_config("asr")
    problem = ASR(conf, experiment_paths(ASR, conf, Path("unused"), Path("unused")))
    task = problem.build_task(conf.build_task, range(30)).train()  # a 30-token vocabulary
    rate = conf.build_dataset.sample_rate
    lengths = [int(length_s * rate)] * 64
    if batching == "budget":
        sampler = EpochBatchSampler(lengths, seed=0, max_batch_length=int(conf.build_batch_sampler.max_batch_secs * rate))
    else:
        sampler = EpochBatchSampler(lengths, seed=0, batch_size=8)
    size = len(sampler.epoch_batches(0)[0])
    torch.manual_seed(0)
    wavs = torch.randn(size, lengths[0]) * 0.1
    tokens = int(length_s * 14)  # about 14 characters per second of read speech
    batch = {"ids": [str(i) for i in range(size)], "wavs": wavs, "wav_lens": torch.full((size,), lengths[0]),
             "targets": torch.randint(1, 30, (size, tokens)), "target_lens": torch.full((size,), tokens)}
    before = _rss_mib("VmRSS")
    task(batch)["loss"].backward()
    return {"batch": size, "padded_s": size * length_s, "peak_mib": _rss_mib("VmHWM") - before}


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training updates for the throughput figure")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (OMP_NUM_THREADS)")
    parser.add_argument("--lengths", default="2,4,8,16", help="utterance seconds for the memory cases")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one memory case, "<seconds>:<batching>"
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.case:
        seconds, batching = args.case.split(":")
        print(json.dumps(memory_case(float(seconds), batching)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_asr_") as work:
        train = train_throughput(Path(work), args.steps)
        decode = decoding_rtf(train["target"], Path(work) / "cache")
    print("| threads | training audio s/s | utterances/s | data wait | decode RTF greedy | decode RTF beam 10 | forward RTF |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.threads} | {train['audio_s_per_s']:.1f} | {train['utt_per_s']:.1f} | {train['data_wait']:.1%} "
          f"| {decode['greedy']:.5f} | {decode['beam 10']:.5f} | {decode['forward']:.5f} |")
    print()
    print("| utterance s | budget batch: utts, padded s, step peak MiB | fixed 8 utts: padded s, step peak MiB |")
    print("|---|---|---|")
    for seconds in [float(s) for s in args.lengths.split(",")]:
        cells = []
        for batching in ("budget", "fixed"):
            command = [sys.executable, __file__, "--threads", str(args.threads), "--case", f"{seconds}:{batching}"]
            out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            cells.append(out)
        budget, fixed = cells
        print(f"| {seconds:g} | {budget['batch']}, {budget['padded_s']:g} s, {budget['peak_mib']:.0f} MiB "
              f"| {fixed['padded_s']:g} s, {fixed['peak_mib']:.0f} MiB |")
    print(f"(load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
