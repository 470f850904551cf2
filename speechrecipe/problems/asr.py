"""Speech recognition with CTC (asr). Imports no torch at module level: `speechrecipe stages asr` stays fast."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from omegaconf import DictConfig

from speechrecipe.engine.paths import test_manifest_name
from speechrecipe.engine.recipe import Recipe
from speechrecipe.errors import ConfigError
from speechrecipe.nn.catalog import PRECOMPUTED, UPSTREAM_NAMES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TOKENIZER = "tokenizer.json"
LEXICON = "lexicon.txt"  # in target_dir (stage 3 writes it; `load` reads it): the LM decoder's words, spelled in tokens


class ASR(Recipe):
    """Speech recognition: a CTC model over characters, words or subwords; greedy and beam-search decoding."""

    conf_name = "asr"
    description = "speech recognition on LibriSpeech: CTC (BiLSTM/Conformer), greedy and prefix beam search, WER/CER"

    metric, higher_better, results_title = "beam_wer", False, "Speech recognition results (CTC)"
    inference = "speechrecipe.inference.models:Transcriber"
    choices = {"build_upstream.name": UPSTREAM_NAMES + (PRECOMPUTED,), "build_downstream.kind": ("lstm", "conformer"),
               "build_tokenizer.kind": ("char", "word", "subword"), "build_tokenizer.subword_model": ("unigram", "bpe"),
               "prepare_data.check_audio": ("full", "header"), "train.valid_metric": ("wer", "cer")}

    stage_texts = {
        0: "parse LibriSpeech splits into train/valid/test manifests with transcripts",
        1: "fit the tokenizer on the training transcripts (blank = 0)",
        2: "train the CTC model; keep valid_best by validation WER (greedy decoding)",
        3: "decode each test set with every checkpoint (greedy, beam search): WER, CER, hypothesis files",
        4: "valid_best per test set with 95 % intervals by utterance, best on test by beam-search WER beside it: "
           "results.json, README.md",
    }
    encoder_name = "tokenizer"
    training_reads = ("train.jsonl", "valid.jsonl", TOKENIZER)
    test_set_keys = ("prepare_data.test_sets",)
    config_sections = ("build_tokenizer",)
    engine_keys = ("build_upstream.precomputed", "evaluate.beam_size", "evaluate.lm")

    def evaluate_checkpoints(self) -> list[Path]:
        """With an LM and no lexicon, the training words spelled in tokens become the lexicon first."""
        if self.conf.evaluate.lm.path and not self.conf.evaluate.lm.lexicon:
            from speechrecipe.data.manifest import read_jsonl
            from speechrecipe.decoding.lm import write_lexicon

            rows = read_jsonl(self.paths.manifest("train"))
            words = (w for r in rows for w in r["transcript"].split())
            write_lexicon(self.paths.artifact(LEXICON), words, self.load_encoder())
        return super().evaluate_checkpoints()

    # ----- hooks ---------------------------------------------------------------------------
    def prepare_corpus(self, out_dir: Path) -> dict:
        from speechrecipe.data.corpora.librispeech import prepare_librispeech

        c = self.conf.prepare_data
        return prepare_librispeech(out_dir=out_dir, train_sets=list(c.train_sets), valid_sets=list(c.valid_sets),
                                   test_sets=list(c.test_sets), **self.corpus_options())

    def protocol_files(self) -> list[Path]:
        """The transcripts of every split used (<split>/<speaker>/<chapter>/*.trans.txt)."""
        c = self.conf.prepare_data
        splits = {str(s) for s in [*c.train_sets, *c.valid_sets, *c.test_sets]}
        return [t for split in sorted(splits) for t in sorted((self.dataset_root / split).glob("*/*/*.trans.txt"))]

    def test_sets(self) -> list[str]:
        """The test sets stage 0 found (absent ones were skipped)."""
        import json

        summary = self.paths.cache / "summary.json"
        if not summary.is_file():
            raise ConfigError(f"no prepared data in {self.paths.cache}; run with --start 0")
        return list(json.loads(summary.read_text())["test_sets"])

    def build_encoder(self, conf: DictConfig, rows: list[dict]):
        """The tokenizer (its section is build_tokenizer)."""
        return self.build_tokenizer(self.conf.build_tokenizer, [r["transcript"] for r in rows])

    def save_encoder(self, encoder) -> list[Path]:
        encoder.save(self.paths.artifact(TOKENIZER))
        log.info("%s tokenizer: %d tokens", encoder.kind, len(encoder))
        return [self.paths.artifact(TOKENIZER)]

    def load_encoder(self):
        from speechrecipe.data.tokenizer import load_tokenizer

        return load_tokenizer(self.paths.artifact(TOKENIZER))

    def validate(self, task, encoder) -> dict[str, float]:
        greedy = self.build_decoders(self.conf.evaluate, encoder, names=("greedy",))
        return self.recognize(task, "valid", greedy)["greedy"]

    def evaluate_test_set(self, task, encoder, test_set: str, out_dir: Path) -> dict[str, float]:
        decoders = self.build_decoders(self.conf.evaluate, encoder)
        scores = self.recognize(task, test_manifest_name(test_set), decoders, out_dir / test_set)
        return {f"{name}_{key}": value for name, metrics in scores.items() for key, value in metrics.items()}

    def unit_statistics(self, record: dict):
        """WER and CER of each decoder, resampled by utterance, from the hypothesis files of stage 3."""
        from speechrecipe.tasks.unit_statistics import recognition_units

        prefix = self.paths.evaluation / record["checkpoint"] / record["test_set"]
        return recognition_units(prefix, ["greedy", "beam", "lm"])

    def result_columns(self) -> list[tuple[str, str, str]]:
        columns = [("greedy_wer", "WER greedy (%)", "pct"), ("beam_wer", "WER beam (%)", "pct"),
                   ("beam_cer", "CER beam (%)", "pct"), ("beam_wer_substitutions", "S", "int"),
                   ("beam_wer_deletions", "D", "int"), ("beam_wer_insertions", "I", "int"),
                   ("beam_words", "words", "int")]
        if self.conf.evaluate.lm.path:
            columns.insert(3, ("lm_wer", "WER beam+LM (%)", "pct"))
        return columns

    # ----- builders --------------------------------------------------------------------
    def build_tokenizer(self, conf: DictConfig, texts: list[str]):
        from speechrecipe.data.tokenizer import build_tokenizer

        return build_tokenizer(conf.kind, texts, conf.vocab_size, conf.subword_model)

    def build_dataset(self, conf: DictConfig, split: str, encoder=None):
        """Whole utterances; with the tokenizer (training) also their token ids."""
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.frames import TranscribedFrames, precomputed
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.data.preprocessors import TranscribedUtterance

        rows = read_jsonl(self.paths.manifest(split))
        tokenize = encoder.encode if encoder else None
        shards = precomputed(self.conf.build_upstream, rows)
        if shards is not None:  # dumped features instead of audio: whole utterances in frames
            return ManifestDataset(rows, TranscribedFrames(shards, tokenize=tokenize))
        return ManifestDataset(rows, TranscribedUtterance(conf.sample_rate, tokenize=tokenize))

    def build_batch_sampler(self, conf: DictConfig, dataset):
        from speechrecipe.data.sampler import EpochBatchSampler

        budget = int(conf.max_batch_secs * dataset.preprocessor.inputs_per_second)
        return EpochBatchSampler(dataset.lengths(), seed=self.conf.train.seed, max_batch_length=budget)

    def build_downstream(self, conf: DictConfig, input_dim: int, vocab_size: int) -> "torch.nn.Module":
        from speechrecipe.nn.heads import CTCHead

        return CTCHead(input_dim, vocab_size, hidden_dim=conf.hidden_dim, num_layers=conf.num_layers,
                       bidirectional=conf.bidirectional, dropout=conf.dropout, kind=conf.kind,
                       subsample=conf.subsample, **conf.conformer)

    def build_task(self, conf: DictConfig, encoder) -> "torch.nn.Module":
        """The CTC model over the tokenizer's vocabulary (the encoder is the tokenizer)."""
        from speechrecipe.nn.specaugment import SpecAugment
        from speechrecipe.tasks.asr import CTCTask

        upstream = self.build_upstream(self.conf.build_upstream)
        featurizer = self.build_featurizer(self.conf.build_featurizer, upstream)
        downstream = self.build_downstream(self.conf.build_downstream, featurizer.output_dim, len(encoder))
        frame_ms = 1000 * upstream.hop_samples / upstream.sample_rate * self.conf.build_downstream.subsample
        (log.warning if frame_ms > 60 else log.info)(
            "CTC emits one frame every %g ms (upstream hop x build_downstream.subsample=%d)%s", frame_ms,
            self.conf.build_downstream.subsample, "; too few frames for fast speech: lower the subsample" if frame_ms > 60 else "")
        masks = {k: v for k, v in conf.specaugment.items() if k != "apply"}
        return CTCTask(upstream, featurizer, downstream, SpecAugment(**masks) if conf.specaugment.apply else None)

    def build_decoders(self, conf: DictConfig, tokenizer, names=("greedy", "beam", "lm")) -> dict[str, Callable]:
        """{name: log-probs [T, V] → text} among `names`: greedy, beam, and lm when evaluate.lm.path is set."""
        from speechrecipe.decoding.ctc import beam_best, greedy

        decoders = {"greedy": lambda lp: tokenizer.decode(greedy(lp)),
                    "beam": lambda lp: tokenizer.decode(beam_best(lp, conf.beam_size))}
        if conf.lm.path and "lm" in names:
            from speechrecipe.decoding.lm import build_lm_decoder

            lexicon = Path(conf.lm.lexicon).expanduser() if conf.lm.lexicon else self.paths.artifact(LEXICON)
            decoders["lm"] = build_lm_decoder(tokenizer, Path(conf.lm.path).expanduser(), lexicon, conf.lm.weight,
                                              conf.lm.word_score, conf.lm.beam_size)
        return {name: decode for name, decode in decoders.items() if name in names}

    # ----- helpers -----------------------------------------------------------------------
    def recognize(self, task, split: str, decoders: dict[str, Callable], hyp_prefix: Path | None = None) -> dict[str, dict]:
        """Decode a split with each decoder; {decoder: WER/CER with S/D/I}; `<prefix>.<decoder>.hyp` files."""
        from speechrecipe.data.manifest import read_jsonl
        from speechrecipe.data.tokenizer import normalize
        from speechrecipe.tasks.asr import decode_batch, score_hypotheses, write_hypotheses

        outputs = self.test_outputs(task, split, None, "decode", step=lambda batch: decode_batch(task.test_step(batch), decoders))
        refs = {r["id"]: normalize(r["transcript"]) for r in read_jsonl(self.paths.manifest(split))}
        hyps = {name: {utt: text for out in outputs for utt, text in zip(out["ids"], out[name])} for name in decoders}
        if hyp_prefix is not None:
            write_hypotheses(hyp_prefix, refs, hyps)
        return {name: score_hypotheses(refs, found) for name, found in hyps.items()}

    def check_config(self) -> None:
        super().check_config()
        if self.conf.build_tokenizer.kind == "subword":
            from speechrecipe.data.tokenizer import require_sentencepiece

            require_sentencepiece()  # a missing optional package is reported before stage 0
        lm = self.conf.evaluate.lm
        for key in ("path", "lexicon"):
            if lm[key] and not Path(lm[key]).expanduser().is_file():
                raise ConfigError(f"evaluate.lm.{key}: {lm[key]} does not exist")
        if lm.path and self.conf.build_tokenizer.kind != "char":
            raise ConfigError("evaluate.lm.path: the LM decoder needs build_tokenizer.kind=char; set evaluate.lm.path=null")
