"""The Problem contract: a stage table plus the hooks and builders the engine calls.

Every hook has one signature, documented here; a problem overrides the ones it needs and declares
its stages with @stage. The runner (engine/runner.py) decides which stages run and finds the stages
it treats specially by their role, never by number. Imports no torch at module level.
See docs/architecture.md, "Write a new problem".
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from omegaconf import DictConfig, OmegaConf

from speechrecipe.config import select
from speechrecipe.fileio import atomic_write_json, digest
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.nn.catalog import PRECOMPUTED

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
    role: str = ""  # one of ROLES: what the engine treats specially (see ROLES)
    # files it reads (names or glob patterns in the cache, else target_dir); when given, its record
    # depends on their contents instead of on every earlier stage's record
    reads: tuple[str, ...] = ()
    # under torchrun, every rank runs it (rank 0 alone runs the others; the training stage always runs on all)
    all_ranks: bool = False


# Stage roles the engine knows. "prepare": parses the corpus into the cache (its inputs include the
# corpus files themselves); "train": makes checkpoints (guarded against config changes, run by every
# torchrun rank); "evaluate": writes evaluation/ (results the report reads); "report": results/.
ROLES = ("prepare", "train", "evaluate", "report", "")


def stage(
    number: int,
    name: str,
    description: str,
    role: str = "",
    uses: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    resume_safe: tuple[str, ...] = (),
    reads: tuple[str, ...] = (),
    all_ranks: bool = False,
) -> Callable:
    """Declare a method as stage `number` with a `role` (ROLES); `uses` are the config sections it depends
    on, `reads` the files of earlier stages it reads (without `reads`, it depends on every earlier stage's
    record)."""
    if role not in ROLES:
        raise ValueError(f"@stage({number}, {name!r}): role {role!r} is not one of {ROLES}")

    if role == "report" and "report" not in uses:  # report.select / resamples / seed re-run the report alone
        uses = (*uses, "report")

    def mark(method: Callable) -> Callable:
        method._stage = Stage(number, name, description, tuple(uses), tuple(ignore), tuple(resume_safe),
                              method.__name__, role, tuple(reads), all_ranks)
        return method

    return mark


def check_task(task: Any, problem: str) -> None:
    """A Task is a torch.nn.Module with forward(batch) and test_step(batch) (engine/task.py)."""
    import torch

    from speechrecipe.engine.task import Task

    if not (isinstance(task, torch.nn.Module) and isinstance(task, Task)):
        from speechrecipe.errors import ConfigError

        raise ConfigError(f"{problem}.build_task returned a {type(task).__name__}: a Task is a torch.nn.Module "
                          "with forward(batch) -> {'loss': ...} and test_step(batch) (speechrecipe/engine/task.py)")


@dataclass
class RunContext:
    """Runtime settings from the command line, not part of the experiment's config."""

    device: str = "auto"
    num_workers: int | None = None  # None: the config's train.num_workers
    force: bool = False


class Problem:
    """Base of every problem: the stage table, the hooks the engine calls and the shared builders.

    Hooks a problem supplies (each with one signature, whichever stages use it):
      prepare_corpus(out_dir) -> summary      stage "prepare": the corpus → manifests in out_dir
      protocol_files() -> [Path]              the corpus's list files; an edit prepares it again
      check_prepared(out_dir)                 stage "prepare": refuse a split that cannot define its metric
      test_sets() -> [name]                   test sets; manifest `paths.test_manifest(name)`
      test_set_files(name) -> [Path]          the prepared files defining a test set
      build_encoder(conf, rows) -> encoder    labels/tokens from the training rows
      save_encoder(encoder) -> [Path], load_encoder() -> encoder
      build_dataset(conf, split, encoder)     a ManifestDataset of a split ("train", "valid", "test_<name>")
      build_batch_sampler(conf, dataset)      training batches
      build_task(conf, encoder) -> Task       the model and its loss (engine/task.py)
      validate(task, encoder) -> {metric}     during training; train.valid_metric names the one kept
      evaluate_test_set(task, encoder, name, out_dir) -> {metric}    stage "evaluate", per checkpoint
      result_columns() -> [(key, header, format)], report_extras(best)  stage "report"
      unit_statistics(record) -> UnitStatistics | None    stage "report": what its intervals resample
    The shared stage bodies (prepare_corpus_cached, fit_encoder, train_model, evaluate_checkpoints,
    report_best) call these, so most stages are one line.
    """

    conf_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # The default YAML (its schema), relative to the file of the class that sets it; "" → the
    # package's conf/<conf_name>.yaml. A problem outside the package brings its own file this way.
    default_config: ClassVar[str] = ""
    # prepare_data keys that do not change the prepared manifests (so not in the cache key).
    cache_ignored: ClassVar[tuple[str, ...]] = ("prepare_data.num_workers",)
    # ranges of numeric keys this problem adds to speechrecipe/ranges.py's table ({"train.foo": "[1, inf)"})
    value_ranges: ClassVar[dict[str, str]] = {}
    cache_lease = None  # the runner's hold on the cache folder (engine/cache.py) while a run is on
    # {dotted key: allowed values}, checked before any stage; merged along the class hierarchy.
    choices: ClassVar[dict[str, tuple]] = {}
    # The report stage's headline metric (a key of evaluate_test_set's result) and its direction.
    metric: ClassVar[str] = ""
    higher_better: ClassVar[bool] = False
    results_title: ClassVar[str] = "Results"

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

    @classmethod
    def stage_with_role(cls, role: str) -> Stage | None:
        """The stage that has `role`, or None (a problem may have no training stage)."""
        found = [s for s in cls.stages() if s.role == role]
        return found[0] if found else None

    @classmethod
    def config_path(cls) -> Path:
        """The default YAML: `default_config` of the nearest class that sets it, else conf/<conf_name>.yaml."""
        import inspect

        from speechrecipe.config import default_config_path

        for klass in cls.__mro__:
            relative = vars(klass).get("default_config")
            if relative:
                path = Path(inspect.getfile(klass)).resolve().parent / relative
                if not path.is_file():
                    from speechrecipe.errors import ConfigError

                    raise ConfigError(f"{klass.__name__}.default_config: {path} does not exist")
                return path
        return default_config_path(cls.conf_name)

    def run_stage(self, number: int) -> list[Any] | None:
        """Run one stage; it may return files whose digests its record keeps."""
        (entry,) = [s for s in self.stages() if s.number == number]
        return getattr(self, entry.method)()

    # ----- builders every problem shares -------------------------------------------
    def build_upstream(self, conf: DictConfig) -> "torch.nn.Module":
        from speechrecipe.nn.catalog import upstream_options
        from speechrecipe.nn.upstream import build_upstream

        return build_upstream(conf.name, **upstream_options(conf))

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
        """Checks beyond the schema (torch class names and kwargs, choices, sections with code of their own),
        run by run, --dry-run, config and stages before any work."""
        from speechrecipe.engine import pretrained
        from speechrecipe.engine.report import ReportSettings
        from speechrecipe.engine.torch_config import check_torch_class, is_shipped
        from speechrecipe.errors import ConfigError
        from speechrecipe.nn.catalog import check_upstream

        for section, module in (("build_optimizer", "torch.optim"), ("build_scheduler", "torch.optim.lr_scheduler")):
            if section in self.conf and not is_shipped(section, self.conf[section], self.config_path()):
                check_torch_class(section, self.conf[section], module)
        pretrained.check(self.conf.get("pretrained"))
        check_upstream(self.conf)
        train = self.conf.get("train", {})
        if "num_workers" in train and self.num_workers < 0:
            raise ConfigError(f"train.num_workers (or --num-workers): {self.num_workers} must be 0 or more")
        if int(train.get("prefetch_batches", 0)) < 0:
            raise ConfigError(f"train.prefetch_batches: {train.prefetch_batches} must be 0 or more")
        if train.get("tensorboard"):
            from speechrecipe.engine.tensorboard import require_tensorboard

            require_tensorboard()
        ReportSettings.from_conf(self.conf.get("report"))  # report.select and resamples, before any work
        for key, allowed in self.all_choices().items():
            value = OmegaConf.select(self.conf, key)
            if value not in allowed:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        if "build_dataset" in self.conf and OmegaConf.select(self.conf, "build_upstream.name") == PRECOMPUTED:
            from speechrecipe.data.frames import check_precomputed  # imports torch: only when it is used

            check_precomputed(self.conf)

    @classmethod
    def all_choices(cls) -> dict[str, tuple]:
        """`choices` of the whole class hierarchy, nearest class last (it wins)."""
        merged: dict[str, tuple] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("choices", {}))
        return merged

    def section(self, name: str) -> DictConfig:
        """The config section `name`, or an empty one where the problem has none."""
        return self.conf[name] if name in self.conf else OmegaConf.create({})

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
        entry = self.stage_with_role("train")
        return digest(select(self.conf, entry.uses, exclude=entry.ignore + entry.resume_safe))

    # ----- shared stage bodies ------------------------------------------------------------
    def prepare_cached(self, prepare: Callable[[Path], dict]) -> list[Path]:
        """Run prepare(out_dir) into a fresh cache folder, unless already there.

        prepare writes into the cache folder itself, so the paths it logs (bad_audio.tsv) are where the
        files stay; summary.json, written last and atomically, marks the folder complete.
        """
        from speechrecipe.data import corpus_state
        from speechrecipe.engine.cache import exclusive_use, mark_complete
        from speechrecipe.engine.checkpoint import write_text_atomic

        cache = self.paths.cache
        if self._cache_reusable():
            log.info("prepared data found in cache %s; reusing it", cache)
        else:
            with exclusive_use(self.cache_lease, "it is incomplete, or the corpus or config changed"):
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir(parents=True)
                summary = prepare(cache)
                corpus_state.record(cache, self.protocol_files(), self.dataset_root)
                mark_complete(cache)
                write_text_atomic(cache / "summary.json", json.dumps(summary, indent=1, default=str))
            log.info("prepared data in %s: %s", cache, json.dumps(summary, default=str))
        return sorted(p for p in cache.iterdir() if p.suffix in (".jsonl", ".tsv"))

    def _cache_reusable(self) -> bool:
        """A complete cache folder made from the corpus as it is now."""
        from speechrecipe.data import corpus_state

        from speechrecipe.engine.cache import incomplete

        cache = self.paths.cache
        if not (cache / "summary.json").is_file():
            return False
        missing = incomplete(cache)
        if missing:
            log.info("cache folder %s is incomplete (%s); preparing it again", cache, "; ".join(missing))
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
        check_task(task, type(self).__name__)
        self.apply_pretrained(task)
        params = [p for p in task.parameters() if p.requires_grad]
        optimizer = self.build_optimizer(self.conf.build_optimizer, params)
        scheduler = self.build_scheduler(self.conf.build_scheduler, optimizer) if conf.use_scheduler else None
        trainer = Trainer(task, optimizer, scheduler, dataset, sampler, conf, self.paths, self.device,
                          self.num_workers, validate, self.train_run_id())
        state = trainer.run()
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

    def eval_loader(self, dataset, batch_secs: float):
        """Length-sorted evaluation batches of a ManifestDataset under a padded-audio budget."""
        from speechrecipe.data.dataset import make_loader
        from speechrecipe.data.sampler import EpochBatchSampler

        budget = int(batch_secs * dataset.preprocessor.sample_rate)
        sampler = EpochBatchSampler(dataset.lengths(), seed=0, max_batch_length=budget, shuffle=False)
        return make_loader(dataset, sampler, self.num_workers)

    def evaluate(self, conf: DictConfig, test_sets: list[str], evaluate_one) -> list[Path]:
        """Every chosen checkpoint × test set; finished pairs are kept across interruptions."""
        from speechrecipe.fileio import file_digest
        from speechrecipe.engine.allocator import keep_freed_memory
        from speechrecipe.engine.evaluate import choose_checkpoints, evaluate_all

        keep_freed_memory()
        directory = Path(conf.test_ckpt_dir) if conf.test_ckpt_dir else self.paths.checkpoints
        checkpoints = choose_checkpoints(directory, list(conf.test_ckpt_steps))
        key = {"evaluate": digest(select(self.conf, ["evaluate"], exclude=("evaluate.test_ckpt_steps",)))}
        inputs = {t: digest([file_digest(p) for p in self.test_set_files(t)]) for t in test_sets}
        written = evaluate_all(checkpoints, test_sets, self.paths.evaluation, key, evaluate_one, inputs)
        atomic_write_json(self.paths.evaluation / "latest.json", [str(p) for p in written])
        return written

    def test_set_files(self, test_set: str) -> list[Path]:
        """The prepared files that define a test set (its manifest); a change re-evaluates it."""
        return [self.paths.test_manifest(test_set)]

    def evaluated(self) -> list[Path]:
        """The result files of the last stage 3."""
        listing = self.paths.evaluation / "latest.json"
        if not listing.is_file():
            from speechrecipe.errors import ConfigError

            entry = self.stage_with_role("evaluate")
            raise ConfigError(f"no evaluation results in {self.paths.evaluation}; run with --start {entry.number if entry else 0}")
        return [Path(p) for p in json.loads(listing.read_text())]

    # ----- hooks with no shared default --------------------------------------------------
    def prepare_corpus(self, out_dir: Path) -> dict:
        """Parse the corpus into manifests in out_dir; return a summary (counts) for summary.json."""
        raise NotImplementedError(f"{type(self).__name__} has a prepare stage but no prepare_corpus")

    def test_sets(self) -> list[str]:
        """Names of the test sets; each has the manifest paths.test_manifest(name)."""
        return []

    def build_encoder(self, conf: DictConfig, rows: list[dict]) -> Any:
        """Labels or tokens → indices, fitted on the training rows."""
        raise NotImplementedError(f"{type(self).__name__}.build_encoder")

    def save_encoder(self, encoder: Any) -> list[Path]:
        """Write the encoder into target_dir for later stages; return the files written."""
        raise NotImplementedError(f"{type(self).__name__}.save_encoder")

    def load_encoder(self) -> Any:
        """The encoder the encoder stage saved (None for a problem without one)."""
        return None

    def build_dataset(self, conf: DictConfig, split: str, encoder: Any) -> Any:
        """A dataset of a prepared split: "train", "valid" or a test manifest's name."""
        raise NotImplementedError(f"{type(self).__name__}.build_dataset")

    def build_batch_sampler(self, conf: DictConfig, dataset: Any) -> Any:
        """The training batches (an EpochBatchSampler: seeded, resumable)."""
        raise NotImplementedError(f"{type(self).__name__}.build_batch_sampler")

    def build_task(self, conf: DictConfig, encoder: Any) -> "torch.nn.Module":
        """The Task (engine/task.py): upstream → featurizer → downstream plus the loss."""
        raise NotImplementedError(f"{type(self).__name__}.build_task")

    def validate(self, task: Any, encoder: Any) -> dict[str, float]:
        """Metrics on the validation split during training; train.valid_metric picks the one kept."""
        raise NotImplementedError(f"{type(self).__name__}.validate")

    def evaluate_test_set(self, task: Any, encoder: Any, test_set: str, out_dir: Path) -> dict[str, float]:
        """Metrics of the loaded checkpoint on one test set; may write files into out_dir."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate_test_set")

    def corpus_options(self) -> dict[str, Any]:
        """The stage-0 options every corpus parser takes, from prepare_data and build_dataset."""
        c = self.conf.prepare_data
        return {"root": self.dataset_root, "strict": c.strict, "check_audio": c.check_audio,
                "num_workers": c.num_workers, "sample_rate": self.conf.build_dataset.sample_rate}

    # ----- shared stage bodies: most stages are one call -------------------------------------
    def prepare_corpus_cached(self) -> list[Path]:
        """Stage "prepare": prepare_corpus into the cache unless a complete, current copy is there; a split
        that cannot define its metric is refused (check_prepared), whether prepared now or earlier."""
        files = self.prepare_cached(self.prepare_corpus)
        self.check_prepared(self.paths.cache)
        return files

    def check_prepared(self, out_dir: Path) -> None:
        """Every prepared split a metric is computed on (valid, test sets) can define it, else a DataError naming
        the file: by default each such manifest holds at least one utterance (an accuracy or error rate of no
        utterances would be a made-up number). A problem adds what its metric needs (asv: both kinds of trial)."""
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.errors import DataError

        for manifest in [out_dir / "valid.jsonl", *sorted(out_dir.glob("test_*.jsonl"))]:
            if manifest.is_file() and not read_jsonl(manifest):
                listed = [str(p) for p in self.protocol_files()][:3]
                where = f"check {', '.join(listed)}" if listed else f"check the corpus in {self.dataset_root}"
                raise DataError(f"{manifest}: stage 0 found no usable utterance for this split; {self.metric or 'its metric'} "
                                f"is undefined on an empty split: {where} (and bad_audio.tsv beside the manifest)")

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

    def evaluate_checkpoints(self) -> list[Path]:
        """Stage "evaluate": evaluate_test_set for every chosen checkpoint × test set."""
        encoder = self.load_encoder()
        task = self.build_task(self.section("build_task"), encoder)

        def evaluate_one(state: dict, test_set: str, out_dir: Path) -> dict[str, float]:
            self.restore_model(task, state)
            return self.evaluate_test_set(task, encoder, test_set, out_dir)

        return self.evaluate(self.conf.evaluate, self.test_sets(), evaluate_one)

    def report_best(self) -> None:
        """Stage "report": per test set the checkpoint chosen without the test set (report.select), its metrics
        with 95 % bootstrap intervals (from unit_statistics) and the best on test beside it → results/, extras."""
        from speechrecipe.engine.report import Headline, report_results

        best, table = report_results(self.evaluated(), Headline(self.metric, self.higher_better), self.conf.get("report"),
                                     self.paths.results, self.result_columns(), self.results_title, self.unit_statistics)
        self.report_extras(best)
        log.info("results (%s):\n%s", self.paths.results / "README.md", table)

    def unit_statistics(self, record: dict) -> Any:
        """The evidence of one stage-3 result (record: checkpoint, test_set, metrics) as independent units to
        resample: a metrics.bootstrap.UnitStatistics read from what evaluate_test_set wrote; None: no intervals."""
        return None

    def result_columns(self) -> list[tuple[str, str, str]]:
        """(metric key, header, format: pct | float | int) for the results table."""
        return [(self.metric, self.metric, "float")]

    def report_extras(self, best: dict[str, dict]) -> None:
        """Files the report adds beside the table (plots, copies), given the best record per test set."""
