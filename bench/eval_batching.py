"""Do issue 26's evaluation changes move what a trained model outputs?

    .venv/bin/python bench/eval_batching.py TARGET_DIR MANIFEST [--secs 240 60] [--problem P]

Runs MANIFEST's rows through `speechrecipe.load(TARGET_DIR)` (stage 3's loop): first as before issue 26
(the first --secs as build_batch_sampler.eval_batch_secs, the fbank of each batch in one piece), then with
each further --secs and the fbank in blocks of rows (nn/upstream.py, now), and compares the outputs with the
first: for ks, sid and intent the predicted labels and the largest probability difference, for asv the
largest embedding difference. Batches are padded and every model masks its padding, so only float rounding
should differ.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def outputs(model, rows: list[dict]):
    import torch

    from speechrecipe.inference.models import Classifier

    if isinstance(model, Classifier):
        found = model.run_rows(rows)
        labels = [tuple(r[f] for f in model.encoder) for r in found]
        probs = torch.tensor([[p for f in model.encoder for p in r[f"{f}_probs"].values()] for r in found])
        return labels, probs
    return None, torch.stack(model.run_rows(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target_dir", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--problem", help="for a target_dir from before experiment.json")
    parser.add_argument("--secs", type=float, nargs="+", default=[240.0, 60.0])
    args = parser.parse_args()
    import logging

    import speechrecipe
    from speechrecipe.data.manifest import read_jsonl
    from speechrecipe.nn import upstream

    logging.disable(logging.WARNING)
    model = speechrecipe.load(args.target_dir, problem=args.problem)
    rows = read_jsonl(args.manifest)
    first = None
    blocks = upstream.SPECTRUM_BLOCK_SAMPLES
    for secs in args.secs:
        model.conf.build_batch_sampler.eval_batch_secs = secs
        upstream.SPECTRUM_BLOCK_SAMPLES = 10**12 if first is None else blocks
        labels, values = outputs(model, rows)
        if first is None:
            first = (secs, labels, values)
            continue
        same = None if labels is None else sum(a == b for a, b in zip(labels, first[1]))
        print(json.dumps({"target_dir": str(args.target_dir), "rows": len(rows), "against": first[0], "secs": secs,
                          "same_labels": same, "max_abs_diff": float((values - first[2]).abs().max())}))


if __name__ == "__main__":
    main()
