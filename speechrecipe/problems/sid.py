"""Speaker identification (sid) on VoxCeleb1. Imports no torch at module level."""
from __future__ import annotations

from pathlib import Path

from speechrecipe.engine.problem import stage
from speechrecipe.problems.classification import UtteranceClassification


class SpeakerIdentification(UtteranceClassification):
    """Speaker identification: one class per VoxCeleb1 speaker, splits from iden_split.txt (SUPERB SID)."""

    conf_name = "sid"
    description = "speaker identification on VoxCeleb1 (iden_split.txt): accuracy and top-5 accuracy"
    results_title = "Speaker identification results"
    downstreams = ("xvector", "ecapa", "probe")

    @stage(0, "prepare data", "parse VoxCeleb1's iden_split.txt into train (1), valid (2) and test (3) manifests",
           uses=("prepare_data",), ignore=("prepare_data.num_workers",))
    def prepare_data(self) -> list[Path]:
        from speechrecipe.data.corpora.voxceleb1 import prepare_voxceleb1_identification

        c = self.conf.prepare_data
        return self.prepare_cached(lambda out: prepare_voxceleb1_identification(
            root=self.dataset_root, out_dir=out, iden_split=c.iden_split,
            strict=c.strict, check_audio=c.check_audio, num_workers=c.num_workers,
            sample_rate=self.conf.build_dataset.sample_rate))

    def protocol_files(self) -> list[Path]:
        return [self.dataset_root / str(self.conf.prepare_data.iden_split)]
