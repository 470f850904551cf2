"""The checks `run`, `--dry-run`, `config` and `stages` make of a problem's config beyond its schema (unknown keys,
types: config.py) and ranges (ranges.py): torch class names and kwargs, `choices`, `pretrained:`, the upstream,
the report settings and the sections with code of their own. Imports no torch at module level."""
from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from speechrecipe.nn.catalog import PRECOMPUTED

if TYPE_CHECKING:
    from speechrecipe.engine.problem import Problem


def check_problem_config(problem: "Problem") -> None:
    """Refuse, in one line naming the key, what the schema and the range table cannot see."""
    from speechrecipe.engine import pretrained
    from speechrecipe.engine.report import ReportSettings
    from speechrecipe.engine.torch_config import check_torch_class, is_shipped
    from speechrecipe.errors import ConfigError
    from speechrecipe.nn.catalog import check_upstream

    for section, module in (("build_optimizer", "torch.optim"), ("build_scheduler", "torch.optim.lr_scheduler")):
        if section in problem.conf and not is_shipped(section, problem.conf[section], problem.config_path()):
            check_torch_class(section, problem.conf[section], module)
    pretrained.check(problem.conf.get("pretrained"))
    check_upstream(problem.conf)
    train = problem.conf.get("train", {})
    if "num_workers" in train and problem.num_workers < 0:  # --num-workers: the range table sees only the config
        raise ConfigError(f"train.num_workers (or --num-workers): {problem.num_workers} must be 0 or more")
    if train.get("tensorboard"):
        from speechrecipe.engine.tensorboard import require_tensorboard

        require_tensorboard()
    ReportSettings.from_conf(problem.conf.get("report"))  # report.select and resamples, before any work
    for key, allowed in problem.all_choices().items():
        value = OmegaConf.select(problem.conf, key)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
    if "build_dataset" in problem.conf and OmegaConf.select(problem.conf, "build_upstream.name") == PRECOMPUTED:
        from speechrecipe.data.frames import check_precomputed  # imports torch: only when it is used

        check_precomputed(problem.conf)

