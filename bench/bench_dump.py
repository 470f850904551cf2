"""dump-feature: dump throughput against a bare loop, and asv training on precomputed against on-the-fly fbank.

    .venv/bin/python bench/bench_dump.py --repeats 2 --steps 40

1. Dump: every audio file of the four bundled mini corpora (977 files), as a `list` corpus, 80-bin
   fbank to float16. "dump-feature" is `speechrecipe run dump-feature` in its own process, in a fresh
   target_dir each time (stage 0 comes from the cache); its rate is results.json's audio_s_per_s, the
   audio seconds over the shards' compute time (reading, fbank, writing; the process start is not
   counted). "bare" is the loop a researcher would write, in this process: per file read_audio, Fbank on
   it alone, `.half().numpy().tobytes()` appended to one file. Alternated A B A B ...
2. asv: `speechrecipe run asv --stop 2` on the mini VoxCeleb1 with the defaults (fbank on the fly, 1
   worker) against the same on a dump of the same corpus (build_upstream.name=precomputed), and against
   the dump with 0 workers + a 2-batch prefetch thread; rates are train_log.jsonl's windows after the
   first, alternated.
Prints Markdown tables and the load.
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

REPO = Path(__file__).resolve().parent.parent
MINI = REPO / "speechrecipe" / "assets" / "mini"


def cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "speechrecipe", "run", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dump_rate(work: Path, env: dict, listing: Path, k: int) -> float:
    target = work / f"dump-{k}"
    cli(env, "dump-feature", "--target-dir", str(target), "prepare_data.corpus=list", f"prepare_data.list_file={listing}")
    return json.loads((target / "results" / "results.json").read_text())["audio_s_per_s"]


def bare_rate(rows: list[dict], out: Path) -> float:
    """read, fbank, write: one file at a time, no batching, no shards, no index."""
    from speechrecipe.data.audio import read_audio
    from speechrecipe.nn.upstream import Fbank

    fbank = Fbank(n_mels=80, cmn=False).eval()
    began = time.perf_counter()
    with torch.inference_mode(), open(out, "wb") as f:
        for row in rows:
            wav = read_audio(row["path"])
            (feats,), _ = fbank(wav[None], torch.tensor([wav.numel()]))
            f.write(feats[0].half().numpy().tobytes())
    return sum(r["duration"] for r in rows) / (time.perf_counter() - began)


def asv_rates(work: Path, env: dict, name: str, steps: int, *args: str) -> dict:
    target = work / f"asv-{name}"
    cli(env, "asv", "--stop", "2", "--target-dir", str(target), f"train.total_steps={steps}", "train.log_step=10",
        f"train.eval_step={steps}", f"train.save_step={steps}", *args)
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    windows = [e for e in events if e["event"] == "train"][1:]
    return {key: sum(e[key] for e in windows) / len(windows) for key in ("utt_per_s", "data_wait")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="alternations of each measurement")
    parser.add_argument("--steps", type=int, default=40, help="asv updates per run (0: dump only)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads in every process (0: torch's default)")
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    threads = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(work / "cache"), **threads}
        files = sorted(p for p in MINI.rglob("*") if p.suffix in (".wav", ".flac"))
        listing = work / "files.txt"
        listing.write_text("".join(f"{p}\n" for p in files))
        dump_rate(work, env, listing, 0)  # stage 0 into the cache, and warm file caches
        manifest = next((work / "cache" / "dump-feature").glob("*/all.jsonl"))
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        dumps, bares = [], []
        for k in range(args.repeats):
            dumps.append(dump_rate(work, env, listing, k + 1))
            bares.append(bare_rate(rows, work / "bare.bin"))
        loads.append(os.getloadavg()[0])

        vox = work / "vox-dump"
        if args.steps:
            cli(env, "dump-feature", "--target-dir", str(vox), "prepare_data.corpus=voxceleb1", "build_upstream.fbank.cmn=true")
        pre = ("build_upstream.name=precomputed", f"build_upstream.precomputed.path={vox}")
        cases = {"fbank on the fly (defaults: 1 worker)": (),
                 "precomputed fbank (1 worker)": pre,
                 "precomputed fbank (0 workers, 2-batch prefetch thread)": pre + ("train.num_workers=0", "train.prefetch_batches=2")}
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        for k in range(args.repeats if args.steps else 0):
            for i, (name, extra) in enumerate(cases.items()):
                runs[name].append(asv_rates(work, env, f"{i}-{k}", args.steps, *extra))
        loads.append(os.getloadavg()[0])
    audio = sum(r["duration"] for r in rows)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {', '.join(f'{x:.1f}' for x in loads)}\n")
    print(f"Dump of {len(rows)} files, {audio / 60:.1f} min of audio, 80-bin fbank, float16:\n")
    print("| run | audio-s/s (each repeat) | mean | ratio |")
    print("|---|---|---|---|")
    bare = sum(bares) / len(bares)
    for name, values in (("bare loop (read, fbank, write)", bares), ("speechrecipe dump-feature stage 1", dumps)):
        mean = sum(values) / len(values)
        print(f"| {name} | {', '.join(f'{v:,.0f}' for v in values)} | {mean:,.0f} | {mean / bare:.2f} |")
    if not args.steps:
        return
    print(f"\nasv training, {args.steps} updates of 32 x 2 s crops, mini VoxCeleb1:\n")
    print("| run | utt/s (each repeat) | mean | data wait | ratio |")
    print("|---|---|---|---|---|")
    base = None
    for name, values in runs.items():
        mean = sum(v["utt_per_s"] for v in values) / len(values)
        base = base or mean
        wait = sum(v["data_wait"] for v in values) / len(values)
        each = ", ".join(f"{v['utt_per_s']:.1f}" for v in values)
        print(f"| {name} | {each} | {mean:.1f} | {100 * wait:.1f} % | {mean / base:.2f} |")


if __name__ == "__main__":
    main()
