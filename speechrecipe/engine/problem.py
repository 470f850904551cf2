"""Problem: a stage table plus default builders. Imports no torch at module level.

A problem subclass declares its stages with @stage and supplies the builders that
differ; the runner (engine/runner.py) decides which stages run. Builders take the
config section of the same name and return one thing; they do no file I/O.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from omegaconf import DictConfig

from speechrecipe.config import digest, select
from speechrecipe.engine.paths import ExperimentPaths

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# train.* keys that never change what training produces.
TRAIN_IGNORED = (
    "train.log_step",
    "train.eval_step",
    "train.save_step",
    "train.keep_num_ckpts",
    "train.auto_resume",
    "train.resume_ckpt_dir",
    "train.valid_metric",
    "train.valid_higher_better",
    "train.max_nonfinite_updates",
    "train.prefetch_batches",
    "train.find_unused_parameters",
    "train.tensorboard",
)
# train.* keys that may change on resume: training continues from the latest checkpoint.
TRAIN_RESUME_SAFE = ("train.total_steps",)


@dataclass(frozen=True)
class Stage:
    """One row of a problem's stage table."""

    number: int
    name: str
    description: str
    uses: tuple[str, ...]
    ignore: tuple[str, ...]
    resume_safe: tuple[str, ...]
    method: str
    # files it reads (names or glob patterns in the cache, else target_dir); when given, its record
    # depends on their contents instead of on every earlier stage's record
    reads: tuple[str, ...] = ()


def stage(
    number: int,
    name: str,
    description: str,
    uses: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    resume_safe: tuple[str, ...] = (),
    reads: tuple[str, ...] = (),
) -> Callable:
    """Declare a method as stage `number`; `uses` are the config sections it depends on, `reads` the
    files of earlier stages it reads (without `reads`, it depends on every earlier stage's record)."""

    def mark(method: Callable) -> Callable:
        method._stage = Stage(number, name, description, tuple(uses), tuple(ignore), tuple(resume_safe),
                              method.__name__, tuple(reads))
        return method

    return mark


@dataclass
class RunContext:
    """Runtime settings from the command line, not part of the experiment's config."""

    device: str = "auto"
    num_workers: int | None = None  # None: the config's train.num_workers
    force: bool = False


class Problem:
    """Base of every problem: the stage table and the builders every problem shares."""

    conf_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # The stage whose checkpoints a config change would throw away (guarded by --force).
    training_stage: ClassVar[int] = 2
    # prepare_data keys that do not change the prepared manifests (so not in the cache key).
    cache_ignored: ClassVar[tuple[str, ...]] = ("prepare_data.num_workers",)

    def __init__(self, config: DictConfig, paths: ExperimentPaths, context: RunContext | None = None):
        self.conf = config
        self.paths = paths
        self.context = context or RunContext()

    @classmethod
    def stages(cls) -> list[Stage]:
        """The stage table, read from the @stage marks along the class hierarchy."""
        found: dict[int, Stage] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                mark = getattr(value, "_stage", None)
                if isinstance(mark, Stage):
                    found[mark.number] = mark
        return [found[n] for n in sorted(found)]

    def run_stage(self, number: int) -> list[Any] | None:
        """Run one stage; it may return files whose digests its record keeps."""
        (entry,) = [s for s in self.stages() if s.number == number]
        return getattr(self, entry.method)()

    # ----- builders every problem shares -------------------------------------------
    def build_upstream(self, conf: DictConfig) -> "torch.nn.Module":
        from speechrecipe.nn.upstream import build_upstream

        return build_upstream(conf.name, **conf.get(conf.name, {}))

    def build_featurizer(self, conf: DictConfig, upstream: "torch.nn.Module") -> "torch.nn.Module":
        from speechrecipe.nn.featurizer import Featurizer

        return Featurizer(upstream.num_layers, upstream.output_dim, **conf)

    def build_optimizer(self, conf: DictConfig, params) -> "torch.optim.Optimizer":
        import torch

        return getattr(torch.optim, conf.name)(params, **conf.conf)

    def build_scheduler(self, conf: DictConfig, optimizer) -> Any:
        import torch

        return getattr(torch.optim.lr_scheduler, conf.name)(optimizer, **conf.conf)

    def check_config(self) -> None:
        """Checks needing imports (torch class names and kwargs), run before any stage."""
        from speechrecipe.engine.torch_config import check_torch_class

        for section, module in (("build_optimizer", "torch.optim"), ("build_scheduler", "torch.optim.lr_scheduler")):
            if section in self.conf:
                check_torch_class(section, self.conf[section], module)
        from speechrecipe.errors import ConfigError

        train = self.conf.get("train", {})
        if "num_workers" in train and self.num_workers < 0:
            raise ConfigError(f"train.num_workers (or --num-workers): {self.num_workers} must be 0 or more")
        if int(train.get("prefetch_batches", 0)) < 0:
            raise ConfigError(f"train.prefetch_batches: {train.prefetch_batches} must be 0 or more")
        if train.get("tensorboard"):
            from speechrecipe.engine.tensorboard import require_tensorboard

            require_tensorboard()
        from speechrecipe.engine.report import ReportSettings

        ReportSettings.from_conf(self.conf.get("report"))  # report.select and resamples, before any work

    # ----- runtime --------------------------------------------------------------------
    @property
    def device(self) -> str:
        """cpu or cuda (under torchrun, cuda:LOCAL_RANK: one GPU a process)."""
        from speechrecipe.engine import distributed

        device = self.context.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        world = distributed.world()
        return f"cuda:{world.local_rank}" if device == "cuda" and world.distributed else device

    @property
    def num_workers(self) -> int:
        return int(self.conf.train.num_workers if self.context.num_workers is None else self.context.num_workers)

    def stage_entry(self, number: int) -> Stage:
        (entry,) = [s for s in self.stages() if s.number == number]
        return entry

    def train_run_id(self) -> str:
        """Identifies what training produces: its config minus keys safe to change on resume."""
        entry = self.stage_entry(self.training_stage)
        return digest(select(self.conf, entry.uses, exclude=entry.ignore + entry.resume_safe))

    # ----- shared stage bodies ------------------------------------------------------------
    def prepare_cached(self, prepare: Callable[[Path], dict]) -> list[Path]:
        """Run prepare(out_dir) into a fresh cache folder, unless already there.

        prepare writes into the cache folder itself, so the paths it logs (bad_audio.tsv) are where the
        files stay; summary.json, written last and atomically, marks the folder complete.
        """
        from speechrecipe.data import corpus_state
        from speechrecipe.engine.checkpoint import write_text_atomic

        cache = self.paths.cache
        if self._cache_reusable():
            log.info("prepared data found in cache %s; reusing it", cache)
        else:
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)
            summary = prepare(cache)
            corpus_state.record(cache, self.protocol_files(), self.dataset_root)
            write_text_atomic(cache / "summary.json", json.dumps(summary, indent=1, default=str))
            log.info("prepared data in %s: %s", cache, json.dumps(summary, default=str))
        return sorted(p for p in cache.iterdir() if p.suffix in (".jsonl", ".tsv"))

    def _cache_reusable(self) -> bool:
        """A complete cache folder made from the corpus as it is now."""
        from speechrecipe.data import corpus_state

        cache = self.paths.cache
        if not (cache / "summary.json").is_file():
            return False
        state = corpus_state.recorded(cache)
        if state is None:  # prepared before corpus.json existed: watch the corpus from now on
            corpus_state.record(cache, self.protocol_files(), self.dataset_root)
            return True
        why = corpus_state.changes(state)
        if why:
            log.info("the corpus changed since it was prepared (%s); preparing it again", "; ".join(why))
        return not why

    @property
    def dataset_root(self) -> Path:
        return Path(str(self.conf.prepare_data.dataset_root)).expanduser().resolve()

    def protocol_files(self) -> list[Path]:
        """The corpus's small text files stage 0 reads (split and trial lists, CSVs, transcripts):
        an edit to one prepares the corpus again. Added or removed audio files are noticed anyway."""
        return []

    def corpus_digest(self, file_digest: Callable[[Path], str] | None = None) -> str | None:
        """The prepared corpus's files and folders as they are now (None: not prepared yet);
        `file_digest` hashes a protocol file (the runner's, which hashes each version once)."""
        from speechrecipe.data import corpus_state

        if not (self.paths.cache / "summary.json").is_file():
            return None
        return corpus_state.digest_now(corpus_state.recorded(self.paths.cache), file_digest)

    def train(self, conf: DictConfig, task, dataset, sampler, validate) -> Any:
        """The engine's training loop over this problem's task and data."""
        from speechrecipe.engine.allocator import keep_freed_memory
        from speechrecipe.engine.plots import plot_training
        from speechrecipe.engine.trainer import Trainer

        keep_freed_memory()
        params = [p for p in task.parameters() if p.requires_grad]
        optimizer = self.build_optimizer(self.conf.build_optimizer, params)
        scheduler = self.build_scheduler(self.conf.build_scheduler, optimizer) if conf.use_scheduler else None
        trainer = Trainer(task, optimizer, scheduler, dataset, sampler, conf, self.paths, self.device,
                          self.num_workers, validate, self.train_run_id())
        state = trainer.run()
        plot_training(self.paths.train_log, self.paths.target_dir / "training_curve.png", str(conf.valid_metric))
        return state

    def eval_loader(self, dataset, batch_secs: float):
        """Length-sorted evaluation batches of a ManifestDataset under a padded-audio budget."""
        from speechrecipe.data.dataset import make_loader
        from speechrecipe.data.sampler import EpochBatchSampler

        budget = int(batch_secs * dataset.preprocessor.sample_rate)
        sampler = EpochBatchSampler(dataset.lengths(), seed=0, max_batch_length=budget, shuffle=False)
        return make_loader(dataset, sampler, self.num_workers)

    def evaluate(self, conf: DictConfig, test_sets: list[str], evaluate_one) -> list[Path]:
        """Every chosen checkpoint × test set; finished pairs are kept across interruptions."""
        from speechrecipe.data.manifest import file_digest
        from speechrecipe.engine.allocator import keep_freed_memory
        from speechrecipe.engine.evaluate import choose_checkpoints, evaluate_all

        keep_freed_memory()
        directory = Path(conf.test_ckpt_dir) if conf.test_ckpt_dir else self.paths.checkpoints
        checkpoints = choose_checkpoints(directory, list(conf.test_ckpt_steps))
        key = {"evaluate": digest(select(self.conf, ["evaluate"], exclude=("evaluate.test_ckpt_steps",)))}
        inputs = {t: digest([file_digest(p) for p in self.test_set_files(t)]) for t in test_sets}
        written = evaluate_all(checkpoints, test_sets, self.paths.evaluation, key, evaluate_one, inputs)
        (self.paths.evaluation / "latest.json").write_text(json.dumps([str(p) for p in written], indent=1))
        return written

    def test_set_files(self, test_set: str) -> list[Path]:
        """The prepared files that define a test set (its manifest); a change re-evaluates it."""
        return [self.paths.manifest(test_set)]

    def evaluated(self) -> list[Path]:
        """The result files of the last stage 3."""
        listing = self.paths.evaluation / "latest.json"
        if not listing.is_file():
            from speechrecipe.errors import ConfigError

            raise ConfigError(f"no evaluation results in {self.paths.evaluation}; run with --start 3")
        return [Path(p) for p in json.loads(listing.read_text())]
