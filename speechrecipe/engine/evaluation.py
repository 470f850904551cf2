"""Stages 3-4's bodies: every chosen checkpoint × test set through the problem's evaluate_test_set, resumable
per pair (engine/pairs.py), then the report (engine/report.py). Also the one evaluation loop the problems share.

A mixin of Problem (engine/problem.py). Imports no torch at module level.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from speechrecipe.config import select
from speechrecipe.fileio import atomic_write_json, digest

log = logging.getLogger(__name__)


class EvaluationStages:
    """evaluate_checkpoints (stage "evaluate"), report_best (stage "report") and test_outputs."""

    def test_outputs(self, task, split: str, encoder: Any, desc: str = "evaluate", step=None, dataset=None) -> list[dict]:
        """`step` (task.test_step) over the length-sorted evaluation batches (build_batch_sampler.eval_batch_secs) of
        a split's build_dataset, or of `dataset`: the one evaluation loop, outputs on the CPU."""
        import torch

        from speechrecipe.engine.pairs import collect
        from speechrecipe.errors import DataError

        device = torch.device(self.device)
        task.to(device).eval()
        dataset = self.build_dataset(self.conf.build_dataset, split, encoder) if dataset is None else dataset
        if not dataset.rows:
            raise DataError(f"{self.paths.manifest(split)} holds no utterances; "
                            f"see the counts in {self.paths.cache / 'summary.json'}")
        # one order whatever order the rows came in (stage 3's manifest, `infer`'s inputs): the same audio makes
        # the same batches, so the same numbers
        dataset.rows.sort(key=lambda row: (row.get("path", ""), int(row.get("start", 0)), row["id"]))
        loader = self.eval_loader(dataset, self.conf.build_batch_sampler.eval_batch_secs)
        return collect(step or task.test_step, loader, device, f"{desc} {split}")

    def eval_loader(self, dataset, batch_secs: float):
        """Length-sorted evaluation batches of a ManifestDataset under a padded-audio budget."""
        from speechrecipe.data.dataset import make_loader
        from speechrecipe.data.sampler import EpochBatchSampler

        from speechrecipe.engine.pairs import SHARD

        budget = int(batch_secs * dataset.preprocessor.inputs_per_second)
        sampler = EpochBatchSampler(dataset.lengths(), seed=0, max_batch_length=budget, shuffle=False)
        if SHARD.size > 1:  # stage 3 under torchrun: this rank's share of the one-process batches
            sampler = sampler.shard(SHARD.rank, SHARD.size, complete=True)
        return make_loader(dataset, sampler, self.num_workers)

    def evaluate_checkpoints(self) -> list[Path]:
        """Stage "evaluate": evaluate_test_set for every chosen checkpoint × test set."""
        encoder = self.load_encoder()
        task = self.build_task(self.section("build_task"), encoder)

        def evaluate_pair(state: dict, test_set: str, out_dir: Path) -> dict[str, float]:
            self.restore_model(task, state)
            return self.evaluate_test_set(task, encoder, test_set, out_dir)

        return self.evaluate_pairs(self.conf.evaluate, self.test_sets(), evaluate_pair)

    def evaluate_pairs(self, conf: DictConfig, test_sets: list[str], evaluate_pair) -> list[Path]:
        """Every chosen checkpoint × test set; finished pairs are kept across interruptions."""
        from speechrecipe.fileio import file_digest
        from speechrecipe.engine import distributed
        from speechrecipe.engine.allocator import keep_freed_memory
        from speechrecipe.engine.pairs import choose_checkpoints, run_pairs

        keep_freed_memory()
        directory = Path(conf.test_ckpt_dir) if conf.test_ckpt_dir else self.paths.checkpoints
        checkpoints = choose_checkpoints(directory, list(conf.test_ckpt_steps))
        key = {"evaluate": digest(self.evaluation_settings())}
        inputs = {t: digest([file_digest(p) for p in self.test_set_files(t)]) for t in test_sets}
        written = run_pairs(checkpoints, test_sets, self.paths.evaluation, key, evaluate_pair, inputs)
        if distributed.world().main:  # under torchrun every rank evaluates (engine/pairs.py)
            atomic_write_json(self.paths.evaluation / "latest.json", [str(p) for p in written])
        return written

    def evaluation_settings(self) -> dict[str, Any]:
        """The keys stage 3 depends on and training does not (evaluate.*, ...), less the checkpoints chosen and the
        test sets' names: a checkpoint × test set pair evaluated under the same settings is reused."""
        evaluate, train = self.stage_with_role("evaluate"), self.stage_with_role("train")
        ignore = (*evaluate.ignore, "evaluate.test_ckpt_steps", *self.test_set_keys)
        settings = select(self.conf, evaluate.uses, exclude=ignore)
        trained = select(self.conf, train.uses, exclude=train.ignore) if train else {}
        return {key: value for key, value in settings.items() if key not in trained}

    def evaluated(self) -> list[Path]:
        """The result files of the last stage 3."""
        listing = self.paths.evaluation / "latest.json"
        if not listing.is_file():
            from speechrecipe.errors import ConfigError

            entry = self.stage_with_role("evaluate")
            raise ConfigError(f"no evaluation results in {self.paths.evaluation}; run with --start {entry.number if entry else 0}")
        return [Path(p) for p in json.loads(listing.read_text())]

    def report_best(self) -> None:
        """Stage "report": per test set the checkpoint chosen without the test set (report.select), its metrics
        with 95 % bootstrap intervals (from unit_statistics) and the best on test beside it → results/, extras."""
        from speechrecipe.engine.report import Headline, report_results

        best, table = report_results(self.evaluated(), Headline(self.metric, self.higher_better), self.conf.get("report"),
                                     self.paths.results, self.result_columns(), self.results_title, self.unit_statistics)
        self.report_extras(best)
        log.info("results (%s):\n%s", self.paths.results / "README.md", table)

