"""Keyword spotting (ks) on Speech Commands. Imports no torch at module level."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.engine.problem import stage
from speechrecipe.errors import ConfigError
from speechrecipe.problems.classification import UtteranceClassification


class KeywordSpotting(UtteranceClassification):
    """Keyword spotting: ten command words, _unknown_ and _silence_ (SUPERB KS), class-balanced training."""

    conf_name = "ks"
    description = "keyword spotting on Speech Commands: 10 words + _unknown_ + _silence_, accuracy and confusion matrix"
    results_title = "Keyword spotting results"

    @stage(0, "prepare data", "parse Speech Commands into manifests: words, _unknown_, _silence_ crops of the noise",
           role="prepare", uses=("prepare_data",), ignore=("prepare_data.num_workers",))
    def prepare_data(self) -> list[Path]:
        return self.prepare_corpus_cached()

    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.speech_commands import prepare_speech_commands

        c = self.conf.prepare_data
        return prepare_speech_commands(
            out_dir=out_dir, words=list(c.words), unknown=c.unknown, silence_fraction=c.silence_fraction,
            silence_secs=c.silence_secs, released_test_dir=c.released_test_dir, seed=c.seed, **self.corpus_options())

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
