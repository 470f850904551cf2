"""Checks of a loaded config that `run`, `--dry-run`, `config` and `stages` make alike. Imports no torch
unless a check needs it.

Keys and types are checked by config.py while the layers merge; here come the value ranges and the
lists that must not be empty (speechrecipe/ranges.py), and the command-line device. Problem.check_config
adds each problem's own checks.
"""
from __future__ import annotations

from omegaconf import DictConfig

from speechrecipe.config import flatten
from speechrecipe.errors import ConfigError
from speechrecipe.ranges import check_nonempty, check_ranges, nonempty_for, ranges_for


def check_values(problem_class: type, conf: DictConfig) -> None:
    """Every numeric key within its declared range (one line naming key, value and range), and no empty list
    where one value is needed (one line naming the key)."""
    flat = flatten(conf)
    check_nonempty(flat, nonempty_for(problem_class))
    check_ranges(flat, ranges_for(problem_class))


def check_device(device: str) -> None:
    """--device: auto, cpu, or cuda where a CUDA device is visible."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device}: choose auto, cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is visible here (torch.cuda.is_available() is false); "
                              "use --device cpu, or --device auto to take a GPU only where there is one")
