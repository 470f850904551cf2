"""Using what a run trained: `load` (Python), `infer` and `export` (the command line). Imports torch lazily."""
from __future__ import annotations


def load(*args, **kwargs):
    """speechrecipe.inference.loading.load: see there."""
    from speechrecipe.inference.loading import load as _load

    return _load(*args, **kwargs)
