"""`speechrecipe status`: what an experiment folder holds and, for a live run, where it stands. Imports no torch."""
from __future__ import annotations

import json
import socket
from pathlib import Path

from speechrecipe.engine import last_run
from speechrecipe.engine.checkpoint import list_checkpoints
from speechrecipe.engine.figures import kind_of, show_interval, show_named
from speechrecipe.engine.records import StageRecord
from speechrecipe.engine.train_log import Progress, best_validation, progress, read_events
from speechrecipe.errors import ConfigError
from speechrecipe.engine.lock import read_holder


def describe_status(target_dir: Path) -> str:
    """Stages done, the lock, training progress, checkpoints, best validation and final results, as text."""
    if not (target_dir / "config.yaml").is_file():
        raise ConfigError(f"{target_dir} is not an experiment folder (no config.yaml); give the --target-dir of a run")
    lines = [f"experiment {target_dir}"]
    records = [StageRecord.load(p) for p in (target_dir / "records").glob("stage-*.json")]
    records = sorted((r for r in records if r), key=lambda r: r.stage)
    ids = {str(r.stage): r.id for r in records}
    for record in records:
        # without the problem's config only the records can be compared: did an earlier stage re-run since?
        # (inputs named by file are not checked here: that needs the cache the config points to)
        rerun = [s for s, old in sorted(record.inputs.items()) if s.isdigit() and ids.get(s, "none") != old]
        stale = f" (stale: stage{'s' if len(rerun) > 1 else ''} {', '.join(rerun)} re-ran since)" if rerun else ""
        lines.append(f"  stage {record.stage} ({record.name}): done {record.when}{stale}")
    if not records:
        lines.append("  no stage has finished yet")
    live = _lock_line(target_dir / ".lock")
    lines += _run_lines(live, last_run.read(target_dir))
    events = read_events(target_dir / "train_log.jsonl")
    state = progress(events)
    if state is not None:
        lines.append(_progress_line(state, live[0]))
    checkpoints = list_checkpoints(target_dir / "checkpoints")
    lines.append("checkpoints: " + (", ".join(checkpoints) if checkpoints else "none"))
    best = _best_valid(events)
    if best:
        lines.append(f"best validation so far: {best}")
    results = target_dir / "results" / "results.json"
    if results.is_file():
        lines.append("results:")
        for name, row in json.loads(results.read_text()).items():
            if not isinstance(row, dict):  # a problem without test sets (dump-feature): a flat summary
                lines.append(f"  {name}: {row:.4g}" if isinstance(row, float) else f"  {name}: {row}")
                continue
            lines.append(f"  {name}: {result_line(row)}")
    return "\n".join(lines)


def result_line(row: dict) -> str:
    """`valid_best (step 200) eer=21.00 % (17.20–24.90) mindcf_0.01=0.9267; best on test (oracle): step-800 eer=10.60 %`."""
    intervals = row.get("intervals", {})
    shown = []
    for key, value in row.items():
        if isinstance(value, float):
            kind = kind_of(key)
            text = show_interval(value, intervals.get(key), kind)
            shown.append(f"{key}={text}" if kind != "pct" else f"{key}={text} %")
    line = f"{row['checkpoint']} (step {row['step']}) " + " ".join(shown)
    oracle, metric = row.get("oracle"), row.get("metric")
    if oracle and metric and row.get("selected_by") != "best on test":
        line += f"; best on test (oracle): {oracle['checkpoint']} {show_named(metric, oracle.get(metric))}"
    return line


def _lock_line(lock: Path) -> tuple[bool, str, int | None]:
    """(a live process holds the lock, a line saying so, its pid)."""
    holder = read_holder(lock)
    if holder is None:
        return False, "run: none live (no lock)", None
    if holder.host != socket.gethostname():
        return False, f"run: locked by pid {holder.pid} on host {holder.host} (cannot check from here)", None
    if holder.alive():
        return True, f"run: live (pid {holder.pid})", holder.pid
    return False, f"run: none live (the lock's pid {holder.pid} is no longer running)", None


def _run_lines(live: tuple[bool, str, int | None], last: dict | None) -> list[str]:
    """The lock's line, with the stage a live run is in; how the last run that ran a stage ended, unless it finished."""
    alive, line, pid = live
    if last is None:
        return [line]
    stage = f"stage {last['stage']} ({last.get('name', '?')})"
    if last.get("state") == "running" and alive and last.get("pid") == pid:
        return [f"{line}, in {stage}"]
    if last.get("state") == "running" and not alive:  # SIGKILL, out of memory, a power cut: nothing was written
        return [line, f"last run: stopped during {stage} without a word (killed?); run the same command again to resume"]
    if last.get("state") in ("failed", "interrupted") and not alive:
        return [line, f"last run: {last.get('summary') or last['state']}"]
    return [line]


def _progress_line(state: Progress, live: bool) -> str:
    of = f" of {state.total_steps}" if state.total_steps else ""
    parts = [f"training: step {state.step}{of}"]
    if state.loss is not None:
        parts.append(f"loss {state.loss:.4g}")
    if state.utt_per_s is not None:
        parts.append(f"{state.utt_per_s:.1f} utt/s")
    if state.steps_per_s:
        parts.append(f"{state.steps_per_s:.2f} steps/s")
    if live and state.eta_s is not None:
        parts.append(f"ETA {_duration(state.eta_s)}")
    if state.wall_s is not None:
        parts.append(f"trained for {_duration(state.wall_s)}")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _best_valid(events: list[dict]) -> str | None:
    best = best_validation(events)
    return f"{show_named(best['metric'], best['value'])} at step {best['step']}" if best else None