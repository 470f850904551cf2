"""Keyword spotting (ks) on Speech Commands. Imports no torch at module level.

One protocol for the class shares (conf/ks.yaml): by default every split keeps its listed clips, so
training, validation and test share the published prior (`_unknown_` is the majority), training draws
clips as the train split holds them, and valid_best is chosen by plain accuracy. Stage 0 logs each
split's class shares and the report shows them beside accuracy and balanced accuracy.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from speechrecipe.errors import ConfigError
from speechrecipe.problems.classification import UtteranceClassification

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test", "released")
UNKNOWN = "_unknown_"


class KeywordSpotting(UtteranceClassification):
    """Keyword spotting: ten command words, _unknown_ and _silence_; accuracy and balanced accuracy."""

    conf_name = "ks"
    description = "keyword spotting on Speech Commands: 10 words + _unknown_ + _silence_, accuracy and confusion matrix"
    results_title = "Keyword spotting results"
    choices = {"build_downstream.name": ("tcresnet", "bcresnet", "probe")}
    stage_texts = {0: "parse Speech Commands into manifests: words, _unknown_, _silence_ crops of the noise"}
    test_set_keys = ("prepare_data.released_test_dir",)
    report_balanced_accuracy = True

    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.speech_commands import prepare_speech_commands

        c = self.conf.prepare_data
        return prepare_speech_commands(
            out_dir=out_dir, words=list(c.words), unknown=c.unknown, unknown_fraction=c.unknown_fraction,
            silence_fraction=c.silence_fraction, silence_secs=c.silence_secs, released_test_dir=c.released_test_dir,
            seed=c.seed, **self.corpus_options())

    def prepare_corpus_cached(self) -> list[Path]:
        """Stage 0's body, then the class shares of every split in the log (prepared now or found in the cache)."""
        from speechrecipe.data.corpora.speech_commands import class_shares

        files = super().prepare_corpus_cached()
        counts = self.split_counts()
        for split, split_counts in counts.items():
            log.info("%s: %s", split, class_shares(split_counts))
        log.info("training prior: %s", self.training_prior())
        trained, tested = self.trained_unknown_share(), _share(counts["test"], UNKNOWN)
        if trained is not None and abs(trained - tested) > 0.1:
            log.warning("training learns %s at %.1f %% and the test split has %.1f %%: its accuracy follows the test "
                        "split's prior, balanced_accuracy does not (conf/ks.yaml, class shares)", UNKNOWN,
                        100 * trained, 100 * tested)
        return files

    def split_counts(self) -> dict[str, dict[str, int]]:
        """{split: {label: clips}} of the prepared splits (the cache's summary.json)."""
        summary = json.loads((self.paths.cache / "summary.json").read_text())
        return {split: summary[split] for split in SPLITS if split in summary}

    def trained_unknown_share(self) -> float | None:
        """The share of `_unknown_` among the clips training draws (None: balanced by a field other than label)."""
        train, balance_by = self.split_counts()["train"], self.conf.build_batch_sampler.balance_by
        if balance_by is None:
            return _share(train, UNKNOWN)
        return (UNKNOWN in train) / len(train) if balance_by == "label" else None

    def training_prior(self) -> str:
        balance_by = self.conf.build_batch_sampler.balance_by
        how = ("the train split's shares" if balance_by is None else f"every class of {balance_by} equally likely")
        trained = self.trained_unknown_share()
        unknown = "" if trained is None else f", {UNKNOWN} {100 * trained:.1f} %"
        return f"{how} (build_batch_sampler.balance_by: {balance_by or 'null'}{unknown})"

    def result_columns(self) -> list[tuple[str, str, str]]:
        return super().result_columns() + [("balanced_accuracy", "balanced accuracy (%)", "pct")]

    def report_extras(self, best: dict[str, dict]) -> None:
        """The class shares of every split under the results table, so a prior mismatch shows at a glance."""
        from speechrecipe.data.corpora.speech_commands import class_shares
        from speechrecipe.fileio import atomic_write_text

        super().report_extras(best)
        readme = self.paths.results / "README.md"
        lines = ["", "## Class shares", "", f"Training prior: {self.training_prior()}.", "",
                 "| split | class shares |", "|---|---|"]
        lines += [f"| {split} | {class_shares(counts)} |" for split, counts in self.split_counts().items()]
        atomic_write_text(readme, readme.read_text() + "\n".join(lines) + "\n")

    def build_clip_augment(self, conf):
        """Time shift and _background_noise_ mixing (data/clip_augment.py); the noise comes only from the
        part of each recording that training `_silence_` crops come from, never the valid/test part."""
        from speechrecipe.data.clip_augment import ClipAugment, load_noises
        from speechrecipe.data.corpora.speech_commands import SILENCE_REGIONS
        from speechrecipe.data.scan import find_audio

        a = conf.augment
        folder = self.dataset_root / "_background_noise_"
        noises = []
        if a.noise_prob > 0 and folder.is_dir():
            noises = load_noises(find_audio(folder), conf.sample_rate, SILENCE_REGIONS["train"])
        if not noises and a.shift_ms == 0:
            return None
        return ClipAugment(conf.sample_rate, a.shift_ms, a.noise_prob, a.noise_volume, noises)

    def check_config(self) -> None:
        super().check_config()
        for word in self.conf.prepare_data.words:
            if not isinstance(word, str):
                raise ConfigError(f"prepare_data.words: {word!r} is not a word; YAML reads unquoted yes, no, on and off "
                                  'as true/false: quote them, e.g. prepare_data.words=["yes","no"]')

    def test_sets(self) -> list[str]:
        return ["test"] + (["released"] if self.conf.prepare_data.released_test_dir else [])

    def protocol_files(self) -> list[Path]:
        return [self.dataset_root / "validation_list.txt", self.dataset_root / "testing_list.txt"]


def _share(counts: dict[str, int], label: str) -> float:
    return counts.get(label, 0) / max(1, sum(counts.values()))
