"""Where a trained model comes from: a target_dir (its config, encoder files and a checkpoint) or a bundle
written by `speechrecipe export` (the same, self-contained, with a digest of every file).

Neither needs the corpus, the manifests or the cache, and neither reads evaluation/.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from speechrecipe.errors import ConfigError, DataError

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
WEIGHTS = "model.ckpt"  # a bundle's weights: every tensor of the task, a frozen SSL upstream's included
INFERENCE_DIR = "inference"  # target_dir/inference/: what stage 3 fixed for a set of weights (tuned threshold, cohort)


@dataclass
class Source:
    """A trained model's files: `root` is the target_dir or the bundle."""

    root: Path
    problem_spec: str
    conf: DictConfig
    checkpoint: str
    weights: Path
    bundle: bool
    meta: dict[str, Any]


def open_source(path: str | Path, checkpoint: str = "valid_best", problem: str | None = None) -> Source:
    """The target_dir or bundle at `path`, checked: a DataError/ConfigError naming the file and the fix."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist; give the target_dir of a finished run or a folder written by "
                        "`speechrecipe export`")
    if (root / BUNDLE_FILE).is_file():
        return _open_bundle(root, checkpoint)
    if not (root / "config.yaml").is_file():
        raise DataError(f"{root} is neither a target_dir (no config.yaml) nor a bundle (no {BUNDLE_FILE}); "
                        "give the --target-dir of a run or the --output of `speechrecipe export`")
    return _open_target_dir(root, checkpoint, problem)


def _open_target_dir(root: Path, checkpoint: str, problem: str | None) -> Source:
    from speechrecipe.engine import checkpoint as ckpt

    experiment = root / "experiment.json"
    meta = json.loads(experiment.read_text()) if experiment.is_file() else {}
    spec = problem or meta.get("problem")
    if spec is None:
        raise ConfigError(f"{experiment} is missing (a run from before speechrecipe recorded its problem); "
                          "name it: load(..., problem='asv') or infer --problem asv")
    klass = _problem_class(spec)
    train = klass.stage_with_role("train")
    if train is None:
        raise ConfigError(f"{root}: problem {spec} trains no model; nothing to load")
    if not (root / "records" / f"stage-{train.number}.json").is_file():
        raise DataError(f"{root}: training never finished (no records/stage-{train.number}.json); run the same "
                        "`speechrecipe run` command again to finish it")
    found = ckpt.resolve(root / "checkpoints", checkpoint)
    if found is None:
        names = ckpt.list_checkpoints(root / "checkpoints")
        raise ConfigError(f"--checkpoint {checkpoint}: no such checkpoint in {root / 'checkpoints'}; "
                          f"choose one of {', '.join(names + ['last']) if names else 'none (train first)'}")
    conf = OmegaConf.load(root / "config.yaml")
    return Source(root, spec, conf, found.stem if found.parent == root / "checkpoints" else str(found), found, False, meta)


def _open_bundle(root: Path, checkpoint: str) -> Source:
    from speechrecipe.fileio import file_digest

    meta = json.loads((root / BUNDLE_FILE).read_text())
    if meta.get("format") != BUNDLE_FORMAT:
        raise DataError(f"{root / BUNDLE_FILE}: bundle format {meta.get('format')!r}; this speechrecipe reads "
                        f"format {BUNDLE_FORMAT}: export it again")
    for name, expected in sorted(meta["files"].items()):
        file = root / name
        if not file.is_file():
            raise DataError(f"{file}: missing from the bundle; export it again")
        if file_digest(file) != expected:
            raise DataError(f"{file}: its sha256 differs from {BUNDLE_FILE} (edited or corrupted); export the bundle "
                            "again rather than editing it")
    if checkpoint not in ("valid_best", meta["checkpoint"]):
        raise ConfigError(f"--checkpoint {checkpoint}: the bundle {root} holds only {meta['checkpoint']}; "
                          "export that checkpoint from the target_dir")
    conf = OmegaConf.load(root / "config.yaml")
    _problem_class(meta["problem"])
    return Source(root, meta["problem"], conf, meta["checkpoint"], root / WEIGHTS, True, meta)


def _problem_class(spec: str) -> type:
    from speechrecipe.registry import resolve_problem

    return resolve_problem(spec)


def inference_file(root: Path, weights_digest: str, suffix: str) -> Path:
    """What stage 3 fixed for one set of weights (by state_digest), for `load` to apply: root/inference/<digest><suffix>."""
    return Path(root) / INFERENCE_DIR / f"{weights_digest[:16]}{suffix}"
