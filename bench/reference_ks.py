"""The plain ks reference (issues 24, 25): the yardstick the ks default must reach, not tuned on test.

    .venv/bin/python bench/reference_ks.py --root ~/.cache/speechrecipe-calibration/speech_commands_ks_small/speech_commands \
        --released ~/.cache/speechrecipe-calibration/speech_commands_ks_small/released_test

A speech engineer's short script, not the toolkit: reads Speech Commands' layout (validation_list.txt,
testing_list.txt, the rest trains; the ten command words, every other word `_unknown_`, and
round(0.1 x word clips) 1 s `_silence_` crops of _background_noise_/ per split, from the first 80 % /
next 10 % / last 10 % of each recording for train / valid / test, drawn as the toolkit's stage 0
draws them, so the test split is the same clips). 40 log-mel bins of clips padded to 1 s, minus each
clip's mean; a TDNN of 5 layers x 128 channels (kernels 5, 3, 3, 1, 1; dilations 1, 2, 3, 1, 1),
statistics pooling, a 128-unit layer, a linear layer over the 12 classes; `--updates` Adam updates of
`--batch` clips drawn as the train split holds them (plain shuffle), a one-cycle learning rate (max
3e-3), no augmentation. The last model is tested once; prints (and with --out appends) one JSON line:
accuracy and balanced accuracy (mean per-class recall) with 95 % bootstrap intervals by utterance on
valid, test and the released test set, always-`_unknown_` beside them, training utterances/s.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = (*COMMANDS, "_unknown_", "_silence_")
RATE = 16000
REGIONS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}


def clip(audio: np.ndarray) -> torch.Tensor:
    """The first second, zero-padded to exactly 1 s."""
    out = torch.zeros(RATE)
    out[:min(len(audio), RATE)] = torch.from_numpy(audio[:RATE])
    return out


def read_splits(root: Path, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{split: (clips [N, 16000], class indices [N])} for train, valid and test."""
    listed = {}
    for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        listed |= {line.strip(): split for line in (root / name).read_text().splitlines() if line.strip()}
    noises = [sf.read(p, dtype="float32")[0] for p in sorted((root / "_background_noise_").glob("*.wav"))]
    splits: dict[str, tuple[list, list]] = {s: ([], []) for s in REGIONS}
    for path in sorted(root.glob("*/*.wav")):
        word = path.parent.name
        if word != "_background_noise_":
            audio, labels = splits[listed.get(f"{word}/{path.name}", "train")]
            audio.append(clip(sf.read(path, dtype="float32")[0]))
            labels.append(CLASSES.index(word if word in COMMANDS else "_unknown_"))
    for split, (audio, labels) in splits.items():  # the toolkit's crops: same seed string, same draws
        low, high = REGIONS[split]
        spans = [(n, int(low * len(n)), int(high * len(n)) - RATE) for n in noises]
        rng = random.Random(f"{seed}/silence/{split}")
        for _ in range(round(0.1 * len(labels))):
            noise, first, last = spans[rng.randrange(len(spans))]
            start = rng.randint(first, last)
            audio.append(clip(noise[start:start + RATE]))
            labels.append(CLASSES.index("_silence_"))
    return {s: (torch.stack(a), torch.tensor(y)) for s, (a, y) in splits.items()}


def read_released(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A released test set: <label>/<file>.wav, labels being command words, _unknown_ or _silence_."""
    paths = sorted(folder.glob("*/*.wav"))
    labels = [CLASSES.index(p.parent.name if p.parent.name in CLASSES else "_unknown_") for p in paths]
    return torch.stack([clip(sf.read(p, dtype="float32")[0]) for p in paths]), torch.tensor(labels)


class TDNN(nn.Module):
    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(RATE, n_fft=512, win_length=400, hop_length=160, n_mels=40)
        layers, width = [], 40
        for k, d, out in ((5, 1, channels), (3, 2, channels), (3, 3, channels), (1, 1, channels), (1, 1, 3 * channels)):
            layers += [nn.Conv1d(width, out, k, dilation=d), nn.ReLU(), nn.BatchNorm1d(out)]
            width = out
        self.frames = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * width, channels), nn.ReLU(), nn.BatchNorm1d(channels),
                                  nn.Linear(channels, len(CLASSES)))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = (self.mel(audio) + 1e-6).log()
        x = self.frames(x - x.mean(-1, keepdim=True))
        return self.head(torch.cat([x.mean(-1), x.std(-1)], dim=1))  # statistics pooling


def scores(predicted: np.ndarray, truth: np.ndarray, seed: int, resamples: int = 1000) -> dict:
    """Accuracy and balanced accuracy (%) with 95 % bootstrap intervals, resampling utterances."""
    def both(p, t):
        recalls = [np.mean(p[t == c] == c) for c in np.unique(t)]
        return np.mean(p == t), np.mean(recalls)

    rng = np.random.default_rng(seed)
    draws = np.array([both(predicted[i], truth[i]) for i in rng.integers(len(truth), size=(resamples, len(truth)))])
    out = {}
    for k, name in enumerate(("accuracy", "balanced_accuracy")):
        low, high = np.percentile(draws[:, k], [2.5, 97.5])
        out[name] = [round(100 * both(predicted, truth)[k], 2), round(100 * low, 2), round(100 * high, 2)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="the Speech Commands folder")
    p.add_argument("--released", type=Path, help="a released test set folder (<label>/<file>.wav)")
    p.add_argument("--updates", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", type=Path, help="append the JSON line to this file")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    data = read_splits(args.root, args.seed)
    if args.released:
        data["released"] = read_released(args.released)
    model = TDNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.updates)
    audio, labels = data["train"]
    order, start = [], time.perf_counter()
    for step in range(1, args.updates + 1):
        if len(order) < args.batch:  # a fresh shuffle of the train split each epoch
            order = torch.randperm(len(labels)).tolist()
        batch, order = order[:args.batch], order[args.batch:]
        loss = nn.functional.cross_entropy(model(audio[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"update {step}/{args.updates}: loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    result = {"model": "reference TDNN", "updates": args.updates, "batch": args.batch,
              "utterances_seen": args.updates * args.batch, "train_utt_per_s": round(args.updates * args.batch / seconds, 1)}
    with torch.no_grad():
        for split in ("valid", "test", "released"):
            if split in data:
                x, y = data[split]
                predicted = torch.cat([model(x[i:i + 256]).argmax(-1) for i in range(0, len(y), 256)]).numpy()
                result[split] = {"clips": len(y), **scores(predicted, y.numpy(), args.seed),
                                 "always_unknown": scores(np.full(len(y), CLASSES.index("_unknown_")), y.numpy(), args.seed)}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
