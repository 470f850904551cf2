"""`speechrecipe status`: what an experiment folder holds. Imports no torch."""
from __future__ import annotations

import json
from pathlib import Path

from speechrecipe.engine.checkpoint import list_checkpoints
from speechrecipe.engine.records import StageRecord
from speechrecipe.errors import ConfigError


def describe_status(target_dir: Path) -> str:
    """Stages done, checkpoints, best validation so far and final results, as text."""
    if not (target_dir / "config.yaml").is_file():
        raise ConfigError(f"{target_dir} is not an experiment folder (no config.yaml); give the --target-dir of a run")
    lines = [f"experiment {target_dir}"]
    records = [StageRecord.load(p) for p in (target_dir / "records").glob("stage-*.json")]
    records = sorted((r for r in records if r), key=lambda r: r.stage)
    ids = {str(r.stage): r.id for r in records}
    for record in records:
        # without the problem's config only the records can be compared: did an earlier stage re-run since?
        # (inputs named by file are not checked here: that needs the cache the config points to)
        rerun = [s for s, old in sorted(record.upstream.items()) if s.isdigit() and ids.get(s, "none") != old]
        stale = f" (stale: stage{'s' if len(rerun) > 1 else ''} {', '.join(rerun)} re-ran since)" if rerun else ""
        lines.append(f"  stage {record.stage} ({record.name}): done {record.when}{stale}")
    if not records:
        lines.append("  no stage has finished yet")
    checkpoints = list_checkpoints(target_dir / "checkpoints")
    lines.append("checkpoints: " + (", ".join(checkpoints) if checkpoints else "none"))
    best = _best_valid(target_dir / "train_log.jsonl")
    if best:
        lines.append(f"best validation so far: {best}")
    results = target_dir / "results" / "results.json"
    if results.is_file():
        lines.append("results:")
        for name, row in json.loads(results.read_text()).items():
            if not isinstance(row, dict):  # a problem without test sets (dump-feature): a flat summary
                lines.append(f"  {name}: {row:.4g}" if isinstance(row, float) else f"  {name}: {row}")
                continue
            metrics = " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
            lines.append(f"  {name}: {row['checkpoint']} {metrics}")
    return "\n".join(lines)


def _best_valid(train_log: Path) -> str | None:
    if not train_log.is_file():
        return None
    runs = [json.loads(line) for line in train_log.read_text().splitlines() if '"valid"' in line]
    valids = [e for e in runs if e.get("event") == "valid"]
    if not valids:
        return None
    metric, higher = valids[-1]["metric"], valids[-1]["higher_better"]
    best = (max if higher else min)(valids, key=lambda e: e[metric])
    return f"{metric}={best[metric]:.4g} at step {best['step']}"
