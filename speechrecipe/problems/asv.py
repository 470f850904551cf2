"""Speaker verification (asv). Imports no torch at module level: `speechrecipe stages asv` stays fast."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from speechrecipe.config import closest
from speechrecipe.engine.paths import test_manifest_name
from speechrecipe.engine.recipe import Recipe
from speechrecipe.errors import ConfigError, DataError
from speechrecipe.nn.catalog import PRECOMPUTED, UPSTREAM_NAMES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ENCODER = "speakers.json"
TEST_SET_KEYS = {"name", "trial_file", "exclude_speakers"}


class ASV(Recipe):
    """Speaker verification: train a speaker classifier, score trials by cosine similarity."""

    conf_name = "asv"
    description = "speaker verification on VoxCeleb1: x-vector/ECAPA embeddings, cosine scoring, EER and minDCF"

    metric, higher_better, results_title = "eer", False, "Speaker verification results"
    inference = "speechrecipe.inference.models:SpeakerEmbedder"
    choices = {"build_upstream.name": UPSTREAM_NAMES + (PRECOMPUTED,), "build_downstream.name": ("xvector", "ecapa"),
               "build_task.loss": ("softmax", "amsoftmax", "aamsoftmax"), "evaluate.score_norm": ("none", "asnorm"),
               "prepare_data.check_audio": ("full", "header"), "build_dataset.crop_mode": ("fixed", "max")}

    stage_texts = {
        0: "parse VoxCeleb1 into train/valid manifests and trial lists",
        1: "map training speaker ids to class indices",
        2: "train the speaker classifier; keep valid_best by validation EER",
        3: "embed each test utterance once per checkpoint, cosine-score every trial",
        4: "valid_best per test set with 95 % intervals by speaker, best on test beside it: results.json, README.md, "
           "DET curves",
    }
    training_reads = ("train.jsonl", "valid.jsonl", "trials_valid.tsv", ENCODER)  # not the test sets
    test_set_keys = ("prepare_data.test_sets",)
    engine_keys = ("build_upstream.precomputed", "evaluate.score_norm", "evaluate.asnorm_top_n",
                   "evaluate.asnorm_cohort_per_speaker")

    # ----- hooks ---------------------------------------------------------------------------
    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.voxceleb1 import prepare_voxceleb1_verification

        c = self.conf.prepare_data
        return prepare_voxceleb1_verification(
            out_dir=out_dir, test_sets=list(c.test_sets), valid_fraction=c.valid_fraction, valid_count=c.valid_count,
            iden_split=c.iden_split, seed=c.seed, num_valid_trials=c.num_valid_trials, **self.corpus_options())

    def check_prepared(self, out_dir: Path) -> None:
        """As every problem's, and each trial list (valid, test sets) holds target and non-target trials: EER and
        minDCF are undefined without both."""
        from speechrecipe.data.manifest import read_trials
        from speechrecipe.errors import DataError

        super().check_prepared(out_dir)
        sources = {f"trials_{t.name}.tsv": self.dataset_root / str(t.trial_file) for t in self.conf.prepare_data.test_sets}
        for trials in sorted(out_dir.glob("trials_*.tsv")):
            labels = {label for label, _, _ in read_trials(trials)}
            for label, kind in ((1, "target"), (0, "non-target")):
                if label not in labels:
                    where = sources.get(trials.name, trials)
                    raise DataError(f"{where}: no {kind} trial among the usable ones ({trials.name}); EER and minDCF "
                                    "need both kinds: give a trial list with both (and see bad_audio.tsv)")

    def protocol_files(self) -> list[Path]:
        c = self.conf.prepare_data
        lists = [self.dataset_root / str(t.trial_file) for t in c.test_sets]
        return lists + ([self.dataset_root / str(c.iden_split)] if c.iden_split else [])

    def test_sets(self) -> list[str]:
        return [str(t.name) for t in self.conf.prepare_data.test_sets]

    def test_set_files(self, test_set: str) -> list[Path]:
        return [self.paths.test_manifest(test_set), self.paths.cache / f"trials_{test_set}.tsv"]

    def save_encoder(self, encoder) -> list[Path]:
        encoder.save(self.paths.artifact(ENCODER))
        log.info("%d training speakers", len(encoder))
        return [self.paths.artifact(ENCODER)]

    def load_encoder(self):
        from speechrecipe.data.encoder import LabelEncoder

        return LabelEncoder.load(self.paths.artifact(ENCODER))

    def validate(self, task, encoder) -> dict[str, float]:
        return self.verify(task, "valid")

    def evaluate_test_set(self, task, encoder, test_set: str, out_dir: Path) -> dict[str, float]:
        return self.verify(task, test_set, out_dir / f"{test_set}.scores")

    def result_columns(self) -> list[tuple[str, str, str]]:
        return [("eer", "EER (%)", "pct"), ("mindcf_0.01", "minDCF (p=0.01)", "float"),
                ("mindcf_0.05", "minDCF (p=0.05)", "float")]

    def report_extras(self, best: dict[str, dict]) -> None:
        self.plot_det(best)

    # ----- builders --------------------------------------------------------------------
    def build_encoder(self, conf: DictConfig, rows: list[dict]):
        from speechrecipe.data.encoder import LabelEncoder

        return LabelEncoder.fit(row["speaker"] for row in rows)

    def build_dataset(self, conf: DictConfig, split: str, encoder=None):
        """Training crops (with augmentation) for split 'train'; whole utterances otherwise."""
        from speechrecipe.data.augment import build_augmenter
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.frames import FrameClip, precomputed
        from speechrecipe.data.manifest import longer_than, read_jsonl
        from speechrecipe.data.preprocessors import LabelLookup, RandomCrop

        rows = read_jsonl(self.paths.manifest(split))
        if split != "train":
            return self.whole_utterances(rows)
        if not (rows := longer_than(rows, conf.min_secs)):
            raise DataError(f"build_dataset.min_secs={conf.min_secs}: no training utterance is longer; lower it")
        labels = LabelLookup("speaker", "labels", encoder.index)
        shards = precomputed(self.conf.build_upstream, rows)
        if shards is not None:  # dumped features instead of audio, cropped in frames
            return ManifestDataset(rows, FrameClip(shards, ("labels",), labels, conf.crop_secs,
                                                    repeat_short=conf.crop_mode == "fixed"))
        augmenter = build_augmenter(conf.augment, conf.sample_rate)
        return ManifestDataset(rows, RandomCrop(conf.sample_rate, ("labels",), conf.crop_secs, labels, augmenter, conf.crop_mode))

    def build_batch_sampler(self, conf: DictConfig, dataset):
        from speechrecipe.data.sampler import EpochBatchSampler

        return EpochBatchSampler(dataset.lengths(), seed=self.conf.train.seed, batch_size=conf.batch_size, drop_last=True,
                                 bucket=conf.bucket, bucket_batches=conf.bucket_batches)

    def build_downstream(self, conf: DictConfig, input_dim: int) -> "torch.nn.Module":
        from speechrecipe.nn.speaker_encoder import build_speaker_encoder

        return build_speaker_encoder(conf, input_dim)

    def build_model(self) -> tuple["torch.nn.Module", "torch.nn.Module", "torch.nn.Module"]:
        upstream = self.build_upstream(self.conf.build_upstream)
        featurizer = self.build_featurizer(self.conf.build_featurizer, upstream)
        downstream = self.build_downstream(self.conf.build_downstream, featurizer.output_dim)
        return upstream, featurizer, downstream

    def build_task(self, conf: DictConfig, encoder) -> "torch.nn.Module":
        from speechrecipe.nn.losses import build_loss
        from speechrecipe.tasks.speaker_verification import SpeakerVerificationTask

        upstream, featurizer, downstream = self.build_model()
        loss = build_loss(conf.loss, downstream.embedding_dim, len(encoder), conf.margin, conf.scale)
        return SpeakerVerificationTask(upstream, featurizer, downstream, loss)

    # ----- helpers -----------------------------------------------------------------------
    def whole_utterances(self, rows: list[dict]):
        """Evaluation samples: whole utterances (their dumped frames with the precomputed upstream)."""
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.frames import FrameClip, precomputed
        from speechrecipe.data.preprocessors import WholeUtterance

        shards = precomputed(self.conf.build_upstream, rows)
        return ManifestDataset(rows, FrameClip(shards) if shards else WholeUtterance(self.conf.build_dataset.sample_rate))

    def verify(self, task, split: str, scores_path: Path | None = None) -> dict[str, float]:
        """Embed the split's utterances, score its trials, return EER and minDCF."""
        from speechrecipe.data.manifest import read_trials
        from speechrecipe.metrics.eer import eer
        from speechrecipe.metrics.mindcf import min_dcf
        from speechrecipe.tasks.scoring import Trials, as_norm, cosine_scores, embedding_table, read_score_table, write_scores

        name = "valid" if split == "valid" else test_manifest_name(split)
        trials = Trials.from_list(read_trials(self.paths.cache / f"trials_{split}.tsv"))
        table = embedding_table(self.test_outputs(task, name, None, "embed"), trials.ids)
        scores = cosine_scores(table, trials.enroll, trials.test)
        if split != "valid" and self.conf.evaluate.score_norm == "asnorm":
            cohort = self.cohort_embeddings(task)
            self.keep_cohort(task, cohort)
            scores = as_norm(scores, table, trials.enroll, trials.test, cohort, self.conf.evaluate.asnorm_top_n)
        labels = trials.labels
        if scores_path is not None:  # the metrics of the scores as written (6 decimals): what stage 4 resamples
            write_scores(scores_path, trials, scores)
            _, scores, labels = read_score_table(scores_path)
        return {"eer": eer(scores, labels), "mindcf_0.01": min_dcf(scores, labels, 0.01), "mindcf_0.05": min_dcf(scores, labels, 0.05)}

    def cohort_embeddings(self, task) -> "torch.Tensor":
        """One mean embedding per training speaker, from its first N utterances (AS-norm cohort)."""
        import torch
        import torch.nn.functional as F

        from speechrecipe.data.manifest import read_jsonl

        per_speaker: dict[str, list[dict]] = {}
        for row in read_jsonl(self.paths.manifest("train")):
            per_speaker.setdefault(row["speaker"], []).append(row)
        keep = int(self.conf.evaluate.asnorm_cohort_per_speaker)
        rows = [r for spk in sorted(per_speaker) for r in sorted(per_speaker[spk], key=lambda r: r["id"])[:keep]]
        speaker = {r["id"]: r["speaker"] for r in rows}
        sums: dict[str, torch.Tensor] = {}
        for out in self.test_outputs(task, "train", None, "embed cohort of", dataset=self.whole_utterances(rows)):
            for utt, emb in zip(out["ids"], F.normalize(out["embeddings"].float(), dim=1)):
                sums[speaker[utt]] = sums.get(speaker[utt], 0) + emb
        return torch.stack([sums[s] for s in sorted(sums)])

    def keep_cohort(self, task, cohort: "torch.Tensor") -> None:
        """target_dir/inference/<weights>.cohort.pt: the AS-norm cohort `speechrecipe.load` scores with."""
        from speechrecipe.engine.pairs import SHARD
        from speechrecipe.engine.checkpoint import save_atomic
        from speechrecipe.inference.source import inference_file
        from speechrecipe.nn.ssl_upstream import state_digest

        if SHARD.rank != 0:  # a pair every rank of a sharded stage 3 evaluates together: rank 0 writes
            return
        path = inference_file(self.paths.target_dir, state_digest(task.state_dict()), ".cohort.pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"cohort": cohort, "top_n": int(self.conf.evaluate.asnorm_top_n)}, path)

    def unit_statistics(self, record: dict):
        """A stage-3 result's trials as speakers to resample (the test manifest names each utterance's speaker)."""
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.tasks.unit_statistics import verification_units

        name = record["test_set"]
        speaker_of = {row["id"]: row["speaker"] for row in read_jsonl(self.paths.test_manifest(name))}
        return verification_units(self.paths.evaluation / record["checkpoint"] / f"{name}.scores", speaker_of)

    def plot_det(self, best: dict[str, dict]) -> None:
        from speechrecipe.metrics.det_plot import plot_det
        from speechrecipe.metrics.eer import error_curves
        from speechrecipe.tasks.scoring import read_scores

        for test_set, record in best.items():
            scores_file = self.paths.evaluation / record["checkpoint"] / f"{test_set}.scores"
            fpr, fnr, _ = error_curves(*read_scores(scores_file))
            plot_det({f"{test_set} ({record['checkpoint']})": (fpr, fnr)}, self.paths.results / f"det_{test_set}.png",
                     title=f"DET: {test_set}")

    def check_config(self) -> None:
        super().check_config()
        for key in ("noise_dir", "rir_dir"):
            folder = self.conf.build_dataset.augment[key]
            if folder is not None and not Path(folder).is_dir():
                raise ConfigError(f"build_dataset.augment.{key}: {folder} is not a folder; give a folder of .wav/.flac files or null")
        for i, item in enumerate(self.conf.prepare_data.test_sets):
            _check_test_set_keys(i, item)
            if not isinstance(item.get("exclude_speakers", True), bool):
                raise ConfigError(f"prepare_data.test_sets: {item.name}.exclude_speakers must be true or false")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(item.name)) or item.name == "valid":
                raise ConfigError(f"prepare_data.test_sets: name {item.name!r} must be letters, digits, _ . - (not 'valid')")
        names = self.test_sets()
        if len(set(names)) != len(names):
            raise ConfigError(f"prepare_data.test_sets: names must differ, got {names}")


def _check_test_set_keys(index: int, item) -> None:
    """A test-set entry has `name` and `trial_file` (and may set `exclude_speakers`): one line naming a wrong key."""
    where = f"prepare_data.test_sets[{index}]"
    if not isinstance(item, DictConfig):
        raise ConfigError(f"{where}: {item!r} is not a mapping; give {{name: ..., trial_file: ...}}")
    for key in item.keys():
        if key not in TEST_SET_KEYS:
            close = closest(str(key), TEST_SET_KEYS)
            hint = f"did you mean {close}?" if close else f"a test set takes {', '.join(sorted(TEST_SET_KEYS))}"
            raise ConfigError(f"{where}.{key}: unknown key; {hint}")
    for key in ("name", "trial_file"):
        if key not in item:
            raise ConfigError(f"{where}.{key}: missing; each test set needs name and trial_file")
