"""The standard stages of a training problem, declared once: 0 prepare, 1 encoder, 2 train, 3 evaluate, 4 report.

A training problem subclasses Recipe and says only what differs: what each stage does in its words
(`stage_texts`), the files its stages read, the keys that name its test sets. Stages 0 and 1 depend on
their own sections; stages 2 and 3 depend on every config key except the ones named here, so a new key
is a dependency by default. Imports no torch.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from speechrecipe.config import ALL
from speechrecipe.engine.problem import Problem
from speechrecipe.engine.stages import RUNTIME_KEYS, TRAIN_RESUME_SAFE, Stage, stage

# Keys outside `evaluate:` that only validation and stage 3 read: training does not depend on them.
EVALUATION_KEYS = ("build_batch_sampler.eval_batch_secs",)


class PreparesCorpus(Problem):
    """Stage 0 of every problem that reads a corpus: parse it into manifests in the cache (prepare_corpus)."""

    @stage(0, "prepare data", "parse the corpus into manifests", role="prepare", uses=("prepare_data",),
           ignore=RUNTIME_KEYS)
    def prepare_data(self) -> list[Path]:
        return self.prepare_corpus_cached()


class Recipe(PreparesCorpus):
    """A training problem: the five standard stages, each one call to a shared body (Problem's mixins:
    engine/preparation.py, training.py, evaluation.py)."""

    encoder_name: ClassVar[str] = "encoder"  # stage 1 is "build <name>", fed by the section build_<name>
    encoder_reads: ClassVar[tuple[str, ...]] = ("train.jsonl",)  # prepared files stage 1 reads
    training_reads: ClassVar[tuple[str, ...]] = ("train.jsonl", "valid.jsonl")  # prepared files and stage 1's
    config_sections = ("build_encoder", "build_dataset", "build_batch_sampler", "build_downstream",
                       "build_task")

    @stage(1, "build encoder", "fit the label encoder on the training split")
    def build_encoder_stage(self) -> list[Path]:
        return self.fit_encoder()

    @stage(2, "train", "train the model; keep valid_best by the validation metric", role="train")
    def train_stage(self) -> None:
        self.train_model()

    @stage(3, "evaluate", "evaluate each chosen checkpoint on each test set", role="evaluate", all_ranks=True)
    def evaluate_stage(self) -> list[Path]:
        return self.evaluate_checkpoints()

    @stage(4, "report best", "valid_best per test set with 95 % intervals, best on test beside it", role="report")
    def report_stage(self) -> None:
        self.report_best()

    def test_sets(self) -> list[str]:
        return ["test"]

    @classmethod
    def complete_stage(cls, mark: Stage) -> Stage:
        """A standard stage 1-4 with this problem's sections and files, and stages 2 and 3 depending on every key
        but the ones named here."""
        if not any(mark is getattr(Recipe, name)._stage for name in STANDARD):  # a stage of the problem's own
            return super().complete_stage(mark)
        own = {
            1: {"name": f"build {cls.encoder_name}", "uses": (f"build_{cls.encoder_name}",), "reads": cls.encoder_reads},
            2: {"uses": (ALL,), "ignore": cls.training_ignored(), "resume_safe": TRAIN_RESUME_SAFE,
                "reads": cls.training_reads},
            3: {"uses": (ALL,), "ignore": ("report", *RUNTIME_KEYS)},
            4: {"uses": ("report",)},
        }[mark.number]
        return replace(super().complete_stage(mark), **own)

    @classmethod
    def training_ignored(cls) -> tuple[str, ...]:
        """What training does not depend on: evaluation and report settings, test sets, run-time keys."""
        return ("evaluate", "report", *EVALUATION_KEYS, *cls.test_set_keys, *RUNTIME_KEYS)


STANDARD = ("build_encoder_stage", "train_stage", "evaluate_stage", "report_stage")
