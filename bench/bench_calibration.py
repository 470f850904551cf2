"""sid and intent defaults against their plain references on the calibration corpora (issue 25).

    .venv/bin/python bench/bench_calibration.py --problem sid      # about 10 min on one quiet core
    .venv/bin/python bench/bench_calibration.py --problem intent   # about 10 min

Builds the calibration corpus (bench/calibration/make_<problem>_corpus.py; skipped when built), then,
each in its own process and one after the other: the reference (bench/reference_<problem>.py, the
last model) and `speechrecipe run <problem>` with the defaults, the corpus root and the budget (and
--overrides), stages 0-4 (valid_best, chosen on validation). Both see the same number of training
utterances: sid 200 x 32 for the reference, 100 x 64 for the default with the VoxCeleb1 overlay
(recipes/voxceleb1/sid.yaml: batches of 64, 3 s crops); intent 300 x 32 each. Prints one Markdown
row per model: test accuracy with its 95 % interval, the majority class, training utterances/s and
their ratio to the reference's, with `uptime`'s load average before and after (speed on a loaded
machine says little; the accuracies are deterministic).

    .venv/bin/python bench/bench_calibration.py --problem sid --seeds 1337 2 3 \
        --corpus-args --utts 6 --out ~/.cache/speechrecipe-calibration/voxceleb1_sid_hard_u6

trains both once per seed (the reference's --seed, the default's `seed=`) on a corpus built with those
arguments of make_<problem>_corpus.py (here 300 test utterances instead of 100, where one run's interval is
±4-5 points instead of ±8), and adds the mean over seeds: what two models a few points apart need.

    .venv/bin/python bench/bench_calibration.py --problem intent --speed 40 --rounds 2

measures speed alone: reference and default taking turns, `--speed` updates of 32 utterances for the
reference and as many utterances for the default (stage 2 only, no test), training utterances/s of each and their ratio per round, with the load average around each round.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "calibration"))
from make_sid_corpus import CALIBRATION_ROOT  # noqa: E402

CORPUS = {"sid": CALIBRATION_ROOT / "voxceleb1_sid_hard", "intent": CALIBRATION_ROOT / "fluent_speech_commands_small"}
REFERENCE_BATCH = 32
# the default's command line beyond the corpus root, and its batch size (utterances per update)
DEFAULT = {"sid": (["-c", "recipes/voxceleb1/sid.yaml", "--num-workers", "0"], 64), "intent": ([], 32)}
REFERENCE_UPDATES = {"sid": 200, "intent": 300}


def default_command(problem: str, root: Path, target: Path, reference_updates: int) -> list[str]:
    """`speechrecipe run` of the default over as many training utterances as `reference_updates` of the reference."""
    args, batch = DEFAULT[problem]
    steps = reference_updates * REFERENCE_BATCH // batch
    return [sys.executable, "-m", "speechrecipe", "run", problem, "--target-dir", str(target), *args,
            f"prepare_data.dataset_root={root}", f"train.total_steps={steps}", f"train.save_step={max(1, steps // 4)}",
            f"train.eval_step={max(1, steps // 4)}", f"train.log_step={max(1, steps // 4)}"]


def load() -> str:
    """`uptime`'s load averages (1, 5, 15 min)."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def reference(problem: str, root: Path, out: Path, updates: list[str] = ()) -> dict:
    out.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(BENCH / f"reference_{problem}.py"), "--root", str(root), "--out", str(out),
                    *updates], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text().splitlines()[-1])


def train_speed(target: Path) -> float:
    """Mean training utterances/s of the log windows after the first (which holds the start-up)."""
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    train = [e for e in events if e.get("event") == "train"][1:]
    return round(sum(e["utt_per_s"] for e in train) / len(train), 1)


def speed(problem: str, root: Path, work: Path, updates: int, rounds: int, overrides: list[str]) -> None:
    print("| round | load average before, after | reference utt/s | default utt/s | default / reference |")
    print("|---|---|---|---|---|")
    for k in range(1, rounds + 1):
        before = load()
        ref = reference(problem, root, work / "speed.jsonl", ["--updates", str(updates)])["train_utt_per_s"]
        target = work / f"speed_{problem}_{k}"
        shutil.rmtree(target, ignore_errors=True)
        steps = updates * REFERENCE_BATCH // DEFAULT[problem][1]  # one validation and save, at the end
        subprocess.run([*default_command(problem, root, target, updates), "--stop", "2", f"train.eval_step={steps}",
                        f"train.save_step={steps}", *overrides],
                       check=True, stdout=subprocess.DEVNULL, cwd=BENCH.parent)
        ours = train_speed(target)
        print(f"| {k} | {before}, {load()} | {ref} | {ours} | {ours / ref:.2f} |")


def default(problem: str, root: Path, target: Path, overrides: list[str]) -> dict:
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([*default_command(problem, root, target, REFERENCE_UPDATES[problem]), *overrides], check=True,
                   stdout=subprocess.DEVNULL, cwd=BENCH.parent)
    return {**default_figures(target), "train_utt_per_s": train_speed(target)}


def default_figures(target: Path) -> dict:
    """valid_best's test accuracy and interval in % (results.json holds fractions)."""
    results = json.loads((target / "results" / "results.json").read_text())["test"]
    interval = results["intervals"]["accuracy"]
    return {"test": {"accuracy": round(100 * results["accuracy"], 1),
                     "interval": [round(100 * interval["low"], 1), round(100 * interval["high"], 1)]},
            "checkpoint": f"{results['checkpoint']}, step {results['step']}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", choices=sorted(CORPUS), required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_calibration"), help="targets and logs")
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides for the default run")
    p.add_argument("--speed", type=int, help="only measure speed, over this many updates per run")
    p.add_argument("--rounds", type=int, default=2, help="with --speed: reference/default pairs")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337], help="train both once per seed; >1: adds the means")
    p.add_argument("--corpus-args", nargs=argparse.REMAINDER, default=[],
                   help="the rest of the line goes to make_<problem>_corpus.py (its --out is then the corpus root)")
    args = p.parse_args()
    root = corpus_root(args.problem, args.corpus_args)
    subprocess.run([sys.executable, str(BENCH / "calibration" / f"make_{args.problem}_corpus.py"), *args.corpus_args],
                   check=True)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.speed:
        speed(args.problem, root, args.work, args.speed, args.rounds, args.overrides)
        return
    before = load()
    runs = [seeded_pair(args.problem, root, args.work, seed, args.overrides) for seed in args.seeds]
    print(f"corpus {root}; load average before {before}, after {load()}")
    print_table(runs)


def corpus_root(problem: str, corpus_args: list[str]) -> Path:
    """make_<problem>_corpus.py's --out among `corpus_args`, else its default folder."""
    if "--out" in corpus_args:
        return Path(corpus_args[corpus_args.index("--out") + 1]).expanduser()
    return CORPUS[problem]


def seeded_pair(problem: str, root: Path, work: Path, seed: int, overrides: list[str]) -> tuple[int, dict, dict]:
    """(seed, reference figures, default figures), both trained with `seed`."""
    ref = reference(problem, root, work / f"reference_{problem}_{seed}.jsonl", ["--seed", str(seed)])
    ours = default(problem, root, work / f"default_{problem}_{seed}", [*overrides, f"seed={seed}"])
    return seed, ref, ours


def print_table(runs: list[tuple[int, dict, dict]]) -> None:
    print("| model | seed | test accuracy (%) | 95 % interval | training utt/s | ratio to the reference |")
    print("|---|---|---|---|---|---|")
    print(f"| majority class | | {runs[0][1]['majority_test']['accuracy']} | | | |")
    for seed, ref, ours in runs:
        for name, r in ((f"reference ({ref['updates']} x {ref['batch_size']})", ref),
                        (f"default ({ours['checkpoint']})", ours)):
            low, high = r["test"]["interval"]
            print(f"| {name} | {seed} | {r['test']['accuracy']} | {low}-{high} | {r['train_utt_per_s']} | "
                  f"{r['train_utt_per_s'] / ref['train_utt_per_s']:.2f} |")
    if len(runs) > 1:
        for name, figures in (("reference", [ref for _, ref, _ in runs]), ("default", [ours for _, _, ours in runs])):
            mean = statistics.mean(f["test"]["accuracy"] for f in figures)
            print(f"| {name}, mean of {len(runs)} seeds | | {mean:.1f} | | | |")


if __name__ == "__main__":
    main()
