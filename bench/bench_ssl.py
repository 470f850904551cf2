"""wav2vec2-base as a frozen upstream on the CPU: forward throughput with padded random batches against
length-bucketed (sorted) batches, interleaved A B A B (the ratio per round, then its median); and the size of a step checkpoint with the frozen
upstream referenced (speechrecipe) against what s3prl's downstream runner would store.

    .venv/bin/python bench/bench_ssl.py [--utterances 16] [--min-secs 0.5] [--max-secs 4] [--batch 4] [--rounds 3]

Random weights (nothing can be downloaded here): the work per second of audio is the same as with
trained ones. Prints a Markdown table; the figures go to bench/RESULTS.md with `uptime`.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import time

import torch

from speechrecipe.nn.featurizer import Featurizer
from speechrecipe.nn.heads import UtteranceClassifier
from speechrecipe.nn.ssl_upstream import SSLUpstream

RATE = 16000


def batches(lengths: list[int], size: int, bucketed: bool, seed: int) -> list[list[int]]:
    """Indices in batches of `size`: shuffled (padded random) or sorted by length (bucketed), batch order shuffled."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    rng.shuffle(order)
    if bucketed:
        order.sort(key=lambda i: lengths[i])
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    return groups


@torch.inference_mode()
def forward_pass(upstream: SSLUpstream, wavs: list[torch.Tensor], groups: list[list[int]]) -> tuple[float, float, float]:
    """(seconds, valid audio seconds, padded audio seconds) of one pass over the batches."""
    began, valid, padded = time.perf_counter(), 0, 0
    for group in groups:
        longest = max(wavs[i].numel() for i in group)
        batch = torch.zeros(len(group), longest)
        for row, i in enumerate(group):
            batch[row, : wavs[i].numel()] = wavs[i]
        lens = torch.tensor([wavs[i].numel() for i in group])
        upstream(batch, lens)
        valid, padded = valid + int(lens.sum()), padded + longest * len(group)
    return time.perf_counter() - began, valid / RATE, padded / RATE


def throughput(args) -> None:
    upstream = SSLUpstream("wav2vec2", "base").eval()
    rng = random.Random(0)
    lengths = [rng.randint(int(args.min_secs * RATE), int(args.max_secs * RATE)) for _ in range(args.utterances)]
    wavs = [0.1 * torch.randn(n, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(lengths)]
    forward_pass(upstream, wavs[:1], [[0]])  # warm-up
    names = {"padded random": False, "length-bucketed": True}
    rows: dict[str, list] = {name: [] for name in names}
    for r in range(args.rounds):  # interleaved: A B A B ...
        for name, bucketed in names.items():
            rows[name].append(forward_pass(upstream, wavs, batches(lengths, args.batch, bucketed, seed=r)))
    print(f"\nwav2vec2-base, frozen, {args.utterances} utterances of {args.min_secs}-{args.max_secs} s "
          f"({sum(lengths) / RATE:.0f} s of audio), batches of {args.batch}, {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f} at the end\n")
    print("| batches | audio-s/s, median (per round) | padded samples | ratio to padded random, median of rounds |")
    print("|---|---|---|---|")
    speeds = {name: [valid / secs for secs, valid, _ in runs] for name, runs in rows.items()}
    for name, runs in rows.items():
        pad = 1 - sum(v for _, v, _ in runs) / sum(p for _, _, p in runs)
        ratios = [s / b for s, b in zip(speeds[name], speeds["padded random"])]
        print(f"| {name} | {statistics.median(speeds[name]):.2f} ({', '.join(f'{s:.2f}' for s in speeds[name])}) "
              f"| {pad:.0%} | {statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}) |")


def nbytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def checkpoint_sizes() -> None:
    """The tensors a step checkpoint holds for the ks linear probe on a frozen/fine-tuned wav2vec2-base."""
    upstream = SSLUpstream("wav2vec2", "base")
    featurizer = Featurizer(upstream.num_layers, upstream.output_dim)
    downstream = UtteranceClassifier(upstream.output_dim, [12], pooling="mean", hidden_dim=256)

    def adam_state(params: list[torch.nn.Parameter]) -> dict:
        optimizer = torch.optim.Adam(params, lr=1e-3)
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        return optimizer.state_dict()

    task = torch.nn.ModuleDict({"upstream": upstream, "featurizer": featurizer, "downstream": downstream})
    probe = list(featurizer.parameters()) + list(downstream.parameters())
    ours = nbytes({"model": task.state_dict(), "optimizer": adam_state(probe)})
    from speechrecipe.nn.ssl_upstream import full_state_dict

    with full_state_dict(task):  # what the trainer wrote before frozen upstreams were referenced
        copied = nbytes({"model": task.state_dict(), "optimizer": adam_state(probe)})
    upstream_only = nbytes(upstream.model.state_dict())
    s3prl_frozen = nbytes({"Featurizer": featurizer.state_dict(), "Downstream": downstream.state_dict(),
                           "Optimizer": adam_state(probe)})
    upstream.model.requires_grad_(True)
    s3prl_finetune = nbytes({"Upstream": upstream.model.state_dict(), "Featurizer": featurizer.state_dict(),
                             "Downstream": downstream.state_dict(), "Optimizer": adam_state(list(task.parameters()))})
    print("\n| checkpoint (ks linear probe on wav2vec2-base) | MB | ratio to ours |\n|---|---|---|")
    for name, size in (("speechrecipe, frozen upstream referenced by digest", ours),
                       ("speechrecipe before (task.state_dict() with the frozen upstream)", copied),
                       ("s3prl, frozen upstream (not trainable: not saved)", s3prl_frozen),
                       ("s3prl, upstream fine-tuned (-f): upstream + Adam moments every save", s3prl_finetune),
                       ("the upstream's state dict alone", upstream_only)):
        print(f"| {name} | {size / 1e6:.2f} | {size / ours:.0f}x |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--utterances", type=int, default=16)
    parser.add_argument("--min-secs", type=float, default=0.5)
    parser.add_argument("--max-secs", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    checkpoint_sizes()
    if not args.skip_throughput:
        throughput(args)


if __name__ == "__main__":
    main()
