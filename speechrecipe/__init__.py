"""speechrecipe: staged speech-experiment recipes. `speechrecipe.load(target_dir_or_bundle)` gives the trained model."""
from __future__ import annotations

from speechrecipe.inference import load

__all__ = ["load"]
