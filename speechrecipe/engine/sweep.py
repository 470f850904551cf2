"""`speechrecipe sweep`: a grid of overrides run as ordinary experiments, then compared. Imports no torch.

`KEY=V1,V2,...` is an axis of the grid (a comma inside brackets, braces or quotes does not split: `[a,b]` and
`"a,b"` are one value); a `KEY=V` with one value applies to every member. Each member is a target_dir under the
sweep folder, named by its values, run by `speechrecipe run` in its own process (`--jobs N` at once) with the
sweep's options (cache, config files, stages, ...), so members share the cache and any dump. A member that
finished with the same command is skipped; one that was cut short resumes like every run. The sweep ends with
the `compare` table of its members and the best one by its validation metric (valid_best, never test):
<sweep>/sweep.md, sweep.json and sweep.png (the validation metric against each swept key).
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechrecipe.errors import ConfigError, RunFailure
from speechrecipe.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STATE = "sweep_state.json"


@dataclass(frozen=True)
class Member:
    name: str
    overrides: tuple[str, ...]  # this member's values of the swept keys, as key=value
    values: tuple[tuple[str, str], ...]


def split_values(text: str) -> list[str]:
    """`a,b,[c,d],"e,f"` → ['a', 'b', '[c,d]', '"e,f"']: commas at the top level only."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    if quote or depth:
        raise ConfigError(f"{text}: an unclosed quote or bracket; close it, or quote the whole value")
    return parts + [current]


def parse_grid(overrides: list[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(axes [(key, values)], fixed overrides) of the sweep's key=value arguments."""
    axes, fixed = [], []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item}: give key=value or key=v1,v2,...")
        values = split_values(value)
        if any(v == "" for v in values):
            raise ConfigError(f"{item}: an empty value in the list; write each value between the commas")
        if len(values) == 1:
            fixed.append(item)
        elif key in dict(axes):
            raise ConfigError(f"{key}: swept twice; give all its values in one {key}=v1,v2,...")
        else:
            axes.append((key, values))
    if not axes:
        raise ConfigError("no key to sweep: give at least one KEY=V1,V2,... (several values, comma-separated)")
    return axes, fixed


def members(axes: list[tuple[str, list[str]]]) -> list[Member]:
    """Every combination of the axes' values, in order, each named by its values."""
    found = []
    for combo in itertools.product(*[values for _, values in axes]):
        pairs = tuple((key, value) for (key, _), value in zip(axes, combo))
        name = ",".join(f"{_short(key, axes)}={_safe(value)}" for key, value in pairs)
        found.append(Member(name, tuple(f"{k}={v}" for k, v in pairs), pairs))
    return found


def _short(key: str, axes: list[tuple[str, list[str]]]) -> str:
    """The key's last part, or more of it where two swept keys end alike."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if sum(1 for other, _ in axes if other == tail or other.endswith("." + tail)) == 1:
            return tail
    return key


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", value.strip("\"'")) or "_"


@dataclass
class Sweep:
    problem: str
    folder: Path
    run_options: list[str]  # the options every member's `speechrecipe run` gets (--cache-dir, -c, --stop, ...)
    fixed: list[str]
    grid: list[Member]

    def command(self, member: Member) -> list[str]:
        return [sys.executable, "-m", "speechrecipe", "run", self.problem, "--target-dir", str(self.folder / member.name),
                *self.run_options, *self.fixed, *member.overrides]

    def run(self, jobs: int) -> None:
        """Run the members not finished before (`jobs` at a time), then write the comparison."""
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        todo = [m for m in self.grid if state.get(m.name) != self.key(m)]
        for member in self.grid:
            if member not in todo:
                log.info("member %s: finished before with the same command; skipped", member.name)
        failed = self.run_members(todo, jobs, state)
        self.report()
        if failed:
            raise RunFailure(f"{len(failed)} of {len(self.grid)} members failed ({', '.join(failed)}); see their "
                             f"log.txt under {self.folder}; run the same sweep again to retry them")

    def console(self, member: Member) -> Path:
        return self.folder / member.name / "console.txt"

    def key(self, member: Member) -> str:
        return json.dumps(self.command(member)[3:])

    def state(self) -> dict[str, str]:
        path = self.folder / STATE
        return json.loads(path.read_text()) if path.is_file() else {}

    def run_members(self, todo: list[Member], jobs: int, state: dict[str, str]) -> list[str]:
        """Start members as processes, at most `jobs` at once; a member that ends well is recorded in STATE."""
        running: list[tuple[Member, subprocess.Popen, Any]] = []
        failed, queue = [], list(todo)
        while queue or running:
            while queue and len(running) < jobs:
                member = queue.pop(0)
                log.info("member %s: %s", member.name, " ".join(member.overrides))
                (self.folder / member.name).mkdir(parents=True, exist_ok=True)
                output = open(self.console(member), "w")  # the member's console, beside its log.txt
                running.append((member, subprocess.Popen(self.command(member), stdout=output, stderr=subprocess.STDOUT), output))
            for item in list(running):
                member, process, output = item
                if process.poll() is None:
                    continue
                running.remove(item)
                output.close()
                if process.returncode == 0:
                    state[member.name] = self.key(member)
                    atomic_write_json(self.folder / STATE, state)
                    log.info("member %s: done", member.name)
                else:
                    failed.append(member.name)
                    last = self.console(member).read_text().strip().splitlines()[-1:] or [""]
                    log.warning("member %s failed (exit %d): %s", member.name, process.returncode, last[0])
            time.sleep(0.2)
        return failed

    def report(self) -> None:
        """sweep.md, sweep.json and sweep.png of the members that have results."""
        from speechrecipe.engine.compare import Experiment, compare_rows
        from speechrecipe.engine.train_log import best_validation, read_events

        done = [m for m in self.grid if (self.folder / m.name / "config.yaml").is_file()]
        if not done:
            return
        valid = {m.name: best_validation(read_events(self.folder / m.name / "train_log.jsonl")) for m in done}
        ranked = [m for m in done if valid[m.name]]
        best = None
        if ranked:
            higher = valid[ranked[0].name]["higher_better"]
            best = (max if higher else min)(ranked, key=lambda m: valid[m.name]["value"])
        experiments = [Experiment.load(self.folder / m.name) for m in done]
        for experiment, member in zip(experiments, done):
            experiment.name = member.name
        keys, rows = compare_rows(experiments)
        summary = {"problem": self.problem, "grid": {k: v for k, v in _axes(self.grid)}, "fixed": self.fixed,
                   "best": best.name if best else None, "selected_by": "validation (valid_best), never test",
                   "members": [{"name": m.name, "values": dict(m.values), "validation": valid[m.name]} for m in done],
                   "rows": rows}
        atomic_write_json(self.folder / "sweep.json", summary)
        atomic_write_text(self.folder / "sweep.md", self.markdown(done, valid, best))
        _plot(self.folder / "sweep.png", done, valid)
        print(self.markdown(done, valid, best))

    def markdown(self, done: list[Member], valid: dict, best: Member | None) -> str:
        from speechrecipe.engine.compare import compare

        lines = [f"# sweep: {self.problem}", "", "grid: " + "; ".join(f"`{k}` = {', '.join(v)}" for k, v in _axes(self.grid)), ""]
        lines += ["| member | validation (valid_best) | at step |", "|---|---|---|"]
        for member in done:
            found = valid[member.name]
            mark = " **best**" if best is member else ""
            lines.append(f"| {member.name}{mark} | " + (f"{found['metric']}={found['value']:.4g} | {found['step']} |"
                                                        if found else "no validation yet | |"))
        lines += ["", f"Best member by validation: **{best.name}**" if best else "No member has validated yet.",
                  "(chosen on each member's valid_best validation metric, never on a test set)", "",
                  "## Test results of every member (`speechrecipe compare`)", "",
                  compare([self.folder / m.name for m in done]).replace(str(self.folder) + "/", ""), ""]
        return "\n".join(lines)


def _axes(grid: list[Member]) -> list[tuple[str, list[str]]]:
    keys = [k for k, _ in grid[0].values]
    return [(k, list(dict.fromkeys(dict(m.values)[k] for m in grid))) for k in keys]


def _plot(path: Path, done: list[Member], valid: dict) -> None:
    """The validation metric against each swept key (one panel a key; points of the other keys' values joined)."""
    scored = [m for m in done if valid[m.name]]
    if not scored:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = _axes(done)
    metric = valid[scored[0].name]["metric"]
    fig, panels = plt.subplots(1, len(axes), figsize=(4.5 * len(axes), 3.5), squeeze=False)
    for panel, (key, values) in zip(panels[0], axes):
        others = sorted({tuple((k, v) for k, v in m.values if k != key) for m in scored})
        for other in others:
            points = sorted((values.index(dict(m.values)[key]), valid[m.name]["value"]) for m in scored
                            if tuple((k, v) for k, v in m.values if k != key) == other)
            label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in other)
            panel.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label or None)
        panel.set_xticks(range(len(values)), values)
        panel.set(xlabel=key, ylabel=f"validation {metric}")
        if len(others) > 1:
            panel.legend(fontsize="small")
    fig.tight_layout()
    from speechrecipe.fileio import write_figure

    write_figure(fig, path)
    plt.close(fig)
