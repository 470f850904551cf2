"""Intent classification (intent) on Fluent Speech Commands. Imports no torch at module level."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.problems.classification import UtteranceClassification


class IntentClassification(UtteranceClassification):
    """Intent classification: one head per slot (action, object, location); an utterance counts when all are right (SUPERB IC)."""

    conf_name = "intent"
    description = "intent classification on Fluent Speech Commands: one head per slot, per-slot and utterance accuracy"
    results_title = "Intent classification results"
    stage_texts = {0: "parse Fluent Speech Commands' data/{train,valid,test}_data.csv into manifests"}
    choices = {"build_downstream.name": ("tcresnet", "ecapa", "xvector", "probe"),
               "build_downstream.head": ("linear", "relu_bn")}

    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.fluent_speech_commands import prepare_fluent_speech_commands

        return prepare_fluent_speech_commands(out_dir=out_dir, **self.corpus_options())

    def protocol_files(self) -> list[Path]:
        return [self.dataset_root / "data" / f"{split}_data.csv" for split in ("train", "valid", "test")]
