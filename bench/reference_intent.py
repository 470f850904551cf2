"""The plain intent reference (issue 25): the yardstick the intent default must reach, not tuned on test.

    .venv/bin/python bench/reference_intent.py --root ~/.cache/speechrecipe-calibration/fluent_speech_commands_small

A speech engineer's 100 lines, not the toolkit: reads Fluent Speech Commands' data/{train,valid,
test}_data.csv, 80 log-mel bins with mean normalisation, a TDNN of 5 layers x 256 channels (kernels
5, 3, 3, 3, 1; dilations 1, 2, 3, 4, 1), statistics pooling over valid frames, one linear head per
slot (action, object, location; losses summed); 300 updates of 32 whole utterances, Adam with a
one-cycle learning rate (max 2e-3). The last model is tested; an utterance counts when all three
slots are right. Prints (and with --out appends) one JSON line: test and valid accuracy with 95 %
bootstrap intervals, per-slot test accuracy, the majority intent, training utterances/s.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_common import Features, epochs, interval, pad, read_audio, report, stats_pool, tdnn, train  # noqa: E402

SLOTS = ("action", "object", "location")


class IntentTDNN(nn.Module):
    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.features = Features()
        self.frames = tdnn(256, kernels=(5, 3, 3, 3, 1), dilations=(1, 2, 3, 4, 1))
        self.heads = nn.ModuleList(nn.Linear(512, n) for n in sizes)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> list[torch.Tensor]:
        pooled = stats_pool(self.frames(self.features(audio, frames)), frames)
        return [head(pooled) for head in self.heads]


def load_split(root: Path, split: str) -> list[tuple[torch.Tensor, tuple[str, ...]]]:
    with open(root / "data" / f"{split}_data.csv", newline="") as f:
        return [(read_audio(root / row["path"]), tuple(row[s] for s in SLOTS)) for row in csv.DictReader(f)]


def accuracy(model: nn.Module, items: list, classes: list[dict[str, int]], seed: int) -> dict:
    model.eval()
    with torch.no_grad():
        right = np.array([[int(scores.argmax(1)) == classes[k].get(labels[k], -1)
                           for k, scores in enumerate(model(*pad([audio])))] for audio, labels in items], dtype=float)
    every = right.all(1).astype(float)
    return {"accuracy": round(100 * every.mean(), 1), "interval": interval(every, seed), "n": len(items),
            **{f"accuracy_{s}": round(100 * right[:, k].mean(), 1) for k, s in enumerate(SLOTS)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", type=Path, help="append the result line here")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    root = args.root.expanduser()
    train_items, valid_items, test_items = (load_split(root, s) for s in ("train", "valid", "test"))
    classes = [{v: i for i, v in enumerate(sorted({labels[k] for _, labels in train_items}))} for k in range(len(SLOTS))]
    model = IntentTDNN([len(c) for c in classes])
    batches = epochs(len(train_items), args.batch_size, torch.Generator().manual_seed(args.seed))

    def next_batch():
        chosen = [train_items[i] for i in next(batches)]
        labels = torch.tensor([[classes[k][lab[k]] for k in range(len(SLOTS))] for _, lab in chosen])
        return (*pad([audio for audio, _ in chosen]), labels)

    def loss_of(batch):
        audio, frames, labels = batch
        return sum(nn.functional.cross_entropy(scores, labels[:, k]) for k, scores in enumerate(model(audio, frames)))

    speed = train(model, loss_of, next_batch, args.updates, args.max_lr)
    majority = Counter(labels for _, labels in train_items).most_common(1)[0][0]
    test_majority = np.array([labels == majority for _, labels in test_items], dtype=float)
    report({"reference": "intent", "root": str(args.root), "updates": args.updates, "batch_size": args.batch_size,
            "max_lr": args.max_lr, "seed": args.seed, **speed,
            "test": accuracy(model, test_items, classes, args.seed), "valid": accuracy(model, valid_items, classes, args.seed),
            "majority_test": {"accuracy": round(100 * test_majority.mean(), 1)}}, args.out)


if __name__ == "__main__":
    main()
