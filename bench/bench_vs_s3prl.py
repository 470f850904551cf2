"""SUPERB ASV side by side: speechrecipe and s3prl 0.4.18's SuperbASV on the same corpus, in the same run.

    .venv/bin/python bench/bench_vs_s3prl.py --low 4 --high 14 --rounds 1

speechrecipe runs `speechrecipe run asv -c recipes/voxceleb1/asv.yaml` (s3prl's semantics: crops of at
most 8 s, no repetition, 2 s minimum, 10 utterances x 5 accumulated batches per update); s3prl runs
through ../shared/bench/run_s3prl_asv.sh (its README beside it), which creates its virtual env
(.venv-s3prl in this checkout, SETUP=1 the first time) and runs SuperbASV stages 0-4 with the fbank
upstream, given its best case (S3PRL_SHIM_FAST=1: no sox subprocess, no silence trimming). Both use
2 DataLoader workers.

For each corpus (the bundled mini VoxCeleb1 and a generated VoxCeleb1-layout corpus of 4-6.3 s
utterances) and each round the runs take turns: speechrecipe LOW, s3prl LOW, speechrecipe HIGH,
s3prl HIGH updates. Each time is the wall time of the training stage's own process (speechrecipe:
`--start 2 --stop 2` after `--stop 1`; s3prl: its stage 2 after a set-up run, see S3prl), so start-up,
model building and checkpoint saving are in both, and steady-state updates/s = (HIGH - LOW) /
(t_HIGH - t_LOW) cancels them. Padded audio seconds per update are what the models compute on:
speechrecipe's exactly from its sampler (bucketed batches), s3prl's the expectation over random
batches of 10 (its sampler draws them at random and pads each to its longest), both from the same
cropped lengths; padded audio-s/s = updates/s x that. Prints a Markdown table and writes JSON.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "voxceleb1" / "asv.yaml"
MINI = REPO / "speechrecipe" / "assets" / "mini" / "voxceleb1"
S3PRL_SCRIPT = REPO.parent / "shared" / "bench" / "run_s3prl_asv.sh"
S3PRL_VENV = REPO / ".venv-s3prl"
S3PRL_BATCH = 10


def make_short_corpus(root: Path, seed: int = 0) -> Path:
    """A VoxCeleb1-layout corpus of 4-6.3 s synthetic voices: 8 training speakers x 12 utterances,
    4 test speakers (id10270-id10273, s3prl's test range) x 6, and their trial list."""
    import numpy as np
    import soundfile as sf

    rng, rate, tests = np.random.default_rng(seed), 16000, []
    speakers = [(f"id1000{i}", 12) for i in range(1, 9)] + [(f"id1027{i}", 6) for i in range(4)]
    for k, (speaker, count) in enumerate(speakers):
        f0 = 90 + 17 * k
        for u in range(count):
            t = np.arange(int(rng.uniform(4.0, 6.3) * rate)) / rate
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))) / rate
            voice = sum(np.sin(h * phase + rng.uniform(0, 6.3)) / h for h in range(1, 8))
            voice *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * rng.uniform(1.5, 4) * t))
            audio = (0.25 * voice / np.abs(voice).max() + 0.01 * rng.standard_normal(t.size)).astype("float32")
            name = f"{speaker}/video{u % 2}/{u:05d}.wav"
            (root / "wav" / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / name, audio, rate, subtype="PCM_16")
            if speaker.startswith("id1027"):
                tests.append(name)
    lines = [f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}" for a, b in itertools.combinations(tests, 2)]
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    return root


class Ours:
    """speechrecipe's training stage with the recipe, in fresh target dirs sharing one cache."""

    def __init__(self, work: Path, corpus: Path, accumulate: int):
        self.work, self.corpus, self.accumulate = work, corpus, accumulate
        self.env = {**os.environ, "SPEECHRECIPE_CACHE_DIR": str(work / "cache")}

    def command(self, target: Path, steps: int, *stages: str) -> list[str]:
        return [sys.executable, "-m", "speechrecipe", "run", "asv", *stages, "--target-dir", str(target),
                "-c", str(RECIPE), f"prepare_data.dataset_root={self.corpus}", "prepare_data.num_valid_trials=200",
                "prepare_data.num_workers=2", "--num-workers", "2", f"train.total_steps={steps}",
                f"train.save_step={max(steps // 2, 1)}", f"train.log_step={max(steps // 4, 1)}",
                "train.eval_step=1000000", f"train.gradient_accumulate={self.accumulate}"]

    def train_seconds(self, steps: int) -> float:
        target = self.work / f"ours-{steps}-{time.monotonic_ns()}"
        subprocess.run(self.command(target, steps, "--stop", "1"), env=self.env, check=True, capture_output=True)
        began = time.perf_counter()
        subprocess.run(self.command(target, steps, "--start", "2", "--stop", "2"), env=self.env, check=True,
                       capture_output=True)
        self.last_target = target
        return time.perf_counter() - began


class S3prl:
    """s3prl's SuperbASV. The shared script runs once per corpus (stages 0-4, 2 updates: it creates the
    venv, the corpus view and the trial lists, and checks that s3prl trains and scores); each timed run is
    then the script's own stage-2 command line, in a fresh target dir holding only stages 0-1's outputs."""

    SETUP_FILES = ("train.csv", "test_trial.csv", "spk2int.pkl")  # what s3prl's stages 0-1 leave in target_dir

    def __init__(self, work: Path, corpus: Path, script: Path, venv: Path, accumulate: int = 5):
        self.work, self.script, self.venv, self.accumulate = work, script, venv, accumulate
        self.setup_dir = work / "setup"
        best = self.setup_dir / "exp" / "evaluate" / "test_trial" / "best_result.yaml"
        if not best.is_file():  # a --work folder keeps the set-up run for the next bench
            env = {**self.env(), "SETUP": "0" if (venv / "bin" / "python").exists() else "1"}
            result = subprocess.run(["bash", str(script), str(corpus), str(self.setup_dir), "2"], env=env,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        self.eer = best.read_text().strip()

    def env(self) -> dict[str, str]:
        return {**os.environ, "VENV": str(self.venv), "S3PRL_SHIM_FAST": "1", "NUM_WORKERS": "2"}

    def train_seconds(self, steps: int) -> float:
        target = self.work / f"s3prl-{steps}-{time.monotonic_ns()}"
        target.mkdir(parents=True)
        for name in self.SETUP_FILES:
            shutil.copy(self.setup_dir / "exp" / name, target / name)
        # run_s3prl_asv.sh's COMMON arguments and stage loop, for stage 2 alone
        command = [str(self.venv / "bin" / "python"), "-W", "ignore", "-m", "s3prl.main", "SuperbASV",
                   "--target_dir", str(target), "--cache_dir", str(self.setup_dir / "cache"),
                   "--prepare_data.dataset_root", str(self.setup_dir / "s3prl_view"), "--build_upstream.name", "fbank",
                   "--device", "cpu", "--num_workers", "2", "--train.total_steps", str(steps),
                   "--train.save_step", str(max(steps // 2, 1)), "--train.log_step", str(max(steps // 4, 1)),
                   "--train.gradient_accumulate", str(self.accumulate), "--start", "2", "--stop", "2"]
        began = time.perf_counter()
        result = subprocess.run(command, env=self.env(), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"s3prl stage 2 failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return time.perf_counter() - began


def padded_seconds_per_update(target: Path, updates: int) -> dict[str, float]:
    """Audio and padded seconds per update: speechrecipe's batches as its sampler makes them (the
    recipe's crops and buckets), s3prl's expected over random batches of the same cropped lengths."""
    from omegaconf import OmegaConf

    from speechrecipe.data.manifest import longer_than, read_jsonl
    from speechrecipe.data.preprocessors import RandomCrop
    from speechrecipe.data.sampler import EpochBatchSampler

    conf = OmegaConf.load(target / "config.yaml")
    data, batching = conf.build_dataset, conf.build_batch_sampler
    rows = longer_than(read_jsonl(next((target.parent / "cache").glob("asv/*/train.jsonl"))), data.min_secs)
    crop = RandomCrop(data.sample_rate, (), data.crop_secs, mode=data.crop_mode)
    lengths = [crop.find_length(row) / int(row["sample_rate"]) for row in rows]
    # as problems/asv.py builds it
    ours = EpochBatchSampler(lengths, seed=conf.train.seed, batch_size=batching.batch_size, drop_last=True,
                             bucket=batching.bucket, bucket_batches=batching.bucket_batches)
    accumulate = conf.train.gradient_accumulate
    batches = list(itertools.islice(ours.iterate(), updates * accumulate))
    per_update = accumulate / len(batches)
    unbucketed = EpochBatchSampler(lengths, 0, S3PRL_BATCH)
    random_batches = [b for epoch in range(200) for b in unbucketed.epoch_batches(epoch)]
    return {
        "ours_audio": per_update * sum(lengths[i] for b in batches for i, _ in b),
        "ours_padded": per_update * sum(max(lengths[i] for i, _ in b) * len(b) for b in batches),
        "s3prl_padded": accumulate * statistics.fmean(
            max(lengths[i] for i, _ in b) * S3PRL_BATCH for b in random_batches if len(b) == S3PRL_BATCH),
        "s3prl_audio": accumulate * S3PRL_BATCH * statistics.fmean(lengths),
        "fixed_padded": accumulate * batching.batch_size * data.crop_secs,
    }


def side_by_side(name: str, corpus: Path, work: Path, args) -> dict:
    ours = Ours(work / "ours", corpus, args.accumulate)
    s3prl = S3prl(work / "s3prl", corpus, args.s3prl_script, args.s3prl_venv, args.accumulate)
    times: dict[str, dict[int, list[float]]] = {system: {args.low: [], args.high: []} for system in ("ours", "s3prl")}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for steps in (args.low, args.high):
            for system, runner in (("ours", ours), ("s3prl", s3prl)):
                times[system][steps].append(runner.train_seconds(steps))
                loads.append(os.getloadavg()[0])
                print(f"[{name}] round {round_ + 1} {system} {steps} updates: {times[system][steps][-1]:.1f} s "
                      f"(load {loads[-1]:.1f})", file=sys.stderr, flush=True)
    rates = {}
    for system, by_steps in times.items():
        per_round = [(args.high - args.low) / (hi - lo) for lo, hi in zip(by_steps[args.low], by_steps[args.high])]
        rates[system] = {"updates_per_s": statistics.median(per_round), "per_round": per_round,
                         "seconds": {str(k): v for k, v in by_steps.items()}}
    padding = padded_seconds_per_update(ours.last_target, args.high)
    return {"corpus": name, "accumulate": args.accumulate, "rates": rates, "padding": padding, "load": loads,
            "s3prl_eer": s3prl.eer}


def table(results: list[dict]) -> str:
    lines = ["| corpus | system | updates/s | s/update | padded audio s/update (padding) | padded audio s/s | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        p, ours, theirs = r["padding"], r["rates"]["ours"]["updates_per_s"], r["rates"]["s3prl"]["updates_per_s"]
        for system, rate, audio, padded in (("speechrecipe", ours, p["ours_audio"], p["ours_padded"]),
                                            ("s3prl 0.4.18", theirs, p["s3prl_audio"], p["s3prl_padded"])):
            fraction = 1 - audio / padded
            lines.append(f"| {r['corpus']} | {system} | {rate:.4f} | {1 / rate:.2f} | {padded:.1f} "
                         f"({100 * fraction:.1f} %) | {rate * padded:.1f} | {rate / theirs:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--low", type=int, default=4, help="updates of the short runs")
    parser.add_argument("--high", type=int, default=14, help="updates of the long runs")
    parser.add_argument("--accumulate", type=int, default=5,
                        help="batches of 10 per update for both (5: s3prl's and the recipe's; fewer shortens a loaded run)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per corpus (median of rounds)")
    parser.add_argument("--corpora", default="mini,short", help="mini (bundled), short (generated 4-6.3 s), or a path")
    parser.add_argument("--s3prl-script", type=Path, default=S3PRL_SCRIPT)
    parser.add_argument("--s3prl-venv", type=Path, default=S3PRL_VENV)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep corpora, caches and s3prl's set-up runs here for the next run (default: a temp dir)")
    parser.add_argument("--setup-only", action="store_true", help="prepare --work (corpora, set-up runs) and stop")
    args = parser.parse_args()
    results, began = [], time.time()
    with tempfile.TemporaryDirectory(prefix="bench_vs_s3prl_") as tmp:
        work = args.work or Path(tmp)
        for name in args.corpora.split(","):
            corpus = {"mini": MINI, "short": work / "short"}.get(name, Path(name))
            if name == "short" and not (corpus / "veri_test2.txt").is_file():
                make_short_corpus(corpus)
            if args.setup_only:
                S3prl(work / name / "s3prl", corpus, args.s3prl_script, args.s3prl_venv)
                continue
            results.append(side_by_side(name, corpus, work / name, args))
            print(table(results), file=sys.stderr, flush=True)  # so far, in case the run is cut short
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    if args.setup_only:
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}, {os.cpu_count()} cores, "
          f"{(time.time() - began) / 60:.1f} min, load average during the runs "
          f"{min(l for r in results for l in r['load']):.1f}-{max(l for r in results for l in r['load']):.1f}\n")
    print(table(results))
    print(f"\n(an update: {args.accumulate} batches of 10; steady state over updates {args.low} to {args.high}; "
          "padding: share of the padded audio that is padding, speechrecipe's exact, s3prl's expected)")
    for r in results:
        print(f"{r['corpus']}: s3prl's test EER after its 2-update set-up run: {r['s3prl_eer']}")


if __name__ == "__main__":
    main()
