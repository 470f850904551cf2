"""The plain sid reference (issue 25): the yardstick the sid default must reach, not tuned on test.

    .venv/bin/python bench/reference_sid.py --root ~/.cache/speechrecipe-calibration/voxceleb1_sid_hard

A speech engineer's 100 lines, not the toolkit: reads VoxCeleb1's iden_split.txt (1 train, 2 dev,
3 test), 80 log-mel bins with mean normalisation, a TDNN of 5 layers x 512 channels (kernels 5, 3,
3, 1, 1; dilations 1, 2, 3, 1, 1), statistics pooling, a 512-unit embedding, a linear layer over the
speakers; 200 updates of 32 random 2 s crops, Adam with a one-cycle learning rate (max 1e-3). The
last model is tested on whole utterances; prints (and with --out appends) one JSON line: test and
dev accuracy with 95 % bootstrap intervals, the majority class, training utterances/s.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_common import Features, epochs, interval, pad, read_audio, report, stats_pool, tdnn, train  # noqa: E402


class XVector(nn.Module):
    def __init__(self, n_speakers: int) -> None:
        super().__init__()
        self.features = Features()
        self.frames = tdnn(512, kernels=(5, 3, 3, 1, 1), dilations=(1, 2, 3, 1, 1))
        self.embedding = nn.Sequential(nn.Linear(1024, 512), nn.ReLU(), nn.BatchNorm1d(512))
        self.classify = nn.Linear(512, n_speakers)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embedding(stats_pool(self.frames(self.features(audio, frames)), frames)))


def load_split(root: Path) -> dict[int, list[tuple[torch.Tensor, str]]]:
    """{1|2|3: [(audio, speaker)]} from iden_split.txt."""
    splits: dict[int, list] = {1: [], 2: [], 3: []}
    for line in (root / "iden_split.txt").read_text().split("\n"):
        if line.strip():
            mark, rel = line.split()
            splits[int(mark)].append((read_audio(root / "wav" / rel), rel.split("/")[0]))
    return splits


def accuracy(model: nn.Module, items: list, classes: dict[str, int], seed: int) -> dict:
    model.eval()
    with torch.no_grad():
        correct = np.array([int(model(*pad([audio])).argmax(1)) == classes[spk] for audio, spk in items], dtype=float)
    return {"accuracy": round(100 * correct.mean(), 1), "interval": interval(correct, seed), "n": len(items)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-lr", type=float, default=1e-3)
    p.add_argument("--crop-secs", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", type=Path, help="append the result line here")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    splits = load_split(args.root.expanduser())
    train_items = splits[1]
    classes = {spk: i for i, spk in enumerate(sorted({spk for _, spk in train_items}))}
    model = XVector(len(classes))
    generator = torch.Generator().manual_seed(args.seed)
    batches = epochs(len(train_items), args.batch_size, generator)
    crop = int(args.crop_secs * 16000)

    def next_batch():
        clips, labels = [], []
        for i in next(batches):
            audio, spk = train_items[i]
            start = int(torch.randint(max(1, len(audio) - crop + 1), (1,), generator=generator))
            clips.append(audio[start:start + crop])
            labels.append(classes[spk])
        return (*pad(clips), torch.tensor(labels))

    def loss_of(batch):
        audio, frames, labels = batch
        return nn.functional.cross_entropy(model(audio, frames), labels)

    speed = train(model, loss_of, next_batch, args.updates, args.max_lr)
    majority = Counter(spk for _, spk in train_items).most_common(1)[0][0]
    test_majority = np.array([spk == majority for _, spk in splits[3]], dtype=float)
    report({"reference": "sid", "root": str(args.root), "updates": args.updates, "batch_size": args.batch_size,
            "max_lr": args.max_lr, "seed": args.seed, **speed,
            "test": accuracy(model, splits[3], classes, args.seed), "dev": accuracy(model, splits[2], classes, args.seed),
            "majority_test": {"accuracy": round(100 * test_majority.mean(), 1)}}, args.out)


if __name__ == "__main__":
    main()
