"""The training loop, generic over problems: updates, accumulation, clipping, mixed
precision, validation, checkpoint cadence, exact resume and signal handling.

A task is an nn.Module whose forward(batch) is its train step and returns a dict
with "loss"; batches are dicts whose "ids" list gives the batch size.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import random
import signal
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig

from speechrecipe.data.dataset import ManifestDataset, make_loader
from speechrecipe.data.sampler import EpochBatchSampler, sample_seed
from speechrecipe.engine import checkpoint as ckpt
from speechrecipe.engine import distributed
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.data.prefetch import Prefetch
from speechrecipe import preemption
from speechrecipe.errors import Interrupted, RunFailure
from speechrecipe.fileio import naming
from speechrecipe.progress import progress

log = logging.getLogger(__name__)
FORMAT = 1
WALL = 1000  # the stop reason "train.max_wall_secs passed", above every signal number (a MAX all-reduce prefers it)
# where a learning-rate scheduler is in its schedule (the rest of its state_dict is the schedule itself)
SCHEDULER_POSITION = ("last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step")


@dataclass
class TrainingState:
    """Counters saved in every checkpoint."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    position: int = 0  # batches consumed in this epoch
    best_value: float | None = None
    best_step: int | None = None
    nonfinite_total: int = 0
    nonfinite_run: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _ignore_signals_in_worker(_: int) -> None:
    # Ctrl-C or a cluster's SIGUSR1/SIGTERM reaches the whole process group; the main process decides when to stop.
    preemption.ignore_signals()


def move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


class Window:
    """Running sums between two log steps."""

    def __init__(self) -> None:
        self.began, self.wait, self.losses, self.items, self.seconds = time.perf_counter(), 0.0, [], 0, 0.0

    def summary(self, device: Any = "cpu") -> dict[str, float]:
        """Rates over the window; under torchrun, of all ranks together (loss and wait: their mean)."""
        elapsed = max(time.perf_counter() - self.began, 1e-9)
        ranks = distributed.world().size
        items, seconds, wait, loss_sum, losses = distributed.total(
            [self.items, self.seconds, self.wait, sum(self.losses), len(self.losses)], device)
        return {
            "loss": loss_sum / max(losses, 1),
            "utt_per_s": items / elapsed,
            "audio_s_per_s": seconds / elapsed,
            "data_wait": wait / ranks / elapsed,
        }


class Trainer:
    """Runs `total_steps` updates of `task`, resuming from the latest checkpoint."""

    def __init__(
        self,
        task: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        dataset: ManifestDataset,
        sampler: EpochBatchSampler,
        conf: DictConfig,
        paths: ExperimentPaths,
        device: str,
        num_workers: int,
        validate: Callable[[], dict[str, float]] | None,
        run_id: str,
    ):
        self.task, self.optimizer, self.scheduler = task, optimizer, scheduler
        self.dataset, self.sampler, self.conf, self.paths = dataset, sampler, conf, paths
        self.device, self.num_workers, self.validate = torch.device(device), num_workers, validate
        self.run_id = run_id  # identifies the config this training follows; kept in every checkpoint
        self.state = TrainingState()
        self.precision = self._precision(str(conf.precision))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.params = [p for p in task.parameters() if p.requires_grad]
        # under torchrun: this rank's share of the batches, and a DDP wrapper for the train step
        self.world = distributed.world()
        if self.world.distributed:
            self.sampler = sampler.shard(self.world.rank, self.world.size)
        self.model: torch.nn.Module = task
        self.agreed_stop: int = 0  # torchrun: the signal every rank stops for (WALL: train.max_wall_secs)
        self.max_wall_secs = conf.get("max_wall_secs")
        self.saved_step: int | None = None  # the step of the last checkpoint this process saved
        self.tensorboard = None  # engine/tensorboard.py's log, with train.tensorboard on rank 0
        # modules that change with training progress (an upstream that starts fine-tuning) hear each update's number
        self.step_listeners = [m for m in task.modules() if callable(getattr(m, "set_training_step", None))]

    def _precision(self, wanted: str) -> str:
        if self.device.type != "cuda" and wanted != "fp32":
            log.warning("train.precision=%s runs as fp32 on %s (low precision is slower on CPUs)", wanted, self.device)
            return "fp32"
        return wanted

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ----- checkpoints -------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "counters": asdict(self.state),
            "model": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "valid_metric": str(self.conf.valid_metric),
        }

    def save(self) -> None:
        """Every rank calls this at the same step; rank 0 writes, with every rank's RNG states."""
        began = time.perf_counter()
        rngs = distributed.gather(capture_rng()) if self.world.distributed else None
        if self.world.main:
            state = self.checkpoint_state()
            if rngs is not None:
                state["rng_ranks"] = rngs
            ckpt.save_step(state, self.paths.checkpoints, self.state.step, int(self.conf.keep_num_ckpts or 0))
            self.event("save", seconds=time.perf_counter() - began)
        distributed.barrier()  # no rank runs ahead of a checkpoint that may yet fail to write
        self.saved_step = self.state.step

    def restore(self) -> Path | None:
        """Load the latest checkpoint (or train.resume_ckpt_dir's) into everything; its path, or None."""
        found = ckpt.load_latest(self.paths.checkpoints) if self.conf.auto_resume else None
        if found is None and self.conf.resume_ckpt_dir:
            source = Path(str(self.conf.resume_ckpt_dir))
            found = ckpt.load_latest(source) if source.is_dir() else (ckpt.load(source), source)
            if found is None:
                raise RunFailure(f"train.resume_ckpt_dir: no readable step-N.ckpt in {source}")
        if found is None:
            return None
        state, path = found
        self.task.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self._restore_scheduler(state["scheduler"], int(state["counters"]["step"]))
        self.scaler.load_state_dict(state["scaler"])
        self._restore_rng(state)
        self.state = TrainingState(**state["counters"])
        log.info("resuming from %s (step %d)", path, self.state.step)
        return path

    def _restore_scheduler(self, saved: dict[str, Any], step: int) -> None:
        """The saved schedule, or, when its shape changed (a length that follows train.total_steps, which may
        change on resume), the new schedule replayed to `step`: OneCycleLR's saved length would stop
        training with an error past its old end, or leave the rate high where the new run ends."""
        fresh = self.scheduler.state_dict()
        done = step >= int(self.conf.total_steps)  # nothing left to train: a shorter new schedule cannot be replayed
        if done or all(saved.get(k) == v for k, v in fresh.items() if k not in SCHEDULER_POSITION):
            self.scheduler.load_state_dict(saved)
            return
        before = [group["lr"] for group in self.optimizer.param_groups]
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": replaying, not training
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                self.scheduler.step()
        log.warning("the learning-rate schedule changed since the checkpoint (train.total_steps?): it follows the new "
                    "one from step %d (learning rate %.3g, was %.3g)", step, self.optimizer.param_groups[0]["lr"], before[0])

    def _restore_rng(self, state: dict[str, Any]) -> None:
        ranks = state.get("rng_ranks")
        if not self.world.distributed:
            restore_rng(state["rng"])
        elif ranks is not None and len(ranks) == self.world.size:
            restore_rng(ranks[self.world.rank])
        else:
            if self.world.main:
                log.warning("resuming on %d processes from a checkpoint saved by %d: training continues, but not "
                            "as the original run would have", self.world.size, len(ranks) if ranks else 1)
            self._seed_rank()

    def _seed_rank(self) -> None:
        """Under torchrun, a different random stream per rank (dropout, SpecAugment masks)."""
        seed = sample_seed(int(self.conf.seed), -2, self.world.rank)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def event(self, kind: str, **fields: Any) -> None:
        if not self.world.main:
            return
        event = {"event": kind, "step": self.state.step, "time": round(time.time(), 3), **fields}
        with naming(self.paths.train_log), open(self.paths.train_log, "a") as handle:
            handle.write(json.dumps(event) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.write(event)

    # ----- the loop ------------------------------------------------------------------
    def run(self) -> TrainingState:
        self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
        self.task.to(self.device)
        if self.world.distributed:
            self._seed_rank()
        began = time.perf_counter()
        resumed = self.restore()
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = bool(self.conf.get("find_unused_parameters", False))
            self.model = DistributedDataParallel(self.task, device_ids=ids, find_unused_parameters=unused)
            if self.world.main:
                log.info("training on %d processes (torchrun), %s each", self.world.size, self.device.type)
        restored = time.perf_counter() - began
        total = int(self.conf.total_steps)
        if self.state.step >= total:
            log.info("training already reached step %d (train.total_steps=%d)", self.state.step, total)
            return self.state
        loader = make_loader(
            self.dataset, self.sampler, self.num_workers, self.state.epoch, self.state.position,
            endless=True, pin_memory=self.device.type == "cuda", worker_init_fn=_ignore_signals_in_worker,
        )
        # with no workers, a thread can make the next batches while the step runs
        depth = int(self.conf.get("prefetch_batches", 0))
        prefetch = Prefetch(iter(loader), depth) if self.num_workers == 0 and depth > 0 else None
        batches = prefetch or iter(loader)
        self.event("start", total_steps=total)  # status and compare time each training session from here
        if self.conf.get("tensorboard") and self.world.main:
            from speechrecipe.engine.tensorboard import TensorBoardLog

            self.tensorboard = TensorBoardLog(self.paths.tensorboard, self.paths.train_log, self.state.step)
        try:
            with preemption.handling(), preemption.training():
                if resumed is not None:
                    batches = self._timed_first_batch(batches, began, resumed, restored)
                self._loop(batches, total)
        finally:
            if prefetch is not None:
                prefetch.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self.state

    def _timed_first_batch(self, batches, began: float, source: Path, restored: float):
        """Log how long resuming took: loading the checkpoint, then until the first new batch is in hand."""
        first = next(batches)
        self.event("resume", checkpoint=str(source), restore_s=restored, seconds=time.perf_counter() - began)
        return itertools.chain([first], batches)

    def _loop(self, batches, total: int) -> None:
        self.task.train()
        window = Window()
        bar = progress(total=total, initial=self.state.step, desc="train", unit="step", disable=not self.world.main,
                       tenths=False)  # in a file or a pipe: a plain line every train.log_step
        try:
            while self.state.step < total:
                # forward passes update buffers (batch-norm statistics) even when the loss is NaN
                buffers = [b.clone() for b in self.task.buffers()]
                for module in self.step_listeners:
                    module.set_training_step(self.state.step)
                ok = self._accumulate(batches, window)
                if not self._update(ok):
                    self._restore_buffers(buffers)
                    self._count_nonfinite()
                bar.update(1)
                self._after_update(window, bar, total)
                # under torchrun, what the ranks agreed on with the last micro-batch's loss
                stop = self.agreed_stop if self.world.distributed else self._stop_wanted()
                if stop:
                    self._stop(stop)
        finally:
            bar.close()

    def _stop_wanted(self) -> int:
        """This process's reason to stop now: a signal's number, WALL past train.max_wall_secs, else 0."""
        if preemption.received():
            return preemption.received()
        if self.max_wall_secs is not None and preemption.elapsed_secs() >= float(self.max_wall_secs):
            return WALL
        return 0

    def _stop(self, why: int) -> None:
        """Save step-N.ckpt at this update (every rank takes part) and leave with the requeue exit code."""
        began = time.perf_counter()
        reason = f"train.max_wall_secs={self.max_wall_secs}" if why == WALL else signal.Signals(why).name
        if self.world.main:
            log.warning("stopping for %s: saving the checkpoint of step %d", reason, self.state.step)
        if self.saved_step != self.state.step:  # this update's regular save may have just written it
            self.save()
        saved = ckpt.step_path(self.paths.checkpoints, self.state.step)
        if self.world.main:
            log.warning("saved %s for %s in %.2f s", saved, reason, time.perf_counter() - began)
        self.event("stop", reason=reason, seconds=time.perf_counter() - began)
        raise Interrupted(f"stopped by {reason} at step {self.state.step}; checkpoint saved in "
                          f"{self.paths.checkpoints}; run the same command again to resume",
                          signal.SIGTERM if why == WALL else why)

    def _advance(self) -> None:
        self.state.position += 1
        if self.state.position >= self.sampler.num_batches(self.state.epoch):
            self.state.epoch, self.state.position = self.state.epoch + 1, 0

    def _accumulate(self, batches, window: Window) -> bool:
        accumulate, ok = int(self.conf.gradient_accumulate), True
        for micro in range(accumulate):
            began = time.perf_counter()
            batch = next(batches)
            window.wait += time.perf_counter() - began
            self._advance()
            # DDP averages gradients on the last micro-batch's backward only
            last = micro == accumulate - 1
            sync = contextlib.nullcontext() if last or not self.world.distributed else self.model.no_sync()
            with sync:
                with self.autocast():
                    loss = self._forward(batch)
                value = float(loss.detach())
                finite = math.isfinite(value)
                if self.world.distributed:
                    finite = self._agree(finite, last)
                if not finite:
                    ok = False
                    continue
                self.scaler.scale(loss / accumulate).backward()
            window.losses.append(value)
            window.items += len(batch["ids"])
            window.seconds += float(batch.get("audio_seconds", 0.0))
        return ok

    def _agree(self, finite: bool, last: bool) -> bool:
        """torchrun: whether every rank's loss is finite (a rank skipping backward would stall the
        others) and, with the last micro-batch, whether any rank got a signal or passed train.max_wall_secs
        (ranks' clocks differ): one all-reduce, so every rank stops after the same update."""
        pending = self._stop_wanted() if last else 0
        bad, agreed = distributed.maxima([0 if finite else 1, pending], self._collective_device)
        if last:
            self.agreed_stop = agreed
        return not bad

    def _forward(self, batch: dict) -> torch.Tensor:
        try:
            return self.model(move_to(batch, self.device))["loss"]
        except RuntimeError as error:
            if "find_unused_parameters" not in str(error):
                raise
            raise RunFailure("some trainable parameters got no gradient in the last step, which DistributedDataParallel "
                             "refuses by default; set train.find_unused_parameters=true (or freeze them)") from error

    def _update(self, ok: bool) -> bool:
        """One optimizer update from the accumulated gradients, skipped when they are not finite."""
        if ok:
            self.scaler.unscale_(self.optimizer)
            clip = float(self.conf.gradient_clipping or 0) or math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
            ok = bool(torch.isfinite(norm)) or self.precision == "fp16"  # fp16: the scaler skips inf
        if ok:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.nonfinite_run = 0
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and self.conf.use_scheduler:
            self.scheduler.step()
        self.state.step += 1
        return ok

    @torch.no_grad()
    def _restore_buffers(self, saved: list[torch.Tensor]) -> None:
        for buffer, value in zip(self.task.buffers(), saved):
            buffer.copy_(value)

    def _count_nonfinite(self) -> None:
        """Count a skipped update; too many in a row saves the unchanged (last good) weights and stops."""
        self.state.nonfinite_total += 1
        self.state.nonfinite_run += 1
        log.warning(
            "step %d: non-finite loss or gradient; update skipped (%d so far, %d in a row)",
            self.state.step, self.state.nonfinite_total, self.state.nonfinite_run,
        )
        self.event("nonfinite", total=self.state.nonfinite_total, in_a_row=self.state.nonfinite_run)
        limit = max(int(self.conf.max_nonfinite_updates), 1)
        if self.state.nonfinite_run >= limit:
            # skipped updates leave weights and optimizer as they were after the last good update
            self.save()
            good = self.state.step - self.state.nonfinite_run
            raise RunFailure(
                f"{self.state.nonfinite_run} updates in a row had a non-finite loss or gradient "
                f"(train.max_nonfinite_updates={limit}); the weights of step {good}, the last good one, are saved "
                f"in {ckpt.step_path(self.paths.checkpoints, self.state.step)}; lower the learning rate or check the data"
            )

    def _after_update(self, window: Window, bar, total: int) -> None:
        step = self.state.step
        if step % int(self.conf.log_step) == 0 or step == total:
            stats = window.summary(self._collective_device)
            lr = self.optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{stats['loss']:.3f}", utt_s=f"{stats['utt_per_s']:.1f}", wait=f"{stats['data_wait']:.0%}")
            self.event("train", lr=lr, **stats)
            log.debug("step %d: %s lr=%.3g", step, " ".join(f"{k}={v:.4g}" for k, v in stats.items()), lr)
            window.__init__()
        if self.validate is not None and (step % int(self.conf.eval_step) == 0 or step == total):
            self._validate()
            window.__init__()
        if step % int(self.conf.save_step) == 0 or step == total:
            self.save()

    @property
    def _collective_device(self) -> torch.device:
        """Where small tensors for collectives live: the GPU with nccl, else the CPU (gloo)."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _validate(self) -> None:
        """Rank 0 validates (and keeps valid_best) while the other ranks wait."""
        if self.world.main:
            self._validate_here()
        distributed.barrier()

    def _validate_here(self) -> None:
        self.task.eval()
        metrics = self.validate()
        self.task.train()
        name = str(self.conf.valid_metric)
        if name not in metrics:
            raise RunFailure(f"train.valid_metric: '{name}' is not among the validation metrics {sorted(metrics)}")
        value, best = float(metrics[name]), self.state.best_value
        better = best is None or (value > best if self.conf.valid_higher_better else value < best)
        log.info("step %d: valid %s%s", self.state.step, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
                 " (best so far)" if better else "")
        self.event("valid", metric=name, higher_better=bool(self.conf.valid_higher_better), **metrics)
        if better:
            self.state.best_value, self.state.best_step = value, self.state.step
            best_state = {"format": FORMAT, "run_id": self.run_id, "counters": asdict(self.state), "model": self.task.state_dict()}
            ckpt.save_atomic(best_state, ckpt.named_path(self.paths.checkpoints, ckpt.BEST))
