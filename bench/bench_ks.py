"""Keyword-spotting training throughput and the share of time spent waiting for data (1 s clips).

    .venv/bin/python bench/bench_ks.py --num-clips 2400 --steps 300

Builds a Speech Commands v0.02 tree of N one-second 16 kHz WAV clips (12 words, 10 % of them
in each of the validation and testing lists, two 30 s noise files), then for each case (clips
read from their files or sliced from a pack, DataLoader workers, prefetch thread) runs
`speechrecipe run ks --stop 2` with the default model (fbank + mean pooling + linear, the
cheapest head, so data loading shows most) in its own process. From train_log.jsonl it averages
utt_per_s, audio_s_per_s and data_wait (the share of wall time the loop waited for a batch) over
the log steps after the first (which includes worker start-up and building the pack).
Prints one Markdown row per case, with throughput as a ratio to the first case.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog")
RATE = 16000


def build_tree(root: Path, num_clips: int) -> None:
    """N clips of 1 s (byte copies of one noise wav, the last sample varied), lists and noise."""
    buffer = io.BytesIO()
    sf.write(buffer, np.random.default_rng(0).uniform(-0.3, 0.3, RATE).astype("float32"), RATE, format="WAV",
             subtype="PCM_16")
    head = buffer.getvalue()[:-2]
    rels = []
    for i in range(num_clips):
        rel = f"{WORDS[i % len(WORDS)]}/{i // len(WORDS):08x}_nohash_0.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(head + (i % 30000 + 1).to_bytes(2, "little"))
        rels.append(rel)
    (root / "validation_list.txt").write_text("".join(f"{r}\n" for r in rels[0::10]))
    (root / "testing_list.txt").write_text("".join(f"{r}\n" for r in rels[1::10]))
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir()
    for k in range(2):
        noise = np.random.default_rng(k + 1).uniform(-0.1, 0.1, 30 * RATE).astype("float32")
        sf.write(noise_dir / f"noise{k}.wav", noise, RATE, subtype="PCM_16")


def run_case(root: Path, target: Path, case: str, steps: int, log_step: int, device: str,
             overrides: list[str] | None = None) -> dict:
    """One training run in its own process; averages of the train log after its first entry."""
    pack, workers, prefetch = case.split(":")
    command = [sys.executable, "-m", "speechrecipe", "run", "ks", "--stop", "2", "--target-dir", str(target),
               "--num-workers", workers, "--device", device, f"prepare_data.dataset_root={root}",
               f"build_dataset.pack_audio={pack == 'pack'}", f"train.prefetch_batches={prefetch}",
               f"train.total_steps={steps}", f"train.log_step={log_step}", f"train.eval_step={steps}",
               f"train.save_step={steps}", "prepare_data.check_audio=header", *(overrides or [])]
    env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(target.parent / "cache")}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    train = [e for e in events if e.get("event") == "train"][1:]
    return {key: sum(e[key] for e in train) / len(train) for key in ("utt_per_s", "audio_s_per_s", "data_wait")}


# SUPERB's probe, the ks default until issue 15: the cheapest model, so data loading shows most
PROBE = ["build_downstream.name=probe", "build_upstream.fbank.n_mels=80", "build_upstream.fbank.cmn=false",
         "build_task.specaugment.apply=false",
         "build_dataset.augment.shift_ms=0", "build_dataset.augment.noise_prob=0"]

# files|pack : DataLoader workers : train.prefetch_batches. The first is the baseline: clips read from
# their files in the training process, as before packing (the fastest setting then).
CASES = ["files:0:0", "files:1:0", "files:0:2", "pack:0:0", "pack:0:2", "pack:1:0", "pack:2:0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=2400)
    parser.add_argument("--steps", type=int, default=300, help="updates per run (batch size 32)")
    parser.add_argument("--log-step", type=int, default=25)
    parser.add_argument("--cases", nargs="+", default=CASES, help="files|pack:workers:prefetch_batches, first = baseline")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ks_"))
    try:
        build_tree(work / "sc", args.num_clips)
        rows = [(case, run_case(work / "sc", work / f"exp-{i}", case, args.steps, args.log_step, args.device, PROBE))
                for i, case in enumerate(args.cases)]
    finally:
        shutil.rmtree(work)
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print("| device | clips from | DataLoader workers | prefetch_batches | utterances/s | vs first row | data wait |")
    print("|---|---|---|---|---|---|---|")
    first = rows[0][1]["utt_per_s"]
    for case, r in rows:
        pack, workers, prefetch = case.split(":")
        print(f"| {name} | {pack} | {workers} | {prefetch} | {r['utt_per_s']:,.0f} | {r['utt_per_s'] / first:.2f}x "
              f"| {100 * r['data_wait']:.1f} % |")
    print(f"(load average after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
