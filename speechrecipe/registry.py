"""Problem names → classes. Problem modules import no torch at module level."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from speechrecipe.errors import ConfigError

PROBLEMS = {
    "asv": "speechrecipe.problems.asv:ASV",
    "asr": "speechrecipe.problems.asr:ASR",
    "ks": "speechrecipe.problems.ks:KeywordSpotting",
    "sid": "speechrecipe.problems.sid:SpeakerIdentification",
    "intent": "speechrecipe.problems.intent:IntentClassification",
    "diarization": "speechrecipe.problems.diarization:Diarization",
    "dump-feature": "speechrecipe.problems.dump_feature:DumpFeature",
}
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def resolve_problem(spec: str):
    """A built-in name, `package.module:Class` or `path/to/file.py:Class` (a Problem subclass)."""
    target = PROBLEMS.get(spec, spec)
    if ":" not in target:
        from speechrecipe.config import closest

        close = closest(spec, PROBLEMS)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError(f"unknown problem '{spec}' (see `speechrecipe list`, or give module:Class){hint}")
    module_name, _, class_name = target.rpartition(":")
    if module_name.endswith(".py"):
        return _checked(spec, _import_file(spec, Path(module_name)), class_name)
    if not (_DOTTED.fullmatch(module_name) and class_name.isidentifier()):
        raise ConfigError(f"problem '{spec}': expected a built-in name, package.module:Class or path/to/file.py:Class "
                          "(see `speechrecipe list`)")
    if spec not in PROBLEMS and str(Path.cwd()) not in sys.path:
        # a user's own module may lie in the working folder; appended, so it never shadows an installed package
        sys.path.append(str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"problem '{spec}': cannot import {module_name} ({err})") from None
    return _checked(spec, module, class_name)


def _import_file(spec: str, path: Path):
    """Import a problem's .py file by its path, as a module named after the file."""
    import importlib.util

    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"problem '{spec}': {path} does not exist")
    name = f"speechrecipe_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except ImportError as err:
        raise ConfigError(f"problem '{spec}': {path} cannot be imported ({err})") from None
    return module


def _checked(spec: str, module, class_name: str):
    from speechrecipe.engine.problem import Problem

    klass = getattr(module, class_name, None)
    if not (isinstance(klass, type) and issubclass(klass, Problem)):
        raise ConfigError(f"problem '{spec}': {class_name} in {module.__name__} is not a speechrecipe Problem subclass")
    if not klass.conf_name:
        raise ConfigError(f"problem '{spec}': {class_name} sets no conf_name (its name in cache_dir and exp/)")
    return klass


def problem_spec(klass: type) -> str:
    """The name `resolve_problem` takes back for `klass`: its built-in name, its file's path:Class for a problem
    imported from a file, else module:Class (what target_dir/experiment.json records)."""
    target = f"{klass.__module__}:{klass.__qualname__}"
    for name, builtin in PROBLEMS.items():
        if builtin == target:
            return name
    if klass.__module__.startswith("speechrecipe_user_"):
        import inspect

        return f"{inspect.getfile(klass)}:{klass.__qualname__}"
    return target
