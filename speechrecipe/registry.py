"""Problem names → classes. Problem modules import no torch at module level."""
from __future__ import annotations

import importlib
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
}


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
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # so a user's own module in the working folder is found
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"problem '{spec}': cannot import {module_name} ({err})") from None
    klass = getattr(module, class_name, None)
    if not (isinstance(klass, type) and issubclass(klass, Problem)):
        raise ConfigError(f"problem '{spec}': {class_name} in {module_name} is not a speechrecipe Problem subclass")
    return klass
