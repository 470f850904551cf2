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
}
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def resolve_problem(spec: str):
    """A built-in name or `package.module:Class` (a Problem subclass)."""
    from speechrecipe.engine.problem import Problem

    target = PROBLEMS.get(spec, spec)
    if ":" not in target:
        from speechrecipe.config import closest

        close = closest(spec, PROBLEMS)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError(f"unknown problem '{spec}' (see `speechrecipe list`, or give module:Class){hint}")
    module_name, _, class_name = target.partition(":")
    if not (_DOTTED.fullmatch(module_name) and class_name.isidentifier()):
        raise ConfigError(f"problem '{spec}': expected a built-in name or package.module:Class (see `speechrecipe list`)")
    if spec not in PROBLEMS and str(Path.cwd()) not in sys.path:
        # a user's own module may lie in the working folder; appended, so it never shadows an installed package
        sys.path.append(str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"problem '{spec}': cannot import {module_name} ({err})") from None
    klass = getattr(module, class_name, None)
    if not (isinstance(klass, type) and issubclass(klass, Problem)):
        raise ConfigError(f"problem '{spec}': {class_name} in {module_name} is not a speechrecipe Problem subclass")
    return klass
