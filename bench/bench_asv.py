"""asv training throughput: speechrecipe's whole pipeline against a bare PyTorch loop, same run.

    .venv/bin/python bench/bench_asv.py --steps 40

1. bare: the loop a researcher would write by hand, on features already in memory: 5-layer
   512-channel x-vector (Conv1d + ReLU + BatchNorm1d, statistics pooling over 1500 channels,
   512-d embedding), a linear softmax classifier, Adam, batch 32 x 200 frames of 80-dim
   features (32 x 2 s). No data loading, no feature extraction, no checkpointing. Measured
   twice, each in its own process: with glibc's default malloc, and with the malloc settings
   speechrecipe applies in training (engine/allocator.py), so the efficiency ratio compares
   pipelines on the same allocator.
2. speechrecipe: `speechrecipe run asv --stop 2` with the defaults (the same x-vector and
   batch, AM-softmax) on the bundled mini corpus, in its own process: reading audio, random
   crops, fbank on the fly, padding-aware BatchNorm, progress bar, logs. Rates are averaged over
   train_log.jsonl's windows after the first.
3. SUPERB workload: recipes/voxceleb1/asv.yaml (SUPERB ASV: 10 utterances x 5 accumulated
   batches, crops of at most 8 s) on the mini corpus; audio seconds per second against the bare
   loop's. s3prl itself runs side by side in bench/bench_vs_s3prl.py.

Prints a Markdown table; efficiency = speechrecipe utt/s / bare utt/s.
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

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent


class BareXVector(nn.Module):
    def __init__(self, speakers: int = 24):
        super().__init__()
        dims, layers = [80, 512, 512, 512, 512, 1500], ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))
        blocks = []
        for i, (kernel, dilation) in enumerate(layers):
            blocks += [nn.Conv1d(dims[i], dims[i + 1], kernel, dilation=dilation), nn.ReLU(), nn.BatchNorm1d(dims[i + 1])]
        self.frames = nn.Sequential(*blocks)
        self.segment = nn.Linear(3000, 512)
        self.classifier = nn.Linear(512, speakers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.frames(feats)
        return self.classifier(self.segment(torch.cat([x.mean(2), x.std(2)], dim=1)))


def bare_loop(steps: int, batch: int = 32, frames: int = 200) -> float:
    """Utterances per second of the hand-written loop (after 3 warm-up steps)."""
    torch.manual_seed(0)
    model = BareXVector()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    feats, labels = torch.randn(batch, 80, frames), torch.randint(0, 24, (batch,))
    for k in range(steps + 3):
        if k == 3:
            start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(feats), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def bare_in_process(steps: int, tuned_malloc: bool) -> float:
    """bare_loop in a fresh process, with or without speechrecipe's malloc settings."""
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'bench')!r}]\n"
            + ("from speechrecipe.engine.allocator import keep_freed_memory; keep_freed_memory()\n" if tuned_malloc else "")
            + f"from bench_asv import bare_loop; print(bare_loop({steps}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def pipeline(work: Path, name: str, steps: int, log_step: int, *args: str) -> dict:
    """Average train-log rates of one `speechrecipe run asv --stop 2` after its first window."""
    target = work / name
    command = [sys.executable, "-m", "speechrecipe", "run", "asv", "--stop", "2", "--target-dir", str(target), *args,
               f"train.total_steps={steps}", f"train.log_step={log_step}", f"train.eval_step={steps}",
               f"train.save_step={steps}"]
    env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(work / "cache")}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [json.loads(l) for l in (target / "train_log.jsonl").read_text().splitlines()]
    windows = [e for e in events if e["event"] == "train"][1:]
    return {key: sum(e[key] for e in windows) / len(windows) for key in ("utt_per_s", "audio_s_per_s", "data_wait")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="updates per measurement")
    parser.add_argument("--s3prl-steps", type=int, default=8, help="updates of the s3prl workload (50 utterances each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = bare_in_process(args.steps, tuned_malloc=False)
        bare = bare_in_process(args.steps, tuned_malloc=True)
        ours = pipeline(work, "default", args.steps, 10)
        s3prl = pipeline(work, "s3prl", args.s3prl_steps, 2, "-c", str(REPO / "recipes" / "voxceleb1" / "asv.yaml"),
                         f"prepare_data.dataset_root={REPO / 'speechrecipe' / 'assets' / 'mini' / 'voxceleb1'}",
                         "prepare_data.num_valid_trials=2000", "--num-workers", "2")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}\n")
    print("| run | utt/s | audio s/s | data wait | ratio |")
    print("|---|---|---|---|---|")
    print(f"| bare loop, features in memory (32 x 2 s), glibc default malloc | {plain:.1f} | {2 * plain:.1f} | - | "
          f"{plain / bare:.2f} |")
    print(f"| bare loop, features in memory (32 x 2 s), speechrecipe's malloc settings | {bare:.1f} | {2 * bare:.1f} | - | 1.00 |")
    print(f"| speechrecipe asv defaults (32 x 2 s crops) | {ours['utt_per_s']:.1f} | {ours['audio_s_per_s']:.1f} | "
          f"{100 * ours['data_wait']:.1f} % | {ours['utt_per_s'] / bare:.2f} of bare |")
    print(f"| speechrecipe, SUPERB ASV workload (10 x 5, crops of at most 8 s) | {s3prl['utt_per_s']:.1f} | "
          f"{s3prl['audio_s_per_s']:.1f} | {100 * s3prl['data_wait']:.1f} % | "
          f"{s3prl['audio_s_per_s'] / (2 * bare):.2f} of bare per audio second |")


if __name__ == "__main__":
    main()
