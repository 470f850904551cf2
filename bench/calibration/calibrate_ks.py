"""Calibrate the ks default on the calibration corpus (make_ks_corpus.py): choose on valid, then test once.

    .venv/bin/python bench/calibration/calibrate_ks.py --case default --case balanced build_batch_sampler.balance_by=label
    .venv/bin/python bench/calibration/calibrate_ks.py --test --case default

Each case is `speechrecipe run ks` with the corpus, its released test set and the case's overrides, in its
own target_dir under --work (a case already trained is not trained again). Without --test it stops after
training (stage 2) and prints the valid_best checkpoint's validation accuracy and balanced accuracy (the
choice is made on these); with --test it runs stages 3-4, which read the test splits, and prints the
results with their 95 % intervals: run it only for the cases you keep.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from make_ks_corpus import CALIBRATION_ROOT

CORPUS = CALIBRATION_ROOT / "speech_commands_ks_small"
BIN = Path(sys.executable).parent


def best_validation(train_log: Path) -> dict:
    """The validation event with the best accuracy (valid_best: the first of equals)."""
    events = [json.loads(line) for line in train_log.read_text().splitlines()]
    valid = [e for e in events if e.get("event") == "valid"]
    return max(valid, key=lambda e: (e[e["metric"]], -e["step"]))


def show(entry: dict, key: str) -> str:
    i = entry["intervals"][key]
    return f"{100 * entry[key]:.1f} ({100 * i['low']:.1f}-{100 * i['high']:.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", nargs="+", action="append", required=True, metavar="NAME [KEY=VALUE ...]")
    p.add_argument("--corpus", type=Path, default=CORPUS, help="make_ks_corpus.py's --out")
    p.add_argument("--work", type=Path, default=CALIBRATION_ROOT / "ks_runs")
    p.add_argument("--test", action="store_true", help="also stages 3-4: read the test splits (once per kept case)")
    args = p.parse_args()
    for name, *overrides in args.case:
        target = args.work / name
        data = [f"prepare_data.dataset_root={args.corpus / 'speech_commands'}",
                f"prepare_data.released_test_dir={args.corpus / 'released_test'}"]
        command = [str(BIN / "speechrecipe"), "run", "ks", "--target-dir", str(target), "--stop", "4" if args.test else "2",
                   *data, *overrides]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        best = best_validation(target / "train_log.jsonl")
        line = (f"{name}: valid_best step {best['step']}: valid accuracy {100 * best['accuracy']:.1f}, "
                f"balanced {100 * best['balanced_accuracy']:.1f}")
        if args.test:
            results = json.loads((target / "results" / "results.json").read_text())
            line += "".join(f"; {s} accuracy {show(r, 'accuracy')}, balanced {show(r, 'balanced_accuracy')}"
                            for s, r in results.items())
        print(line, flush=True)


if __name__ == "__main__":
    main()
