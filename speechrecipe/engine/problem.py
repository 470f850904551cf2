"""The Problem contract: a stage table plus the hooks and builders the engine calls.

Every hook has one signature, documented here; a problem overrides the ones it needs and declares
its stages with @stage. The runner (engine/runner.py) decides which stages run and finds the stages
it treats specially by their role, never by number. Imports no torch at module level.
See docs/architecture.md, "Write a new problem".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from speechrecipe.engine.context import RunContext
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.engine.stages import ROLES, TRAIN_IGNORED, TRAIN_RESUME_SAFE, Stage, stage  # noqa: F401 - for problems
from speechrecipe.engine.evaluation import EvaluationStages
from speechrecipe.engine.preparation import CorpusPreparation
from speechrecipe.engine.training import TrainingStages

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Hook:
    """One hook of the contract: a method of Problem below, with one signature for every problem."""

    name: str
    called_by: str
    returns: str


# The contract, in one place: docs/architecture.md's hook table (scripts/readme_tables.py) and
# tests/test_contract.py are made from this list.
HOOKS = (
    Hook("prepare_corpus", "`prepare_corpus_cached()` (stage role `prepare`)", "a summary dict → `summary.json`"),
    Hook("protocol_files", "the runner (an edited list prepares the corpus again)", "the corpus's list files"),
    Hook("check_prepared", "`prepare_corpus_cached()`, after preparing or reusing the cache",
         "nothing; a DataError naming the file where a valid/test split cannot define its metric"),
    Hook("test_sets", "`evaluate_checkpoints()`", "the test sets' names"),
    Hook("test_set_files", "`evaluate_pairs()`", "the prepared files that define a test set (a change re-evaluates it)"),
    Hook("build_encoder", "`fit_encoder()` (stage 1)", "the label encoder or tokenizer, fitted on the training rows"),
    Hook("save_encoder", "`fit_encoder()`", "the files written into target_dir"),
    Hook("load_encoder", "`train_model()`, `evaluate_checkpoints()`", "the encoder stage 1 saved"),
    Hook("build_dataset", "`train_model()`, `test_outputs()`", "a `ManifestDataset` of `train`, `valid` or `test_<name>`"),
    Hook("build_batch_sampler", "`train_model()`", "the training batches (an `EpochBatchSampler`: seeded, resumable)"),
    Hook("build_task", "`train_model()`, `evaluate_checkpoints()`", "a Task (`engine/task.py`)"),
    Hook("validate", "the trainer, every `train.eval_step`", "`{metric: value}`; `train.valid_metric` picks valid_best"),
    Hook("evaluate_test_set", "`evaluate_checkpoints()`, per checkpoint × test set", "`{metric: value}`, files in out_dir"),
    Hook("result_columns", "`report_best()` (stage role `report`)", "the results table's (key, header, format) columns"),
    Hook("report_extras", "`report_best()`", "files beside the table (plots, copies)"),
    Hook("unit_statistics", "`report_best()`", "the stage-3 result's evidence as units to resample (None: no intervals)"),
    Hook("build_upstream", "`build_task()`", "waveform → frame features (shared: `build_upstream.name`)"),
    Hook("build_featurizer", "`build_task()`", "the layers' weighted sum (shared)"),
    Hook("build_optimizer", "`train()`", "a `torch.optim` class by `build_optimizer.name` (shared)"),
    Hook("build_scheduler", "`train()`", "a `torch.optim.lr_scheduler` class (shared)"),
)


class Problem(CorpusPreparation, TrainingStages, EvaluationStages):
    """Base of every problem: the stage table, the hooks the engine calls (HOOKS, each with the signature of
    its method here) and the shared builders. The shared stage bodies come from the mixins: corpus preparation
    (engine/preparation.py), encoder and training (engine/training.py), evaluation and report
    (engine/evaluation.py); the standard stages that call them are engine/recipe.py's."""

    conf_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # The default YAML (its schema), relative to the file of the class that sets it; "" → the
    # package's conf/<conf_name>.yaml. A problem outside the package brings its own file this way.
    default_config: ClassVar[str] = ""
    # prepare_data keys that do not change the prepared manifests (so not in the cache key).
    cache_ignored: ClassVar[tuple[str, ...]] = ("prepare_data.num_workers",)
    # what this problem's own keys add to ranges.py's tables: ranges of numeric keys ({"train.foo": "[1, inf)"}),
    # list keys where an empty list means nothing ({"build_downstream.widths": "give one width"})
    value_ranges: ClassVar[dict[str, str]] = {}
    nonempty_lists: ClassVar[dict[str, str]] = {}
    cache_lease = None  # the runner's hold on the cache folder (engine/cache.py) while a run is on
    # {dotted key: allowed values}, checked before any stage; merged along the class hierarchy.
    choices: ClassVar[dict[str, tuple]] = {}
    # The report stage's headline metric (a key of evaluate_test_set's result) and its direction.
    metric: ClassVar[str] = ""
    higher_better: ClassVar[bool] = False
    results_title: ClassVar[str] = "Results"
    # what `speechrecipe.load` returns for a trained model ("module:Class", speechrecipe/inference/models.py); "": none
    inference: ClassVar[str] = ""
    stage_texts: ClassVar[dict[int, str]] = {}  # {stage number: what it does in this problem}, merged along the hierarchy
    # config keys that only name or define test sets (training does not depend on them)
    test_set_keys: ClassVar[tuple[str, ...]] = ()
    # The sections this problem adds to the engine's (conf/trainer.yaml) and the keys it adds inside the
    # engine's sections; its default YAML may hold nothing else (merged along the class hierarchy).
    config_sections: ClassVar[tuple[str, ...]] = ("prepare_data",)
    engine_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: DictConfig, paths: ExperimentPaths, context: RunContext | None = None):
        self.conf, self.paths, self.context = config, paths, context or RunContext()

    @classmethod
    def stages(cls) -> list[Stage]:
        """The stage table, read from the @stage marks along the class hierarchy, each stage described in
        this problem's words where `stage_texts` has some."""
        found: dict[int, Stage] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                mark = getattr(value, "_stage", None)
                if isinstance(mark, Stage):
                    found[mark.number] = mark
        return [cls.complete_stage(found[n]) for n in sorted(found)]

    @classmethod
    def complete_stage(cls, mark: Stage) -> Stage:
        """A declared stage as this problem runs it: described in its words where `stage_texts` has some."""
        return replace(mark, description=cls.merged("stage_texts").get(mark.number, mark.description))

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
        """Checks beyond the schema and the ranges (engine/config_checks.py), run by run, --dry-run, config and
        stages before any work; a problem adds its own by overriding this and calling super()."""
        from speechrecipe.engine.config_checks import check_problem_config

        check_problem_config(self)

    @classmethod
    def all_choices(cls) -> dict[str, tuple]:
        """`choices` of the whole class hierarchy, nearest class last (it wins)."""
        return cls.merged("choices")

    @classmethod
    def merged(cls, attribute: str) -> dict:
        """A mapping class attribute merged along the class hierarchy, nearest class last (it wins)."""
        merged: dict = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get(attribute, {}))
        return merged

    @classmethod
    def declared_config(cls) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(config_sections, engine_keys) of the whole class hierarchy."""
        sections = tuple(dict.fromkeys(s for k in reversed(cls.__mro__) for s in vars(k).get("config_sections", ())))
        keys = tuple(dict.fromkeys(s for k in reversed(cls.__mro__) for s in vars(k).get("engine_keys", ())))
        return sections, keys

    def redoing(self, role: str) -> bool:
        """--redo names the stage with `role`: it runs from scratch."""
        entry = self.stage_with_role(role)
        return entry is not None and self.context.redo == entry.number

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

    # ----- shared stage bodies ------------------------------------------------------------
    def protocol_files(self) -> list[Path]:
        """The corpus's small text files stage 0 reads (split and trial lists, CSVs, transcripts):
        an edit to one prepares the corpus again. Added or removed audio files are noticed anyway."""
        return []

    def test_set_files(self, test_set: str) -> list[Path]:
        """The prepared files that define a test set (its manifest); a change re-evaluates it."""
        return [self.paths.test_manifest(test_set)]

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

    # ----- shared stage bodies: most stages are one call -------------------------------------
    def unit_statistics(self, record: dict) -> Any:
        """The evidence of one stage-3 result (record: checkpoint, test_set, metrics) as independent units to
        resample: a metrics.bootstrap.UnitStatistics read from what evaluate_test_set wrote; None: no intervals."""
        return None

    def result_columns(self) -> list[tuple[str, str, str]]:
        """(metric key, header, format: pct | float | int) for the results table."""
        return [(self.metric, self.metric, "float")]

    def report_extras(self, best: dict[str, dict]) -> None:
        """Files the report adds beside the table (plots, copies), given the best record per test set."""
