"""Keyword spotting (ks) on Speech Commands. Imports no torch at module level."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.errors import ConfigError
from speechrecipe.problems.classification import UtteranceClassification


class KeywordSpotting(UtteranceClassification):
    """Keyword spotting: ten command words, _unknown_ and _silence_ (SUPERB KS), class-balanced training."""

    conf_name = "ks"
    description = "keyword spotting on Speech Commands: 10 words + _unknown_ + _silence_, accuracy and confusion matrix"
    results_title = "Keyword spotting results"
    choices = {"build_downstream.name": ("tcresnet", "bcresnet", "probe")}
    stage_texts = {0: "parse Speech Commands into manifests: words, _unknown_, _silence_ crops of the noise"}
    test_set_keys = ("prepare_data.released_test_dir",)

    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.speech_commands import prepare_speech_commands

        c = self.conf.prepare_data
        return prepare_speech_commands(
            out_dir=out_dir, words=list(c.words), unknown=c.unknown, silence_fraction=c.silence_fraction,
            silence_secs=c.silence_secs, released_test_dir=c.released_test_dir, seed=c.seed, **self.corpus_options())

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
