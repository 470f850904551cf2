"""Decide which stages run, run them under a lock, and keep their records.

Imports no torch: `speechrecipe stages` and `--dry-run` use it too.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from speechrecipe import config as cfglib
from speechrecipe import preemption
from speechrecipe.engine import cache, distributed, last_run
from speechrecipe.fileio import atomic_write_json, digest, file_digest
from speechrecipe.engine.checkpoint import list_checkpoints
from speechrecipe.engine.lock import TargetLock
from speechrecipe.engine.logs import attach_file_log, detach_file_log, to_file
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.engine.problem import Problem, Stage
from speechrecipe.engine.records import CACHE_FOLDER, CORPUS, DEPENDENCY_RULES, MISSING, StageRecord, StageState, compare
from speechrecipe.errors import ConfigError, Interrupted, RunFailure, describe

log = logging.getLogger(__name__)

TRAIN_RUN_FILE = "run.json"
# The layout of a prepared cache folder; a new layout (2: test sets as test_<name>.jsonl) prepares anew.
CACHE_FORMAT = 2  # in checkpoints/: the config the checkpoints were trained with


@dataclass
class PlannedStage:
    stage: Stage
    state: StageState
    action: str  # "run", "skip", "before start", "after stop"


def experiment_paths(problem_cls: type[Problem], cfg: DictConfig, target_dir: Path, cache_dir: Path) -> ExperimentPaths:
    """Paths for this experiment; the cache key hashes the data-preparation config."""
    prep = cfglib.select(cfg, ["prepare_data"], exclude=problem_cls.cache_ignored)
    key = digest({**prep, "cache format": CACHE_FORMAT})
    return ExperimentPaths(Path(target_dir), Path(cache_dir) / problem_cls.conf_name, key)


class Runner:
    """Runs a problem's stages start..stop in target_dir, skipping those already done."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.paths = problem.paths
        self.conf = problem.conf
        self.stages = problem.stages()
        self._digests: dict[tuple, str] = {}
        self._training = False  # inside the training stage (torchrun: every rank is in it)
        self._command_saved = False  # experiment.json has this run's command
        self._stage: Stage | None = None  # the stage this run began last

    def digest(self, path: Path) -> str:
        """sha256 of a file, computed once per version (path, size, mtime) during this run:
        planning, the training guard and the records all look at the same manifests."""
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ino)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    # ----- state -------------------------------------------------------------------
    def deps(self, stage: Stage) -> dict:
        return cfglib.select(self.conf, stage.uses, exclude=stage.ignore)

    def inputs(self, stage: Stage) -> dict[str, str]:
        """What a stage's inputs are now: the sha256 of each file it reads, or each earlier stage's record id."""
        if stage.reads:
            found = {pattern: self.paths.inputs(pattern) for pattern in stage.reads}
            shas = {path.name: self.digest(path) for paths in found.values() for path in paths}
            return {**{p: MISSING for p, paths in found.items() if not paths}, **shas}
        ids = {}
        for earlier in self.stages:
            if earlier.number < stage.number:
                record = StageRecord.load(self.paths.record(earlier.number))
                ids[str(earlier.number)] = record.id if record else "none"
        if stage.role == "prepare":  # preparing the corpus: depends on the corpus files themselves
            ids[CACHE_FOLDER] = self.paths.cache_key  # and writes into this folder, not the one it wrote before
            corpus = self.problem.corpus_digest(self.digest)
            if corpus is not None:
                ids[CORPUS] = corpus
        return ids

    @property
    def roots(self) -> dict[str, str]:
        """Where recorded files may lie: target_dir and this problem's cache."""
        return {"target": str(self.paths.target_dir.resolve()), "cache": str(self.paths.cache_root.resolve())}

    def state(self, stage: Stage, check_inputs: bool = True) -> StageState:
        record = StageRecord.load(self.paths.record(stage.number))
        inputs = self.inputs(stage) if check_inputs else None
        return compare(record, self.deps(stage), inputs, stage.resume_safe, self.digest, self.roots)

    def plan(self, start: int, stop: int) -> list[PlannedStage]:
        """What a run start..stop would do; later stages go stale when an earlier one re-runs (--redo N: N runs)."""
        planned, rerun = [], []
        redo = self.problem.context.redo
        for stage in self.stages:
            state = self.state(stage, check_inputs=not rerun)
            if stage.number == redo:
                state = StageState("stale", ["--redo: from scratch"], record=state.record)
            elif rerun and state.status == "done":
                state = StageState("stale", [f"stage {rerun[0]} runs again before it"], record=state.record)
            if stage.number < start:
                action = "before start"
            elif stage.number > stop:
                action = "after stop"
            else:
                action = "skip" if state.status == "done" else "run"
            if action == "run" or (state.status != "done" and stage.number < start):
                rerun.append(stage.number)
            planned.append(PlannedStage(stage, state, action))
        return planned

    # ----- checks --------------------------------------------------------------------
    def check_range(self, start: int, stop: int) -> None:
        numbers = [s.number for s in self.stages]
        for name, value in (("--start", start), ("--stop", stop)):
            if value not in numbers:
                raise ConfigError(f"{name} {value}: {self.problem.conf_name} has stages {numbers[0]}..{numbers[-1]}")
        if start > stop:
            raise ConfigError(f"--start {start} is after --stop {stop}")
        redo = self.problem.context.redo
        if redo is not None and not start <= redo <= stop:
            raise ConfigError(f"--redo {redo}: not among the stages this run runs ({start}..{stop}); "
                              f"set --start and --stop around it")

    def check_earlier_done(self, plan: list[PlannedStage]) -> None:
        for item in plan:
            if item.action == "before start" and item.state.status != "done":
                what = "has not run" if item.state.status == "pending" else f"is stale ({'; '.join(item.state.reasons)})"
                raise ConfigError(
                    f"stage {item.stage.number} ({item.stage.name}) {what} in {self.paths.target_dir}; "
                    f"run with --start {item.stage.number}"
                )

    @property
    def training_stage(self) -> Stage | None:
        """The stage that makes checkpoints, if the problem trains."""
        return self.problem.stage_with_role("train")

    def train_deps(self) -> dict:
        stage = self.training_stage
        return {"deps": self.deps(stage), "inputs": self.inputs(stage), "resume_safe": list(stage.resume_safe),
                "rules": DEPENDENCY_RULES}

    def training_conflicts(self) -> list[str]:
        """How the config (or data) of the checkpoints in checkpoints/ differs from now; [] if it does not."""
        run_file = self.paths.checkpoints / TRAIN_RUN_FILE
        if not run_file.is_file() or not list_checkpoints(self.paths.checkpoints):
            return []
        old, now = json.loads(run_file.read_text()), self.train_deps()
        safe = set(now["resume_safe"])
        if old.get("rules") != DEPENDENCY_RULES:  # trained before: judged by the keys it depended on then
            now["deps"] = {k: v for k, v in now["deps"].items() if k in old["deps"]}
        changed = [k for k in set(old["deps"]) | set(now["deps"]) if k not in safe and old["deps"].get(k) != now["deps"].get(k)]
        reasons = [f"{k} {old['deps'].get(k)!r} → {now['deps'].get(k)!r}" for k in sorted(changed)]
        before, after = old.get("inputs", old.get("upstream", {})), now["inputs"]  # "upstream": written before
        # an input not there yet (the stage writing it runs first) is checked again just before training
        if any(after.get(k) != MISSING and before.get(k) != after.get(k) for k in set(before) | set(after)):
            reasons.append("the prepared data or encoder changed")
        return reasons

    def guard_checkpoints(self) -> None:
        """Refuse to resume checkpoints trained with another config or data; --force moves them aside.

        Checked before any stage runs (config changes) and again just before training (an earlier
        stage that re-ran may have changed the data the checkpoints were trained on).
        """
        reasons = self.training_conflicts()
        if not reasons:
            return
        if not self.problem.context.force:
            raise ConfigError(
                f"{self.paths.checkpoints} holds training from another config or data ({'; '.join(reasons)}); "
                "rerun with --force to train again from scratch (old checkpoints are kept aside), "
                "or use another --target-dir"
            )
        self.set_training_aside(f"--force: config changed ({'; '.join(reasons)})")

    def set_training_aside(self, why: str) -> None:
        """Move checkpoints/ and what was made from them (train log, evaluation, results) to checkpoints.old-*."""
        if not self.paths.checkpoints.exists():
            return
        aside = set_aside(self.paths.checkpoints)
        # its validations, evaluations and results belong to the old training
        for old in (self.paths.train_log, self.paths.evaluation, self.paths.results):
            if old.exists():
                shutil.move(str(old), aside / old.name)
        log.warning("%s; old checkpoints, evaluation and results moved to %s", why, aside)

    # ----- --redo N: invalidate stage N's outputs once, then run as usual (so an interrupted redo resumes) -----
    @property
    def redo_marker(self) -> Path:
        return self.paths.target_dir / "redo.json"

    def redo_begun(self) -> int | None:
        """The stage whose --redo began and has not finished, if any."""
        try:
            return int(json.loads(self.redo_marker.read_text())["stage"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def begin_redo(self, stage: Stage) -> None:
        """Forget stage N's record and set its outputs aside (training, evaluation/); the cache is prepared anew."""
        self.paths.record(stage.number).unlink(missing_ok=True)
        if stage.role == "train":
            self.set_training_aside("--redo: training from scratch")
        elif stage.role == "evaluate" and self.paths.evaluation.exists():
            log.warning("--redo: every pair is evaluated anew; the earlier evaluation is in %s",
                        set_aside(self.paths.evaluation))
        atomic_write_json(self.redo_marker, {"stage": stage.number, "began": time.time()})

    def config_diff(self) -> list[str]:
        """Lines naming each key that differs from the config saved by the last run."""
        saved = cfglib.load_saved_config(self.paths.config)
        if saved is None:
            return []
        return [f"config differs from saved {self.paths.config.name}: {key} {old!r} → {new!r}"
                for key, old, new in cfglib.diff(saved, self.conf)]

    # ----- running -------------------------------------------------------------------
    def run(self, start: int, stop: int, clear_cache: bool = False) -> None:
        self.check_range(start, stop)
        world = distributed.world()
        with preemption.handling():  # SIGUSR1/SIGTERM/Ctrl-C: stop at the next safe point (speechrecipe/preemption.py)
            if not world.distributed:
                return self._run_main(start, stop, clear_cache)
            distributed.start(self.problem.device)
            self._run_main(start, stop, clear_cache) if world.main else self._follow()
        distributed.stop()  # only after success: see distributed.exit_after_failure

    def _run_main(self, start: int, stop: int, clear_cache: bool) -> None:
        self.paths.target_dir.mkdir(parents=True, exist_ok=True)
        with TargetLock(self.paths.lock):
            attach_file_log(self.paths.log)
            try:
                self._run_locked(start, stop, clear_cache)
                distributed.broadcast({"end": True})
                if self._stage is not None:
                    last_run.end(self.paths.target_dir, "finished")
            except KeyboardInterrupt:  # SIGINT outside training (which saves a checkpoint and raises Interrupted)
                error = Interrupted(f"interrupted {self._where('during')}; run the same command again to resume",
                                    signal.SIGINT)
                self._failed(error, str(error))
                raise error from None
            except Exception as error:
                state = "interrupted" if isinstance(error, Interrupted) else "failed"
                self._failed(error, f"{state} {self._where('in')}: {describe(error)}")
                raise
            finally:
                detach_file_log()

    def _where(self, preposition: str) -> str:
        return f"{preposition} stage {self._stage.number} ({self._stage.name})" if self._stage else "before any stage ran"

    def _failed(self, error: Exception, summary: str) -> None:
        """The traceback and one line in log.txt (the console gets the CLI's error line); last_run.json says so."""
        log.debug("run failed", exc_info=True)
        to_file(logging.ERROR, summary)
        if self._stage is not None:
            last_run.end(self.paths.target_dir, "interrupted" if isinstance(error, Interrupted) else "failed", summary)
        if not self._training:  # the other ranks wait for the next message
            stopped = isinstance(error, Interrupted)
            distributed.broadcast({"interrupted": error.signum} if stopped else {"failed": str(error)})

    def _follow(self) -> None:
        """torchrun ranks > 0: run the training stage (and any all_ranks stage) with rank 0; rank 0 does the rest alone."""
        from speechrecipe.engine.logs import follower_console

        follower_console(distributed.world().rank)
        while True:
            message = distributed.broadcast(None)
            if "train" in message:
                self.problem.run_stage(message["train"])
            elif "failed" in message:
                raise RunFailure("rank 0 stopped with an error; this rank stops with it")
            elif "interrupted" in message:
                raise Interrupted("rank 0 stopped for a signal; this rank stops with it", message["interrupted"])
            else:
                return

    def _run_locked(self, start: int, stop: int, clear_cache: bool) -> None:
        log.info("speechrecipe run %s in %s (stages %d..%d)", self.problem.conf_name, self.paths.target_dir, start, stop)
        if clear_cache:  # only folders no live run uses (engine/cache.py)
            cache.clear_cache(self.paths.cache_root)
        user = str(self.paths.target_dir.resolve())
        with cache.CacheLease(self.paths.cache_root, self.paths.cache_key, user) as lease, contextlib.ExitStack() as shared:
            for name in self.problem.shared_cache_folders():  # a mini corpus: kept by --clear-cache while this runs
                shared.enter_context(cache.CacheLease(self.paths.cache_root, name, user, turns=False))
            self.problem.cache_lease = lease
            try:
                self._run_plan(start, stop)
            finally:
                self.problem.cache_lease = None

    def _run_plan(self, start: int, stop: int) -> None:
        if self.problem.context.redo is not None and self.problem.context.redo == self.redo_begun():
            log.info("continuing the --redo %d begun before (its stage has not finished yet)", self.problem.context.redo)
            self.problem.context.redo = None  # its record is gone: the stage runs, resuming what it had done
        plan = self.plan(start, stop)
        self.check_earlier_done(plan)
        self.problem.check_config()
        if any(p.action == "run" and p.stage.role == "train" and p.stage.number != self.problem.context.redo for p in plan):
            self.guard_checkpoints()  # --redo of training sets the old one aside instead
        for line in self.config_diff():
            log.info("%s", line)
        cfglib.save_config(self.conf, self.paths.config)
        for item in plan:
            if item.stage.role != "prepare" and self.problem.cache_lease is not None:
                self.problem.cache_lease.end_turn()  # the cache folder is prepared: the next run may check it
            if item.action == "skip":
                log.info("stage %d (%s) is up to date; skipping", item.stage.number, item.stage.name)
            elif item.action == "run" and item.stage.number != self.problem.context.redo \
                    and item.state.status == "stale" and self.state(item.stage).status == "done":
                # planned only because an earlier stage ran again, and that one produced the same output
                log.info("stage %d (%s) is up to date (earlier stages re-ran with the same output); skipping",
                         item.stage.number, item.stage.name)
            elif item.action == "run":
                self.run_one(item.stage)

    def save_experiment(self) -> None:
        """target_dir/experiment.json: the problem (as `run` takes it) and the command of every run that ran a stage."""
        import sys

        from speechrecipe.registry import problem_spec

        command = self.problem.context.command or " ".join(sys.argv)
        saved = json.loads(self.paths.experiment.read_text()) if self.paths.experiment.is_file() else {}
        commands = [c for c in saved.get("commands", []) if c != command] + [command]
        atomic_write_json(self.paths.experiment, {"problem": problem_spec(type(self.problem)), "commands": commands})

    def run_one(self, stage: Stage) -> None:
        if not self._command_saved:  # a run that only skips done stages leaves experiment.json as it was
            self.save_experiment()
            self._command_saved = True
        redo = self.problem.context.redo == stage.number
        state = StageState("stale", ["--redo: from scratch"]) if redo else self.state(stage)
        if state.status == "stale":
            log.info("stage %d (%s) is stale: %s", stage.number, stage.name, "; ".join(state.reasons))
        label = f"stage {stage.number} ({stage.name})"
        preemption.stop_point(f"before {label}")
        log.info("stage %d (%s): %s", stage.number, stage.name, stage.description)
        self._stage = stage
        last_run.begin_stage(self.paths.target_dir, stage.number, stage.name)
        began = time.time()
        training = stage.role == "train"
        if redo:
            self.begin_redo(stage)
        if training:
            self.guard_checkpoints()
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.paths.checkpoints / TRAIN_RUN_FILE, self.train_deps())
        together = training or stage.all_ranks
        if together:
            distributed.broadcast({"train": stage.number})  # the other ranks run this one with rank 0
        self._training = together  # a failure now: the other ranks stop with it (torchrun ends them)
        # a signal stops training and evaluation at their own safe points (an update, a pair), any other stage
        # after its current atomic write
        with contextlib.nullcontext() if training or stage.role == "evaluate" else preemption.armed(label):
            files = self.problem.run_stage(stage.number) or []
        self._training = False
        deps = self.deps(stage)
        record = StageRecord(
            stage=stage.number,
            name=stage.name,
            deps=deps,
            inputs=self.inputs(stage),
            files={str(Path(f).resolve()): self.digest(Path(f)) for f in files},
            finished_at=time.time(),
            config_digest=digest(deps),
            roots=self.roots,
            rules=DEPENDENCY_RULES,
        )
        record.save(self.paths.record(stage.number))
        if self.redo_begun() == stage.number:
            self.redo_marker.unlink()
        log.info("stage %d (%s) done in %.1f s", stage.number, stage.name, time.time() - began)


def set_aside(path: Path) -> Path:
    """Rename `path` to `<name>.old-<time>` beside it; return the new path."""
    aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    while aside.exists():  # twice within a second
        aside = aside.with_name(aside.name + "+")
    shutil.move(str(path), aside)
    return aside


def describe_plan(runner: Runner, plan: list[PlannedStage]) -> list[str]:
    """Lines for --dry-run: what each stage would do and why, and what a run would refuse."""
    lines = runner.config_diff()
    for item in plan:
        head = f"stage {item.stage.number} ({item.stage.name}):"
        action = {"run": "run", "skip": "skip"}.get(item.action, "not in range")
        lines.append(f"{head} {action} [{item.state.describe()}]")
    training = runner.training_stage
    runs_train = any(p.action == "run" and p.stage.role == "train" for p in plan)
    if not runs_train or not list_checkpoints(runner.paths.checkpoints):
        return lines
    training = training.number
    force = runner.problem.context.force
    outcome = "--force moves them aside and trains again" if force else "a run refuses without --force"
    conflicts = runner.training_conflicts()
    if conflicts:
        lines.append(f"{runner.paths.checkpoints} was trained with another config ({'; '.join(conflicts)}): {outcome}")
    elif any(p.action == "run" and p.stage.number < training for p in plan):
        lines.append(f"{runner.paths.checkpoints} holds training: if the stages before {training} change its data, {outcome}")
    return lines
