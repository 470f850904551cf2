"""A BiLSTM head over a batch on the CPU: one packed batch against one sequence at a time (issue 26).

    .venv/bin/python bench/bench_lstm_eval.py [--threads 1 2] [--repeats 20]

nn/heads.py's CTCHead (asr, diarization) runs its LSTM over each sequence alone on the CPU when the lengths
differ, because torch's LSTM over a packed batch of unequal lengths leaves its fast path there. This times both
ways (diarization's default head: 2 layers x 128 units per direction over 3 stacked 40-mel frames; asr's: 160
units over 3 stacked 80-mel frames), with equal lengths for comparison, in evaluation (forward, inference mode)
and in training (forward and backward of the summed squares), and prints the largest output difference.
"""
from __future__ import annotations

import argparse
import statistics
import time

CASES = [  # (head, input dim, hidden units, lengths in output frames)
    ("diarization: 3 chunks of 8 s, the last one shorter", 120, 128, [266, 266, 200]),
    ("diarization: 3 full chunks of 8 s (equal lengths)", 120, 128, [266, 266, 266]),
    ("asr: 4 utterances of 10-15 s", 240, 160, [500, 470, 420, 333]),
    ("asr: 16 utterances of 2-4 s", 240, 160, list(range(133, 133 + 16 * 4, 4))),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from speechrecipe.nn.heads import CTCHead

    torch.manual_seed(0)
    print("| batch | mode | threads | packed batch (ms) | one sequence at a time (ms) | speed-up | largest difference |")
    print("|---|---|---|---|---|---|---|")
    for what, dim, hidden, lengths in CASES:
        head = CTCHead(dim, vocab_size=2, hidden_dim=hidden, kind="lstm", subsample=1).eval()
        lens = torch.tensor(lengths)
        x = torch.randn(len(lengths), max(lengths), dim)

        def packed():
            out = head.encoder(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))[0]
            return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

        def alone():
            return head._lstm_by_sequence(x, lens)

        with torch.inference_mode():
            difference = float((packed() - alone()).abs().max())
        for mode in ("evaluation", "training"):
            def run(fn, mode=mode):
                if mode == "evaluation":
                    with torch.inference_mode():
                        return fn()
                fn().square().sum().backward()

            head.train(mode == "training")
            x.requires_grad_(mode == "training")
            for threads in args.threads:
                torch.set_num_threads(threads)
                run(packed), run(alone)  # warm-up
                times = {packed: [], alone: []}
                for _ in range(args.repeats):
                    for fn in times:
                        start = time.perf_counter()
                        run(fn)
                        times[fn].append(time.perf_counter() - start)
                p, a = (statistics.median(times[fn]) * 1000 for fn in (packed, alone))
                print(f"| {what} | {mode} | {threads} | {p:.1f} | {a:.1f} | {p / a:.2f} | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
