"""Problem: a stage table plus default builders. Imports no torch at module level.

A problem subclass declares its stages with @stage and supplies the builders that
differ; the runner (engine/runner.py) decides which stages run. Builders take the
config section of the same name and return one thing; they do no file I/O.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from omegaconf import DictConfig

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


def stage(
    number: int,
    name: str,
    description: str,
    uses: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    resume_safe: tuple[str, ...] = (),
) -> Callable:
    """Declare a method as stage `number`; `uses` are the config sections it depends on."""

    def mark(method: Callable) -> Callable:
        method._stage = Stage(number, name, description, tuple(uses), tuple(ignore), tuple(resume_safe), method.__name__)
        return method

    return mark


@dataclass
class RunContext:
    """Runtime settings from the command line, not part of the experiment's config."""

    device: str = "cpu"
    num_workers: int = 0
    force: bool = False


class Problem:
    """Base of every problem: the stage table and the builders every problem shares."""

    conf_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # The stage whose checkpoints a config change would throw away (guarded by --force).
    train_stage: ClassVar[int] = 2
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
