"""Stages 1-2's bodies: fit the encoder, then build the task, data and sampler and run the engine's trainer.

A mixin of Problem (engine/problem.py); the hooks it calls (build_encoder, build_task, ...) are the contract's.
Imports no torch at module level.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speechrecipe.config import select
from speechrecipe.fileio import digest


def check_task(task: Any, problem: str) -> None:
    """A Task is a torch.nn.Module with forward(batch) and test_step(batch) (engine/task.py)."""
    import torch

    from speechrecipe.engine.task import Task

    if not (isinstance(task, torch.nn.Module) and isinstance(task, Task)):
        from speechrecipe.errors import ConfigError

        raise ConfigError(f"{problem}.build_task returned a {type(task).__name__}: a Task is a torch.nn.Module "
                          "with forward(batch) -> {'loss': ...} and test_step(batch) (speechrecipe/engine/task.py)")


class TrainingStages:
    """fit_encoder, train_model and the glue around the trainer (pretrained weights, checkpoint restore)."""

    def train_run_id(self) -> str:
        """Identifies what training produces: its config minus keys safe to change on resume."""
        entry = self.stage_with_role("train")
        return digest(select(self.conf, entry.uses, exclude=entry.ignore + entry.resume_safe))

    def train(self, conf: DictConfig, task, dataset, sampler, validate) -> Any:
        """The engine's training loop over this problem's task and data."""
        from speechrecipe.engine import distributed
        from speechrecipe.engine.allocator import keep_freed_memory
        from speechrecipe.engine.plots import plot_training
        from speechrecipe.engine.trainer import Trainer

        keep_freed_memory()
        check_task(task, type(self).__name__)
        self.apply_pretrained(task)
        params = [p for p in task.parameters() if p.requires_grad]
        optimizer = self.build_optimizer(self.conf.build_optimizer, params)
        scheduler = self.build_scheduler(self.conf.build_scheduler, optimizer) if conf.use_scheduler else None
        trainer = Trainer(task, optimizer, scheduler, dataset, sampler, conf, self.paths, self.device,
                          self.num_workers, validate, self.train_run_id())
        state = trainer.run()
        if distributed.world().main:  # one writer per file: torchrun ranks would race on its temporary
            plot_training(self.paths.train_log, self.paths.target_dir / "training_curve.png", str(conf.valid_metric))
        return state

    def apply_pretrained(self, task) -> None:
        """Load the `pretrained:` sources into the task (collected in target_dir/pretrained/), once per task."""
        from speechrecipe.engine import pretrained

        if getattr(task, "_pretrained_applied", False):
            return
        pretrained.apply(self.conf.get("pretrained"), task, self.paths.target_dir / "pretrained", self.conf)
        task._pretrained_applied = True

    def restore_model(self, task, state: dict) -> None:
        """Evaluation: a checkpoint's weights into the task, after the pretrained ones it may refer to."""
        self.apply_pretrained(task)
        task.load_state_dict(state["model"])

    def fit_encoder(self) -> list[Path]:
        """Build the encoder from the training manifest and save it; returns the files written."""
        from speechrecipe.data.manifest import read_jsonl

        encoder = self.build_encoder(self.section("build_encoder"), read_jsonl(self.paths.manifest("train")))
        return self.save_encoder(encoder)

    def train_model(self) -> None:
        """Stage "train": seed, build task, data and sampler from the saved encoder, run the trainer."""
        from speechrecipe.engine.trainer import seed_everything

        seed_everything(self.conf.train.seed)
        encoder = self.load_encoder()
        task = self.build_task(self.section("build_task"), encoder)
        dataset = self.build_dataset(self.conf.build_dataset, "train", encoder)
        sampler = self.build_batch_sampler(self.conf.build_batch_sampler, dataset)
        self.train(self.conf.train, task, dataset, sampler, lambda: self.validate(task, encoder))

