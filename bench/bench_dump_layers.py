"""dump.layers on an SSL model: the transformer layers after the last one kept are not run (dump-feature).

    .venv/bin/python bench/bench_dump_layers.py [--threads 2] [--rounds 5]

wav2vec2-base (random weights: the work is that of trained ones) on a batch of 2 x 5 s, computing every hidden
state (13) against stopping after hidden state 6 and after hidden state 1, alternated within each round; the
median round is kept. Checks that the hidden states computed are those of the full run bit for bit.
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import torch

    from speechrecipe.nn.upstream import build_upstream

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    upstream = build_upstream("wav2vec2", size="base").eval()
    wavs, lens = torch.randn(2, 80000), torch.tensor([80000, 70000])
    cases = {"every hidden state (13)": None, "dump.layers=[6]": 6, "dump.layers=[1]": 1}
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        full, _ = upstream(wavs, lens)
        same = {}
        for name, last in cases.items():
            upstream.last_layer = last
            hidden, _ = upstream(wavs, lens)
            same[name] = all(torch.equal(a, b) for a, b in zip(hidden, full))
        for _ in range(args.rounds):
            for name, last in cases.items():
                upstream.last_layer = last
                start = time.perf_counter()
                upstream(wavs, lens)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["every hidden state (13)"])
    print(f"| hidden states computed ({args.threads} threads) | s per batch of 2 x 5 s | time against all 13 | same values |")
    print("|---|---|---|---|")
    for name in cases:
        t = statistics.median(times[name])
        print(f"| {name} | {t:.3f} | {t / base:.2f} | {'bit for bit' if same[name] else 'NO'} |")


if __name__ == "__main__":
    main()
