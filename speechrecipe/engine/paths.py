"""Named paths inside target_dir and cache_dir, so no stage assembles path strings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechrecipe.data.manifest import test_manifest_name


@dataclass(frozen=True)
class ExperimentPaths:
    """target_dir layout (see README) plus this problem's cache folder."""

    target_dir: Path
    cache_root: Path
    cache_key: str = ""

    @property
    def config(self) -> Path:
        return self.target_dir / "config.yaml"

    @property
    def experiment(self) -> Path:
        """Which problem made this folder, and the command: what `speechrecipe.load` and `export` read."""
        return self.target_dir / "experiment.json"

    @property
    def log(self) -> Path:
        return self.target_dir / "log.txt"

    @property
    def lock(self) -> Path:
        return self.target_dir / ".lock"

    @property
    def records(self) -> Path:
        return self.target_dir / "records"

    def record(self, number: int) -> Path:
        return self.records / f"stage-{number}.json"

    @property
    def checkpoints(self) -> Path:
        return self.target_dir / "checkpoints"

    @property
    def train_log(self) -> Path:
        return self.target_dir / "train_log.jsonl"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (train.tensorboard), rebuilt from train_log.jsonl on resume."""
        return self.target_dir / "tensorboard"

    @property
    def results(self) -> Path:
        return self.target_dir / "results"

    @property
    def evaluation(self) -> Path:
        """Per-checkpoint, per-test-set results of stage 3."""
        return self.target_dir / "evaluation"

    def artifact(self, name: str) -> Path:
        """A file a stage writes into target_dir for later stages (encoder, tokenizer)."""
        return self.target_dir / name

    @property
    def cache(self) -> Path:
        """Prepared manifests, keyed by the data-preparation config."""
        return self.cache_root / self.cache_key

    def manifest(self, name: str) -> Path:
        return self.cache / f"{name}.jsonl"

    def test_manifest(self, test_set: str) -> Path:
        """The manifest of test set `test_set` (every problem names them so)."""
        return self.manifest(test_manifest_name(test_set))

    def inputs(self, pattern: str) -> list[Path]:
        """Files a stage reads: matches of `pattern` in the cache, else in target_dir."""
        return sorted(self.cache.glob(pattern)) or sorted(self.target_dir.glob(pattern))
