"""Speaker diarization with permutation-invariant training (diarization). Imports no torch at module level."""
from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from speechrecipe.engine.recipe import Recipe
from speechrecipe.errors import ConfigError
from speechrecipe.nn.catalog import UPSTREAM_NAMES

if TYPE_CHECKING:
    import numpy as np
    import torch

    from speechrecipe.data.diarization_chunks import FrameGrid
    from speechrecipe.data.rttm import Segment

log = logging.getLogger(__name__)

SPEAKER_ORDER = "speaker_order.json"
MINI_FOLDER = "mini_corpus"  # in the cache: one folder per mini corpus (named by its settings)


class Diarization(Recipe):
    """Frame-level speaker activity (one sigmoid per output speaker), PIT BCE, DER with its parts."""

    conf_name = "diarization"
    description = "speaker diarization on Kaldi data dirs (LibriMix): PIT BiLSTM/Conformer, chunk stitching, DER"
    metric, higher_better, results_title = "der", False, "Speaker diarization results"
    inference = "speechrecipe.inference.models:Diarizer"
    choices = {"build_upstream.name": UPSTREAM_NAMES, "build_downstream.kind": ("lstm", "conformer"),
               "prepare_data.check_audio": ("full", "header")}

    stage_texts = {
        0: "parse Kaldi data dirs (wav.scp, rttm; segments, utt2spk, reco2dur checked) into per-recording manifests; "
           "builds the mini corpus first when dataset_root is null",
        1: "each training recording's speakers in output order (most speech first)",
        2: "train on fixed-length chunks with permutation-invariant BCE; keep valid_best by DER on the dev split",
        3: "diarize each test set by overlapping chunks with every checkpoint (threshold and median filter tuned on "
           "the dev split): one RTTM each, DER",
        4: "best checkpoint per test set by DER (missed, false alarm, confusion): results.json, README.md, reference "
           "against hypothesis activity of one recording",
    }
    # validation also reads evaluate.chunk_secs, threshold, ...: they pick valid_best but never change the weights
    training_reads = ("train.jsonl", "valid.jsonl", SPEAKER_ORDER)
    test_set_keys = ("prepare_data.test_splits",)
    engine_keys = ("evaluate.chunk_secs", "evaluate.chunk_overlap_secs", "evaluate.threshold", "evaluate.median_frames",
                   "evaluate.collar_secs", "evaluate.tune")

    def prepare_corpus_cached(self) -> list[Path]:
        """The mini corpus is built first when dataset_root is null (stage 0 runs in the run's turn on the cache:
        engine/cache.py)."""
        if self.conf.prepare_data.dataset_root is None:
            self.build_mini_corpus()
        return super().prepare_corpus_cached()

    # ----- hooks ---------------------------------------------------------------------------
    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.kaldi_diarization import prepare_kaldi_diarization

        c = self.conf.prepare_data
        manifests = {"train": c.train_split, "valid": c.dev_split,
                     **{self.paths.test_manifest(s).stem: s for s in c.test_splits}}
        return prepare_kaldi_diarization(out_dir=out_dir, manifests=manifests, **self.corpus_options())

    def protocol_files(self) -> list[Path]:
        from speechrecipe.data.corpora.kaldi_diarization import protocol_files

        c = self.conf.prepare_data
        return protocol_files(self.dataset_root, [c.train_split, c.dev_split, *c.test_splits])

    def test_sets(self) -> list[str]:
        return [str(s) for s in self.conf.prepare_data.test_splits]

    def test_set_files(self, test_set: str) -> list[Path]:
        """The test manifest and the dev manifest the post-processing is tuned on."""
        return [self.paths.test_manifest(test_set), self.paths.manifest("valid")]

    def build_encoder(self, conf: DictConfig, rows: list[dict]) -> dict[str, list[str]]:
        """{recording: its speakers, most speech first (ties by name), at most num_speakers}."""
        order, crowded = {}, 0
        for row in rows:
            speech: dict[str, float] = {}
            for start, end, speaker in row["segments"]:
                speech[speaker] = speech.get(speaker, 0.0) + end - start
            order[row["id"]] = sorted(speech, key=lambda s: (-speech[s], s))[: conf.num_speakers]
            crowded += len(speech) > conf.num_speakers
        if crowded:
            log.warning("%d training recordings have more than %d speakers; the quietest are left out of their targets",
                        crowded, conf.num_speakers)
        return order

    def save_encoder(self, encoder: dict[str, list[str]]) -> list[Path]:
        from speechrecipe.fileio import atomic_write_json

        atomic_write_json(self.paths.artifact(SPEAKER_ORDER), encoder)
        return [self.paths.artifact(SPEAKER_ORDER)]

    def load_encoder(self) -> dict[str, list[str]]:
        return json.loads(self.paths.artifact(SPEAKER_ORDER).read_text())

    def build_dataset(self, conf: DictConfig, split: str, encoder: dict[str, list[str]]):
        """Training chunks with their targets (column k: the recording's k-th speaker in `encoder`)."""
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.diarization_chunks import DiarizationChunks
        from speechrecipe.data.manifest import read_jsonl

        rows = read_jsonl(self.paths.manifest(split))
        return ManifestDataset(rows, DiarizationChunks(conf.sample_rate, grid=self.frame_grid, chunk_secs=conf.chunk_secs,
                                                       order=encoder, num_speakers=self.conf.build_encoder.num_speakers))

    def build_batch_sampler(self, conf: DictConfig, dataset):
        from speechrecipe.data.sampler import EpochBatchSampler

        return EpochBatchSampler(dataset.lengths(), seed=self.conf.train.seed, batch_size=conf.batch_size)

    def build_downstream(self, conf: DictConfig, input_dim: int, num_speakers: int) -> "torch.nn.Module":
        from speechrecipe.nn.heads import FrameTagger

        return FrameTagger(input_dim, num_speakers, hidden_dim=conf.hidden_dim, num_layers=conf.num_layers,
                           bidirectional=conf.bidirectional, dropout=conf.dropout, kind=conf.kind,
                           subsample=conf.subsample, **conf.conformer)

    def build_task(self, conf: DictConfig, encoder: dict[str, list[str]]) -> "torch.nn.Module":
        from speechrecipe.tasks.diarization import DiarizationTask

        upstream = self.build_upstream(self.conf.build_upstream)
        featurizer = self.build_featurizer(self.conf.build_featurizer, upstream)
        downstream = self.build_downstream(self.conf.build_downstream, featurizer.output_dim,
                                           self.conf.build_encoder.num_speakers)
        return DiarizationTask(upstream, featurizer, downstream)

    def validate(self, task, encoder) -> dict[str, float]:
        """DER on the dev split at evaluate.threshold and evaluate.median_frames."""
        c = self.conf.evaluate
        return self.defined_on_dev(self.score(self.segments(self.diarize(task, "valid"), c.threshold, c.median_frames), "valid"))

    def evaluate_test_set(self, task, encoder, test_set: str, out_dir: Path) -> dict[str, float]:
        """DER with the threshold and median filter tuned on dev for these weights, of <test_set>.rttm as written
        (times rounded to ms), so the headline is the DER of the file, the statistic its intervals resample."""
        from speechrecipe.data.rttm import read_rttm, write_rttm

        tuned = self.tuned(task)
        name = self.paths.test_manifest(test_set).stem
        write_rttm(out_dir / f"{test_set}.rttm", self.segments(self.diarize(task, name), tuned["threshold"], tuned["median_frames"]))
        return {**self.score(read_rttm(out_dir / f"{test_set}.rttm"), name), **tuned}

    def unit_statistics(self, record: dict):
        """DER and its parts resampled by recording, from the RTTM stage 3 wrote and the reference segments."""
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.data.rttm import read_rttm
        from speechrecipe.metrics.bootstrap import contents_digest, ratio_statistics
        from speechrecipe.metrics.der import diarization_errors

        name, collar = record["test_set"], self.conf.evaluate.collar_secs
        hypothesis = read_rttm(self.paths.evaluation / record["checkpoint"] / f"{name}.rttm")
        rows = read_jsonl(self.paths.test_manifest(name))
        counts = [diarization_errors([tuple(s) for s in row["segments"]], hypothesis.get(row["id"], []), collar)
                  for row in rows]
        total = [c.total for c in counts]
        parts = {"der": [c.missed + c.false_alarm + c.confusion for c in counts], "missed": [c.missed for c in counts],
                 "false_alarm": [c.false_alarm for c in counts], "confusion": [c.confusion for c in counts]}
        # the recordings and their reference, scored with this collar: what a paired comparison needs equal
        contents = contents_digest([collar, [[row["id"], row["segments"]] for row in rows]])
        return ratio_statistics("recording", [row["id"] for row in rows], {k: (v, total) for k, v in parts.items()}, contents)

    def result_columns(self) -> list[tuple[str, str, str]]:
        return [("der", "DER (%)", "pct"), ("missed", "missed (%)", "pct"), ("false_alarm", "false alarm (%)", "pct"),
                ("confusion", "confusion (%)", "pct"), ("threshold", "threshold", "float"),
                ("median_frames", "median (frames)", "int")]

    def report_extras(self, best: dict[str, dict]) -> None:
        """activity_<test set>.png: reference against hypothesis speakers of the test set's first recording."""
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.data.rttm import read_rttm
        from speechrecipe.metrics.diarization_plot import plot_activity

        for test_set, record in best.items():
            row = read_jsonl(self.paths.test_manifest(test_set))[0]
            hypothesis = read_rttm(self.paths.evaluation / record["checkpoint"] / f"{test_set}.rttm").get(row["id"], [])
            plot_activity([tuple(s) for s in row["segments"]], hypothesis, row["duration"],
                          self.paths.results / f"activity_{test_set}.png", f"{test_set}: {row['id']} ({record['checkpoint']})")

    # ----- helpers -----------------------------------------------------------------------
    @cached_property
    def frame_grid(self) -> "FrameGrid":
        """The output frames in samples: training targets and output segments follow them."""
        from speechrecipe.data.diarization_chunks import FrameGrid

        upstream = self.build_upstream(self.conf.build_upstream)
        hop, stack = upstream.hop_samples, self.conf.build_downstream.subsample
        # the head stacks `stack` frames into one output frame: a longer hop and a wider window
        return FrameGrid(self.conf.build_dataset.sample_rate, hop * stack,
                         getattr(upstream, "win_samples", hop) + (stack - 1) * hop)

    @property
    def dataset_root(self) -> Path:
        """prepare_data.dataset_root, else the mini corpus's folder in the cache (named by its settings)."""
        if self.conf.prepare_data.dataset_root is None:
            from speechrecipe.fileio import digest

            return self.paths.cache_root / MINI_FOLDER / digest(OmegaConf.to_container(self.conf.prepare_data.mini, resolve=True))
        return super().dataset_root

    def shared_cache_folders(self) -> list[str]:
        return [MINI_FOLDER] if self.conf.prepare_data.dataset_root is None else []

    def build_mini_corpus(self) -> Path:
        from speechrecipe.data.corpora.mini_diarization import MiniSpec, build_mini_corpus
        from speechrecipe.engine.cache import building

        m = self.conf.prepare_data.mini
        spec = MiniSpec(seed=m.seed, recordings=dict(m.recordings), utterances_per_recording=m.utterances_per_recording,
                        overlap_ratio=m.overlap_ratio, pause_secs=tuple(m.pause_secs))
        # several prepared folders (other prepare_data settings) may read one mini corpus: built once among them too
        with building(self.paths.cache_root, f"{MINI_FOLDER}.{self.dataset_root.name}"):
            return build_mini_corpus(Path(str(m.source)).expanduser(), self.dataset_root, spec)

    def diarize(self, task, split: str) -> dict[str, "np.ndarray"]:
        """{recording: speaker probabilities [frames, num_speakers]} of a split, by overlapping chunks."""
        from speechrecipe.data.manifest import read_jsonl

        return self.diarize_rows(task, read_jsonl(self.paths.manifest(split)), split)

    def diarize_rows(self, task, rows: list[dict], split: str) -> dict[str, "np.ndarray"]:
        """diarize() of manifest rows ({"id", "path", "sample_rate", "duration"}): `infer` calls it too."""
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.diarization_chunks import RecordingChunks
        from speechrecipe.tasks.diarization import plan_chunks, stitch

        grid, c = self.frame_grid, self.conf.evaluate
        chunk, overlap = int(c.chunk_secs * grid.sample_rate), int(c.chunk_overlap_secs * grid.sample_rate)
        rows, chunks = [dict(row) for row in rows], []
        for row in rows:
            row["samples"] = int(round(row["duration"] * grid.sample_rate))
            row["starts"] = plan_chunks(row["samples"], chunk, overlap, grid.hop_samples)
            chunks += [{"id": f"{row['id']}@{k}", "path": row["path"], "sample_rate": row["sample_rate"], "start": start,
                        "samples": min(chunk, row["samples"] - start)} for k, start in enumerate(row["starts"])]
        probs = {}
        for out in self.test_outputs(task, split, None, "diarize", dataset=ManifestDataset(chunks, RecordingChunks(grid.sample_rate))):
            probs.update({key: out["probs"][i, : int(out["lens"][i])].numpy() for i, key in enumerate(out["ids"])})
        # a frame the head completed with zeros (a partial stack at a chunk's end) is left out
        return {row["id"]: stitch([(start // grid.hop_samples, probs[f"{row['id']}@{k}"][: grid.num_frames(min(chunk, row["samples"] - start))])
                                   for k, start in enumerate(row["starts"])], grid.num_frames(row["samples"])) for row in rows}

    def segments(self, probs: dict[str, "np.ndarray"], threshold: float, median_frames: int) -> dict[str, list["Segment"]]:
        from speechrecipe.tasks.diarization import to_segments

        return {rec: to_segments(p, self.frame_grid, threshold, median_frames) for rec, p in probs.items()}

    def score(self, hypothesis: dict[str, list["Segment"]], split: str) -> dict[str, float]:
        """DER and its parts (shares of reference speech) against a split's RTTM segments."""
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.metrics.der import corpus_der

        reference = {r["id"]: [tuple(s) for s in r["segments"]] for r in read_jsonl(self.paths.manifest(split))}
        return corpus_der(reference, hypothesis, self.conf.evaluate.collar_secs).rates()

    def tuned(self, task) -> dict[str, float]:
        """threshold and median_frames with the lowest DER on the dev split (never a test split), or the
        configured ones with evaluate.tune.apply false; computed once per set of weights."""
        from speechrecipe.nn.ssl_upstream import state_digest

        from speechrecipe.engine.pairs import SHARD

        key = state_digest(task.state_dict())  # tensors and other entries alike (a frozen SSL upstream's digest)
        # torchrun ranks evaluating a pair together all tune (one whose cache held these weights would skip the
        # collective the others make in diarize)
        if self.__dict__.get("_tuned_for") != key or SHARD.size > 1:
            c = self.conf.evaluate
            grid = [(t, m) for t in c.tune.thresholds for m in c.tune.median_frames] if c.tune.apply else [(c.threshold, c.median_frames)]
            probs = self.diarize(task, "valid")
            scored = [(self.defined_on_dev(self.score(self.segments(probs, t, m), "valid"))["der"], t, m) for t, m in grid]
            der, threshold, median = min(scored, key=lambda s: s[0])
            log.info("dev split: threshold %.2f, median filter %d frames (DER %.2f %%)", threshold, median, 100 * der)
            self._tuned_for, self._tuned = key, {"threshold": float(threshold), "median_frames": int(median), "dev_der": der}
            self.keep_for_inference(key, self._tuned)
        return self._tuned

    def keep_for_inference(self, weights: str, tuned: dict) -> None:
        """target_dir/inference/<weights>.json: the post-processing `speechrecipe.load` applies to these weights."""
        from speechrecipe.engine.pairs import SHARD
        from speechrecipe.fileio import atomic_write_json
        from speechrecipe.inference.source import inference_file

        if SHARD.rank != 0:  # a pair every rank of a sharded stage 3 evaluates together: rank 0 writes
            return
        path = inference_file(self.paths.target_dir, weights, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, tuned)

    def defined_on_dev(self, metrics: dict) -> dict:
        """Validation and tuning metrics, or a DataError where the dev split's DER is undefined (nothing to
        pick valid_best or a threshold on)."""
        if metrics["der"] is None:
            from speechrecipe.errors import DataError

            raise DataError(f"prepare_data.dev_split ({self.conf.prepare_data.dev_split}): {metrics['undefined']['der']} "
                            f"with evaluate.collar_secs={self.conf.evaluate.collar_secs}; validation and tuning need it: "
                            "lower the collar or give a dev split with more reference speech")
        return metrics

    def check_config(self) -> None:
        super().check_config()
        c = self.conf.evaluate  # each key's range is ranges.py's; these relate keys or need more than a range
        checks = [("evaluate.chunk_overlap_secs", c.chunk_overlap_secs < c.chunk_secs, "keep it below evaluate.chunk_secs")]
        checks += [(f"evaluate.{k}", all(int(m) % 2 == 1 for m in v), "use odd frame counts (1: no filter)")
                   for k, v in (("median_frames", [c.median_frames]), ("tune.median_frames", c.tune.median_frames))]
        for key, ok, fix in checks + self._mini_checks():
            if not ok:
                raise ConfigError(f"{key}: {OmegaConf.select(self.conf, key)}; {fix}")

    def _mini_checks(self) -> list[tuple[str, bool, str]]:
        c = self.conf.prepare_data
        if c.dataset_root is not None:
            return []
        from speechrecipe.data.corpora.mini_diarization import SOURCE_SPLITS

        splits, pause = {c.train_split, c.dev_split, *c.test_splits}, list(c.mini.pause_secs)
        return [("prepare_data.mini.recordings", set(c.mini.recordings) <= set(SOURCE_SPLITS) and splits <= set(c.mini.recordings),
                 f"the mini corpus has splits {', '.join(SOURCE_SPLITS)}; the split keys must name its splits"),
                ("prepare_data.mini.pause_secs", len(pause) == 2 and pause[0] <= pause[1], "use [min, max] seconds")]
