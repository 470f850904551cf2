"""Validate `name` + `conf` sections that name a torch class, before any heavy work."""
from __future__ import annotations

import importlib
import inspect

from omegaconf import DictConfig

from speechrecipe.config import closest
from speechrecipe.errors import ConfigError


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
