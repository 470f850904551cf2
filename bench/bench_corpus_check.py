"""What noticing an edited corpus costs each run: data/corpus_state.py on a 100k-file VoxCeleb1 tree.

    .venv/bin/python bench/bench_corpus_check.py --num-files 100000

Builds the tree of bench_prepare.py (100 utterances per speaker in 10 video folders, a trial
list), prepares it once (check_audio=header), then times, median of 5: `digest_now` (what every
`run`, `stages` and `--dry-run` computes for stage 0: one stat a folder, a sha256 of the trial
list) against a baseline of one os.stat per audio file (what watching every file would cost),
and against the stage-0 preparation itself.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_prepare import build_tree  # noqa: E402

from speechrecipe.data import corpus_state  # noqa: E402
from speechrecipe.data.corpora.voxceleb1 import prepare_voxceleb1_verification  # noqa: E402
from speechrecipe.data.manifest import read_jsonl  # noqa: E402


def median_seconds(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-files", type=int, default=100000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_corpus_") as work:
        root, cache = Path(work) / "vox", Path(work) / "cache"
        build_tree(root, args.num_files)
        cache.mkdir()
        began = time.perf_counter()
        prepare_voxceleb1_verification(root=root, out_dir=cache, test_sets=[{"name": "o", "trial_file": "veri_test2.txt"}],
                                       check_audio="header", num_workers=2)
        prepare_s = time.perf_counter() - began
        corpus_state.record(cache, [root / "veri_test2.txt"], root)
        state = corpus_state.recorded(cache)
        paths = [row["path"] for m in cache.glob("*.jsonl") for row in read_jsonl(m)]
        check = median_seconds(lambda: corpus_state.digest_now(state))
        baseline = median_seconds(lambda: [os.stat(p) for p in paths])
    print("| audio files | folders watched | check (digest_now) | baseline: stat every file | stage 0, header check |")
    print("|---|---|---|---|---|")
    print(f"| {len(paths):,} | {len(state['folders']):,} | {1000 * check:.0f} ms ({check / baseline:.2f}x) "
          f"| {1000 * baseline:.0f} ms (1.00x) | {prepare_s:.1f} s ({check / prepare_s:.3f}x) |")
    print(f"(load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
