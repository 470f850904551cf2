"""Utterance classification: the shared core of ks, sid and intent. Imports no torch at module level.

A subclass declares stage 0 (its corpus → train/valid/<test set> manifests) and its test sets;
stages 1-4 are shared. Which row fields are classified is config (build_encoder.fields): one
encoder and one linear head per field over a shared utterance vector, loss summed. The model is
build_downstream.name (nn/classifiers.py), one of those the subclass's `choices` allow.
"""
from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from speechrecipe.engine.paths import test_manifest_name
from speechrecipe.engine.recipe import Recipe
from speechrecipe.errors import ConfigError, DataError
from speechrecipe.nn.catalog import PRECOMPUTED, UPSTREAM_NAMES

if TYPE_CHECKING:
    import torch

    from speechrecipe.data.encoder import LabelEncoder

log = logging.getLogger(__name__)


class UtteranceClassification(Recipe):
    """Classify whole utterances: pooled upstream features, one linear head per label field."""

    metric, higher_better, results_title = "accuracy", True, "Utterance classification results"
    inference = "speechrecipe.inference.models:Classifier"
    report_balanced_accuracy = False  # also balanced accuracy (mean per-class recall) in validation and results
    choices = {"build_upstream.name": UPSTREAM_NAMES + (PRECOMPUTED,), "build_downstream.name": ("probe",),  # nn/classifiers.py
               "build_downstream.probe.pooling": ("mean", "stats", "attentive"), "prepare_data.check_audio": ("full", "header")}
    stage_texts = {
        1: "map each label field's values to class indices",
        2: "train the classifier; keep valid_best by validation accuracy",
        3: "accuracy of each chosen checkpoint on each test set; predictions, confusion matrices",
        4: "valid_best per test set with 95 % intervals by utterance, best on test by accuracy beside it: "
           "results.json, README.md, confusion matrices",
    }
    # the encoder stage checks every evaluated label is a training class
    encoder_reads = ("train.jsonl", "valid.jsonl", "test_*.jsonl")
    training_reads = ("train.jsonl", "valid.jsonl", "classes_*.json")
    engine_keys = ("build_upstream.precomputed", "evaluate.top_k", "evaluate.confusion_matrix")

    # ----- hooks ---------------------------------------------------------------------------
    def save_encoder(self, encoder: dict[str, "LabelEncoder"]) -> list[Path]:
        encoders = encoder  # one LabelEncoder per label field
        for split in ("valid", *map(test_manifest_name, self.test_sets())):
            self.check_known(encoders, split)
        for field, encoder in encoders.items():
            encoder.save(self.paths.artifact(f"classes_{field}.json"))
            log.info("%s: %d classes", field, len(encoder))
        return [self.paths.artifact(f"classes_{field}.json") for field in encoders]

    def load_encoder(self) -> dict[str, "LabelEncoder"]:
        from speechrecipe.data.encoder import LabelEncoder

        fields = [str(f) for f in self.conf.build_encoder.fields]
        return {f: LabelEncoder.load(self.paths.artifact(f"classes_{f}.json")) for f in fields}

    def validate(self, task, encoder) -> dict[str, float]:
        return self.classify(task, "valid", encoder)

    def evaluate_test_set(self, task, encoder, test_set: str, out_dir: Path) -> dict[str, float]:
        return self.classify(task, test_manifest_name(test_set), encoder, out_dir, name=test_set)

    def unit_statistics(self, record: dict):
        """Accuracy (and per-field accuracy), resampled by utterance, from the predictions of stage 3."""
        from speechrecipe.tasks.unit_statistics import classification_units

        return classification_units(self.paths.evaluation / record["checkpoint"] / f"{record['test_set']}.predictions.tsv",
                                    self.report_balanced_accuracy)

    def report_extras(self, best: dict[str, dict]) -> None:
        for test_set, record in best.items():  # the best checkpoint's confusion matrices sit beside the table
            for path in sorted((self.paths.evaluation / record["checkpoint"]).glob(f"{test_set}.confusion_*")):
                shutil.copyfile(path, self.paths.results / path.name)

    # ----- builders --------------------------------------------------------------------
    def build_encoder(self, conf: DictConfig, rows: list[dict]) -> dict[str, "LabelEncoder"]:
        from speechrecipe.data.encoder import LabelEncoder

        self.check_fields(rows, "build_encoder.fields", conf.fields)
        return {str(field): LabelEncoder.fit(row[field] for row in rows) for field in conf.fields}

    def build_dataset(self, conf: DictConfig, split: str, encoder: dict[str, "LabelEncoder"]):
        """Clips of `split` with their labels (one encoder per field); training clips longer than max_secs
        are cropped at random."""
        from speechrecipe.data.clips import Clip, FieldLabels
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.frames import FrameClip, precomputed
        from speechrecipe.data.manifest import read_jsonl

        labels = FieldLabels(tuple(encoder), tuple(e.index for e in encoder.values()))
        max_secs = conf.max_secs if split == "train" else None
        rows = read_jsonl(self.paths.manifest(split))
        shards = precomputed(self.conf.build_upstream, rows)
        if shards is not None:  # dumped features instead of audio, cropped in frames
            return ManifestDataset(rows, FrameClip(shards, ("labels",), labels, max_secs))
        packed = None
        if conf.pack_audio and rows:
            from speechrecipe.data.packed import open_or_build

            packed = open_or_build(rows, self.paths.manifest(split), self.paths.cache / "packed", conf.sample_rate)
        augment = self.build_clip_augment(conf) if split == "train" else None
        return ManifestDataset(rows, Clip(conf.sample_rate, ("labels",), labels, max_secs, packed, augment))

    def build_clip_augment(self, conf: DictConfig):
        """Waveform augmentation of training clips (a callable on a numpy clip and an rng), or None."""
        return None

    def build_batch_sampler(self, conf: DictConfig, dataset):
        """Shuffled batches; with balance_by, each epoch draws with replacement so every class is equally likely."""
        from speechrecipe.data.sampler import EpochBatchSampler

        weights = None
        if conf.balance_by is not None:
            self.check_fields(dataset.rows, "build_batch_sampler.balance_by", [conf.balance_by])
            classes = [row[conf.balance_by] for row in dataset.rows]
            counts = Counter(classes)
            weights = [1.0 / counts[c] for c in classes]
        return EpochBatchSampler(dataset.lengths(), seed=self.conf.train.seed, batch_size=conf.batch_size,
                                 drop_last=True, weights=weights)

    def build_downstream(self, conf: DictConfig, input_dim: int, num_classes: list[int]) -> "torch.nn.Module":
        from speechrecipe.nn.classifiers import build_classifier

        return build_classifier(conf, input_dim, num_classes)

    def build_task(self, conf: DictConfig, encoder: dict[str, "LabelEncoder"]) -> "torch.nn.Module":
        from speechrecipe.nn.specaugment import SeededSpecAugment
        from speechrecipe.tasks.classification import UtteranceClassificationTask

        upstream = self.build_upstream(self.conf.build_upstream)
        featurizer = self.build_featurizer(self.conf.build_featurizer, upstream)
        sizes = [len(e) for e in encoder.values()]
        downstream = self.build_downstream(self.conf.build_downstream, featurizer.output_dim, sizes)
        spec = conf.get("specaugment")  # a problem's own YAML may have no build_task section
        specaugment = SeededSpecAugment(**{k: v for k, v in spec.items() if k != "apply"}) if spec and spec.apply else None
        return UtteranceClassificationTask(upstream, featurizer, downstream, list(encoder), specaugment)

    # ----- helpers -----------------------------------------------------------------------
    def check_fields(self, rows: list[dict], key: str, fields) -> None:
        missing = [str(f) for f in fields if rows and f not in rows[0]]
        if missing:
            raise ConfigError(f"{key}: {', '.join(missing)} is not a field of the manifest "
                              f"{self.paths.manifest('train')}; its fields are {', '.join(rows[0])}")

    def check_known(self, encoders: dict[str, "LabelEncoder"], split: str) -> None:
        """Every label of `split` must be a training class: the classifier cannot predict others."""
        from speechrecipe.data.manifest import read_jsonl

        manifest = self.paths.manifest(split)
        rows = read_jsonl(manifest)
        for field, encoder in encoders.items():
            unseen = Counter(row[field] for row in rows if row[field] not in encoder.index)
            if unseen:
                shown = ", ".join(repr(v) for v, _ in unseen.most_common(3))
                raise DataError(f"{manifest}: {sum(unseen.values())} utterances have a {field} that no training "
                                f"utterance has ({shown}); every evaluated class needs training examples")

    def classify(self, task, split: str, encoders: dict[str, "LabelEncoder"],
                 out_dir: Path | None = None, name: str | None = None) -> dict[str, float]:
        """Accuracy (and top-k) of `task` on a manifest; with out_dir, also predictions and confusion matrices."""
        from speechrecipe.tasks.classification import classification_metrics, gather, write_predictions

        outputs = self.test_outputs(task, split, encoders, desc="classify")
        ids, logits, labels = gather(outputs)
        if out_dir is not None:
            write_predictions(out_dir / (name or split), ids, logits, labels, encoders, self.conf.evaluate.confusion_matrix)
        return classification_metrics(logits, labels, list(encoders), [int(k) for k in self.conf.evaluate.top_k],
                                      self.report_balanced_accuracy)

    def result_columns(self) -> list[tuple[str, str, str]]:
        fields = [str(f) for f in self.conf.build_encoder.fields]
        columns = [("accuracy", "accuracy (%)" if len(fields) == 1 else "all fields right (%)", "pct")]
        columns += [(f"accuracy_{f}", f"{f} (%)", "pct") for f in fields] if len(fields) > 1 else []
        suffixes = [f"_{f}" for f in fields] if len(fields) > 1 else [""]
        columns += [(f"top{k}_accuracy{s}", f"top-{k}{s.replace('_', ' ')} (%)", "pct")
                    for k in self.conf.evaluate.top_k for s in suffixes]
        return columns

    def check_config(self) -> None:
        super().check_config()
        fields = list(self.conf.build_encoder.fields)
        if not fields or len(set(fields)) != len(fields):
            raise ConfigError(f"build_encoder.fields: {fields} must name one or more distinct manifest fields")
        if any(not isinstance(k, int) for k in self.conf.evaluate.top_k):  # their range is ranges.py's
            raise ConfigError(f"evaluate.top_k: {list(self.conf.evaluate.top_k)} must be whole numbers")
