"""CLI start-up: wall time of `speechrecipe --help`, `config asv` and `stages asv` against `import torch`.

    .venv/bin/python bench/bench_cli.py [--repeats 5]

Each command runs as a fresh process (the installed `speechrecipe` script beside this Python);
the commands take turns within each round, so a change in machine load touches them all alike.
Prints a Markdown table: median wall time and its ratio to `python -c "import torch"` measured in
the same run (issue 2's target: <= 0.2). Then the start-up cost of the checks made before stage 0
(issue 16): value ranges and Problem.check_config (test-set keys, folders, torch classes), timed in
this process against loading the config they check, alternating.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 0.2


def speechrecipe() -> list[str]:
    """The console script installed with this Python, else `python -m speechrecipe`."""
    script = Path(sys.executable).parent / "speechrecipe"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "speechrecipe"]


def wall_time(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cli = speechrecipe()
    commands = {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "speechrecipe --help": [*cli, "--help"],
        "speechrecipe config asv": [*cli, "config", "asv"],
        "speechrecipe stages asv": [*cli, "stages", "asv"],
    }
    for command in commands.values():  # warm the page cache once
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    torch_s = medians['python -c "import torch"']

    load = os.getloadavg()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"Python {platform.python_version()}, median of {args.repeats}, {' '.join(cli)}")
    print()
    print("| command | median wall (s) | ratio to `import torch` | target |")
    print("|---|---|---|---|")
    for name, median in medians.items():
        target = f"≤ {TARGET_RATIO}" if name.startswith("speechrecipe") else ""
        verdict = (" ✓" if median / torch_s <= TARGET_RATIO else " ✗") if target else ""
        print(f"| `{name}` | {median:.3f} | {median / torch_s:.3f}{verdict} | {target} |")
    checks_cost()


def checks_cost(rounds: int = 200) -> None:
    """Median time of load_config alone and of the checks after it (ranges, check_config), alternating."""
    from speechrecipe.engine.paths import ExperimentPaths
    from speechrecipe.config import load_config
    from speechrecipe.registry import resolve_problem
    from speechrecipe.validate import check_values

    klass = resolve_problem("asv")
    load, checks = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        conf = load_config(klass.config_path())
        load.append(time.perf_counter() - began)
        began = time.perf_counter()
        check_values(klass, conf)
        klass(conf, ExperimentPaths(Path("."), Path("."))).check_config()
        checks.append(time.perf_counter() - began)
    load_ms, checks_ms = statistics.median(load) * 1e3, statistics.median(checks) * 1e3
    print()
    print(f"checks before stage 0 (asv, in-process, median of {rounds}): load_config {load_ms:.2f} ms, "
          f"ranges + check_config {checks_ms:.2f} ms ({checks_ms / load_ms:.2f}x load_config); "
          f"torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
