"""Label encoders: class names ↔ indices, saved as JSON in target_dir. Imports no torch."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from speechrecipe.errors import DataError
from speechrecipe.fileio import atomic_write_text


class LabelEncoder:
    """A fixed, sorted list of class names."""

    def __init__(self, labels: Iterable[str]):
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def fit(cls, values: Iterable[str]) -> "LabelEncoder":
        return cls(sorted(set(values)))

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, label: str) -> int:
        try:
            return self.index[label]
        except KeyError:
            raise DataError(f"label {label!r} is not in the encoder built by stage 1; re-run from --start 1") from None

    def decode(self, index: int) -> str:
        return self.labels[index]

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({"labels": self.labels}, indent=0))

    @classmethod
    def load(cls, path: Path) -> "LabelEncoder":
        if not Path(path).is_file():
            raise DataError(f"{path} is missing; run stage 1 (--start 1)")
        return cls(json.loads(Path(path).read_text())["labels"])
