"""Speaker identification (sid) on VoxCeleb1. Imports no torch at module level."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.problems.classification import UtteranceClassification


class SpeakerIdentification(UtteranceClassification):
    """Speaker identification: one class per VoxCeleb1 speaker, splits from iden_split.txt (SUPERB SID)."""

    conf_name = "sid"
    description = "speaker identification on VoxCeleb1 (iden_split.txt): accuracy and top-5 accuracy"
    results_title = "Speaker identification results"
    stage_texts = {0: "parse VoxCeleb1's iden_split.txt into train (1), valid (2) and test (3) manifests"}
    choices = {"build_downstream.name": ("xvector", "ecapa", "probe"), "build_downstream.head": ("linear", "relu_bn")}

    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.voxceleb1 import prepare_voxceleb1_identification

        return prepare_voxceleb1_identification(out_dir=out_dir, iden_split=self.conf.prepare_data.iden_split,
                                                **self.corpus_options())

    def build_clip_augment(self, conf):
        """Speed perturbation of the training crops (build_dataset.augment), or None."""
        from speechrecipe.data.clip_augment import SpeedClip

        a = conf.augment
        return SpeedClip(conf.sample_rate, tuple(a.speeds)) if a.speed_perturb else None

    def protocol_files(self) -> list[Path]:
        return [self.dataset_root / str(self.conf.prepare_data.iden_split)]
