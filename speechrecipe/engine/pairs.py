"""Stage 3's engine: every chosen checkpoint × every test set, resumable per pair."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from speechrecipe import preemption
from speechrecipe.fileio import file_digest
from speechrecipe.engine import checkpoint as ckpt
from speechrecipe.engine.trainer import move_to
from speechrecipe.errors import RunFailure
from speechrecipe.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointRef:
    name: str  # valid_best, step-2000, or a file stem
    path: Path


def choose_checkpoints(directory: Path, names: Iterable[str]) -> list[CheckpointRef]:
    """Resolve test_ckpt_steps (valid_best, last, step-N) in `directory`, or a single file."""
    if directory.is_file():
        return [CheckpointRef(directory.stem, directory)]
    chosen: dict[Path, CheckpointRef] = {}
    for name in names:
        path = ckpt.resolve(directory, str(name))
        if path is None:
            if str(name) == ckpt.BEST:
                log.warning("no %s checkpoint in %s (no validation ran); skipping it", name, directory)
                continue
            raise RunFailure(f"evaluate.test_ckpt_steps: no checkpoint '{name}' in {directory}")
        chosen.setdefault(path, CheckpointRef(path.stem, path))
    if not chosen:
        raise RunFailure(f"no checkpoint to evaluate in {directory}; run stage 2 first")
    return list(chosen.values())


@torch.inference_mode()
def collect(step: Callable[[Any], dict], loader, device: torch.device, desc: str) -> list[dict]:
    """Run `step` over every batch; outputs move to the CPU."""
    outputs = []
    for batch in progress(loader, desc=desc, unit="batch", leave=False):
        outputs.append(move_to(step(move_to(batch, device)), torch.device("cpu")))
    return outputs


def result_path(evaluation_dir: Path, checkpoint: str, test_set: str) -> Path:
    return evaluation_dir / checkpoint / f"{test_set}.json"


def run_pairs(
    checkpoints: list[CheckpointRef],
    test_sets: list[str],
    evaluation_dir: Path,
    key: dict[str, Any],
    evaluate_pair: Callable[[dict, str, Path], dict[str, float]],
    test_inputs: dict[str, str] | None = None,
) -> list[Path]:
    """For each (checkpoint, test set) without a result for `key`, call evaluate_pair(state, test_set, out_dir).

    `test_inputs` identifies each test set's prepared files (a digest), so a test set whose trial
    list or manifest changed under the same name is evaluated again.

    Each result is written atomically as soon as it is known, so an interrupted stage 3 continues
    at the first unfinished pair; a failure leaves the results already written as they were.
    """
    written = []
    for ref in checkpoints:
        state = _load(ref)
        # the file's digest tells a retrained checkpoint (same config and step, other data) from the old one
        full_key = {**key, "run_id": state.get("run_id"), "step": state["counters"]["step"], "sha256": file_digest(ref.path)}
        for test_set in test_sets:
            path = result_path(evaluation_dir, ref.name, test_set)
            pair_key = {**full_key, "inputs": (test_inputs or {}).get(test_set)}
            if _finished(path, pair_key):
                log.info("%s on %s: already evaluated; skipping", ref.name, test_set)
            else:
                metrics, undefined = defined(_run_pair(evaluate_pair, state, ref, test_set, path.parent))
                record = {"checkpoint": ref.name, "step": full_key["step"], "test_set": test_set, "metrics": metrics,
                          **({"undefined": undefined} if undefined else {}), "key": pair_key}
                ckpt.write_text_atomic(path, json.dumps(record, indent=1, allow_nan=False))
                log.info("%s on %s: %s", ref.name, test_set,
                         " ".join(f"{k}={'undefined' if v is None else format(v, '.4g')}" for k, v in metrics.items()))
                for name, why in undefined.items():
                    log.warning("%s on %s: %s is undefined: %s", ref.name, test_set, name, why)
            written.append(path)
            preemption.stop_point(f"in stage 3 after the result of {ref.name} on {test_set}")
    return written


def defined(found: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, str]]:
    """A test set's metrics and {metric: why it has no value}: a problem returns None for a metric it cannot
    define and the reasons under "undefined"; a value that is not a finite number becomes None too, with a
    reason, so no result file holds NaN or Infinity and nothing shows a made-up number."""
    import math

    metrics, undefined = dict(found), dict(found.get("undefined") or {})
    metrics.pop("undefined", None)
    for name, value in metrics.items():
        if value is None:
            undefined.setdefault(name, "the metric has no value on this test set")
        elif isinstance(value, float) and not math.isfinite(value):
            metrics[name] = None
            undefined.setdefault(name, f"it came out {value} (not a number)")
    return metrics, undefined


def _load(ref: CheckpointRef) -> dict:
    try:
        return ckpt.load(ref.path)
    except Exception as err:  # noqa: BLE001 - any failure to read means unusable
        raise RunFailure(f"checkpoint {ref.path} is unreadable ({str(err).splitlines()[0][:120]}); "
                         "remove it from evaluate.test_ckpt_steps or train again") from err


def _finished(path: Path, key: dict) -> bool:
    """A result for exactly this checkpoint and evaluation config exists (an unreadable one does not count)."""
    try:
        return json.loads(path.read_text()).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


def _run_pair(evaluate_pair, state: dict, ref: CheckpointRef, test_set: str, out_dir: Path) -> dict[str, float]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return evaluate_pair(state, test_set, out_dir)
    except OSError as err:  # e.g. a full disk while writing scores
        where = f" ({err.filename})" if err.filename else ""
        raise RunFailure(f"evaluating {ref.name} on {test_set}: {err.strerror or err}{where}; results already "
                         "written are intact; run the same command again to continue") from err
