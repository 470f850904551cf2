"""Intent classification (intent) on Fluent Speech Commands. Imports no torch at module level."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.engine.problem import stage
from speechrecipe.problems.classification import UtteranceClassification


class IntentClassification(UtteranceClassification):
    """Intent classification: one head per slot (action, object, location); an utterance counts when all are right (SUPERB IC)."""

    conf_name = "intent"
    description = "intent classification on Fluent Speech Commands: one head per slot, per-slot and utterance accuracy"
    results_title = "Intent classification results"
    downstreams = ("tcresnet", "ecapa", "xvector", "probe")

    @stage(0, "prepare data", "parse Fluent Speech Commands' data/{train,valid,test}_data.csv into manifests",
           uses=("prepare_data",), ignore=("prepare_data.num_workers",))
    def prepare_data(self) -> list[Path]:
        from speechrecipe.data.corpora.fluent_speech_commands import prepare_fluent_speech_commands

        c = self.conf.prepare_data
        return self.prepare_cached(lambda out: prepare_fluent_speech_commands(
            root=self.dataset_root, out_dir=out, strict=c.strict,
            check_audio=c.check_audio, num_workers=c.num_workers, sample_rate=self.conf.build_dataset.sample_rate))

    def protocol_files(self) -> list[Path]:
        return [self.dataset_root / "data" / f"{split}_data.csv" for split in ("train", "valid", "test")]
