"""Validate `name` + `conf` sections that name a torch class, before any heavy work."""
from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path

from omegaconf import DictConfig

from speechrecipe.config import closest, load_schema
from speechrecipe.errors import ConfigError


@functools.lru_cache(maxsize=8)
def _schema(path: Path) -> DictConfig:
    return load_schema(path)


def is_shipped(section: str, conf: DictConfig, schema_path: Path) -> bool:
    """Whether `section` names the class of the problem's default YAML with only argument names that file
    gives (tests/test_config.py checks those against torch): then there is no need to import torch to check it."""
    shipped = _schema(Path(schema_path)).get(section)
    return (shipped is not None and conf.get("name") == shipped.get("name")
            and set(conf.get("conf") or {}) <= set(shipped.get("conf") or {}))


def check_torch_class(section: str, conf: DictConfig, module_name: str) -> None:
    """`section.name` must be a class in `module_name`, and `section.conf` its keyword arguments."""
    module = importlib.import_module(module_name)
    klass = getattr(module, str(conf.name), None)
    if not inspect.isclass(klass):
        names = [n for n in dir(module) if inspect.isclass(getattr(module, n)) and not n.startswith("_")]
        close = closest(str(conf.name), names)
        hint = f"; did you mean {close}?" if close else f"; choose one of {module_name}'s classes"
        raise ConfigError(f"{section}.name: {conf.name!r} is not a class in {module_name}{hint}")
    params = inspect.signature(klass.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n in params if n not in ("self", "params", "optimizer")]
    for key in conf.get("conf", {}) or {}:
        if key not in allowed:
            close = closest(key, allowed)
            hint = f"; did you mean {section}.conf.{close}?" if close else f"; {conf.name} takes {', '.join(allowed)}"
            raise ConfigError(f"{section}.conf.{key}: {conf.name} has no argument {key!r}{hint}")
