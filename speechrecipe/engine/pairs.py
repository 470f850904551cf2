"""Stage 3's engine: every chosen checkpoint × every test set, resumable per pair."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from speechrecipe import preemption
from speechrecipe.fileio import file_digest
from speechrecipe.engine import checkpoint as ckpt
from speechrecipe.engine import distributed
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


@dataclass
class Shard:
    """Stage 3 under torchrun: while every rank evaluates one pair together, this rank's share of its batches."""

    rank: int = 0
    size: int = 1
    utterances: int = 0  # utterances this process ran through a test step in this stage 3


SHARD = Shard()


@torch.inference_mode()
def collect(step: Callable[[Any], dict], loader, device: torch.device, desc: str) -> list[dict]:
    """Run `step` over every batch; outputs move to the CPU. With a SHARD of several ranks, the loader holds
    this rank's batches (i % size == rank) and every rank gets every output back, in batch order."""
    outputs = []
    for batch in progress(loader, desc=desc, unit="batch", leave=False):
        outputs.append(move_to(step(move_to(batch, device)), torch.device("cpu")))
        SHARD.utterances += len(batch["ids"])
    if SHARD.size > 1:
        parts = distributed.all_gather(outputs)
        outputs = [parts[i % SHARD.size][i // SHARD.size] for i in range(sum(map(len, parts)))]
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

    Under torchrun every rank runs this. Of the unfinished pairs, whole rounds of one pair per rank go to the ranks
    in turn, each rank evaluating and writing its pairs alone; the rest (fewer than the ranks: a single checkpoint
    and test set, say) every rank evaluates together, each on its share of the batches (SHARD), rank 0 writing.
    """
    world = distributed.world()
    pairs = Pairs(checkpoints, test_sets, evaluation_dir, key, test_inputs or {})
    todo = distributed.broadcast(pairs.unfinished() if world.main else None)  # rank 0 reads, every rank follows
    alone = todo[: len(todo) - len(todo) % world.size]
    SHARD.utterances, done, lines = 0, 0, []
    for index in alone[world.rank :: world.size]:
        lines.append(pairs.evaluate(index, evaluate_pair, write=True))
        done += 1
        if preemption.received():  # the ranks stop together (below), each after its current pair
            break
    _agree_on_stop(world, "in stage 3 after the result of the pair under way")
    for index in todo[len(alone):]:
        SHARD.rank, SHARD.size = world.rank, world.size
        try:
            pairs.evaluate(index, evaluate_pair, write=world.main)  # rank 0 logs its result
        finally:
            SHARD.rank, SHARD.size = 0, 1
        done += 1
        _agree_on_stop(world, f"in stage 3 after the result of {pairs.name(index)}")
    if world.distributed:
        _log_ranks(distributed.gather((done, SHARD.utterances, lines)))
    return [pairs.path(i) for i in range(len(pairs.items))]


class Pairs:
    """Checkpoint × test-set pairs in order (checkpoint first), with their result keys and files."""

    def __init__(self, checkpoints: list[CheckpointRef], test_sets: list[str], evaluation_dir: Path,
                 key: dict[str, Any], test_inputs: dict[str, str]):
        self.items = [(ref, test_set) for ref in checkpoints for test_set in test_sets]
        self.evaluation_dir, self.key, self.test_inputs = evaluation_dir, key, test_inputs
        self.loaded: tuple[CheckpointRef, dict, dict] | None = None  # the last checkpoint read, its state and key

    def state(self, ref: CheckpointRef) -> tuple[dict, dict]:
        if self.loaded is None or self.loaded[0] != ref:
            state = _load(ref)
            # the file's digest tells a retrained checkpoint (same config and step, other data) from the old one
            full = {**self.key, "run_id": state.get("run_id"), "step": state["counters"]["step"],
                    "sha256": file_digest(ref.path)}
            self.loaded = (ref, state, full)
        return self.loaded[1], self.loaded[2]

    def name(self, index: int) -> str:
        ref, test_set = self.items[index]
        return f"{ref.name} on {test_set}"

    def path(self, index: int) -> Path:
        ref, test_set = self.items[index]
        return result_path(self.evaluation_dir, ref.name, test_set)

    def pair_key(self, index: int) -> dict:
        ref, test_set = self.items[index]
        return {**self.state(ref)[1], "inputs": self.test_inputs.get(test_set)}

    def unfinished(self) -> list[int]:
        todo = []
        for index in range(len(self.items)):
            if _finished(self.path(index), self.pair_key(index)):
                log.info("%s: already evaluated; skipping", self.name(index))
            else:
                todo.append(index)
        return todo

    def evaluate(self, index: int, evaluate_pair, write: bool) -> str:
        """Evaluate one pair; with `write`, its result file too (else its files go to a scratch folder, removed)."""
        ref, test_set = self.items[index]
        state, full = self.state(ref)
        path = self.path(index)
        out_dir = path.parent if write else Path(tempfile.mkdtemp(prefix=f".rank{distributed.world().rank}-",
                                                                   dir=self.evaluation_dir))
        try:
            metrics, undefined = defined(_run_pair(evaluate_pair, state, ref, test_set, out_dir))
        finally:
            if not write:
                shutil.rmtree(out_dir, ignore_errors=True)
        line = f"{self.name(index)}: " + " ".join(
            f"{k}={'undefined' if v is None else format(v, '.4g')}" for k, v in metrics.items())
        if write:
            record = {"checkpoint": ref.name, "step": full["step"], "test_set": test_set, "metrics": metrics,
                      **({"undefined": undefined} if undefined else {}), "key": self.pair_key(index)}
            ckpt.write_text_atomic(path, json.dumps(record, indent=1, allow_nan=False))
            log.info("%s", line)
            for name, why in undefined.items():
                log.warning("%s: %s is undefined: %s", self.name(index), name, why)
        if not distributed.world().distributed:
            preemption.stop_point(f"in stage 3 after the result of {self.name(index)}")
        return line


def _agree_on_stop(world, where: str) -> None:
    """torchrun: when any rank got a signal, every rank stops here (one all-reduce)."""
    if world.distributed:
        (signum,) = distributed.maxima([preemption.received() or 0])
        preemption.stop_point(where, signum or None)


def _log_ranks(gathered: list[tuple[int, int, list[str]]] | None) -> None:
    """Rank 0: the results of the pairs other ranks evaluated alone, and what each rank did."""
    if gathered is None:
        return
    for rank, (_, _, lines) in enumerate(gathered):
        for line in lines if rank else []:
            log.info("%s (rank %d)", line, rank)
    for rank, (pairs, utterances, _) in enumerate(gathered):
        log.info("rank %d: %d pairs, %d utterances", rank, pairs, utterances)


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
