"""What `speechrecipe.load` returns, one class per kind of problem: the trained task with its encoder, run
through the problem's own evaluation loop (Problem.test_outputs: the batches, padding and thread settings of
stage 3), so a test set gives stage 3's numbers.

`audio` is a file path, (samples, sample_rate), or a list of either for a batched call; a single input
gives a single result.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from speechrecipe.errors import DataError
from speechrecipe.inference.inputs import audio_inputs

log = logging.getLogger(__name__)


class LoadedModel:
    """A trained model of one problem, in evaluation mode on `device`."""

    def __init__(self, problem, task: torch.nn.Module, encoder: Any, source):
        self.problem, self.task, self.encoder, self.source = problem, task, encoder, source
        self.conf = problem.conf

    @property
    def sample_rate(self) -> int:
        """The rate the model hears; other rates are resampled, as stage 0 does."""
        return int(self.task.upstream.sample_rate)

    def prepare(self) -> None:
        """What loading adds after the weights (a tuned threshold, a cohort); nothing by default."""

    def outputs(self, rows: list[dict], step, dataset, desc: str) -> list[dict]:
        """`step` over the rows' evaluation batches (stage 3's loop)."""
        return self.problem.test_outputs(self.task, "inputs", self.encoder, desc=desc, step=step, dataset=dataset)

    def run_rows(self, rows: list[dict]) -> list[Any]:
        """One result per row, in row order."""
        raise NotImplementedError

    def _apply(self, audio: Any) -> Any:
        inputs, batched = audio_inputs(audio, self.sample_rate)
        with inputs:
            found = self.run_rows(inputs.rows)
        return found if batched else found[0]


class Classifier(LoadedModel):
    """ks, sid, intent: `classify(audio)` → per label field the predicted label and every label's probability."""

    def dataset(self, rows: list[dict]):
        from speechrecipe.data.clips import Clip
        from speechrecipe.data.dataset import ManifestDataset

        return ManifestDataset(rows, Clip(int(self.conf.build_dataset.sample_rate)))

    def logits(self, rows: list[dict]) -> tuple[list[str], list[torch.Tensor]]:
        """(ids, one [N, classes] logits tensor per field) in the evaluation loop's order."""
        from speechrecipe.data.batch_keys import upstream_input

        outs = self.outputs(rows, lambda b: {"ids": b["ids"], "logits": self.task.logits(*upstream_input(b))},
                            self.dataset(rows), "classify")
        ids = [utt for out in outs for utt in out["ids"]]
        return ids, [torch.cat([out["logits"][k].float() for out in outs]) for k in range(len(self.encoder))]

    def run_rows(self, rows: list[dict]) -> list[dict]:
        ids, logits = self.logits(rows)
        position = {utt: i for i, utt in enumerate(ids)}
        probs = [torch.softmax(x, dim=-1) for x in logits]
        results = []
        for row in rows:
            i, result = position[row["id"]], {"id": row["id"]}
            for (field, encoder), p in zip(self.encoder.items(), probs):
                result[field] = encoder.decode(int(p[i].argmax()))
                result[f"{field}_probs"] = {label: float(p[i, k]) for k, label in enumerate(encoder.labels)}
            results.append(result)
        return results

    def classify(self, audio: Any) -> dict | list[dict]:
        """{"id", <field>: label, "<field>_probs": {label: probability}} per input."""
        return self._apply(audio)


class SpeakerEmbedder(LoadedModel):
    """asv: `embed(audio)` → embeddings; `score(a, b)` → cosine scores, AS-normalised when the run was."""

    cohort: torch.Tensor | None = None
    top_n = 0

    def prepare(self) -> None:
        if self.conf.evaluate.score_norm != "asnorm":
            return
        from speechrecipe.engine.checkpoint import load
        from speechrecipe.inference.source import inference_file
        from speechrecipe.nn.ssl_upstream import state_digest

        path = inference_file(self.source.root, state_digest(self.task.state_dict()), ".cohort.pt")
        if not path.is_file():
            raise DataError(f"{path}: missing; evaluate.score_norm=asnorm scores with the cohort stage 3 embeds: run "
                            f"stage 3 (--start 3) for checkpoint {self.source.checkpoint} first")
        saved = load(path)
        self.cohort, self.top_n = saved["cohort"], int(saved["top_n"])

    def run_rows(self, rows: list[dict]) -> list[torch.Tensor]:
        outs = self.outputs(rows, None, self.problem.whole_utterances(rows), "embed")
        found = {utt: emb.float() for out in outs for utt, emb in zip(out["ids"], out["embeddings"])}
        return [found[row["id"]] for row in rows]

    def embed(self, audio: Any) -> torch.Tensor:
        """The speaker embedding [D] of one input, or [N, D] of a list (before length normalisation)."""
        found = self._apply(audio)
        return torch.stack(found) if isinstance(found, list) else found

    def score(self, a: Any, b: Any) -> float | torch.Tensor:
        """Cosine score of a against b (each a path, samples or embedding; lists score pair by pair)."""
        pairs = isinstance(a, list)
        left, right = (a, b) if pairs else ([a], [b])
        if len(left) != len(right):
            raise DataError(f"score: {len(left)} enrolment inputs against {len(right)} test inputs; give pairs")
        table = torch.cat([self._embeddings(left), self._embeddings(right)])
        n = len(left)
        scores = self.score_table(table, torch.arange(n), torch.arange(n, 2 * n))
        return scores if pairs else float(scores[0])

    def score_table(self, embeddings: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        """Scores of (enroll, test) index pairs into `embeddings`, as stage 3 scores a trial list."""
        import torch.nn.functional as F

        from speechrecipe.tasks.scoring import as_norm, cosine_scores

        table = F.normalize(embeddings.float(), dim=1)
        scores = cosine_scores(table, enroll, test)
        return scores if self.cohort is None else as_norm(scores, table, enroll, test, self.cohort, self.top_n)

    def _embeddings(self, items: list) -> torch.Tensor:
        done = [x for x in items if isinstance(x, torch.Tensor)]
        if len(done) == len(items):
            return torch.stack([x.float() for x in items])
        if done:
            raise DataError("score: give either audio or embeddings on one side, not both")
        return self.embed(list(items))


class Transcriber(LoadedModel):
    """asr: `transcribe(audio)` → text, decoded as the run decoded (beam search, with the LM when configured)."""

    decoder = "beam"

    def prepare(self) -> None:
        lm = self.conf.evaluate.lm
        if lm.path:
            for key in ("path", "lexicon"):
                if lm[key] and not Path(lm[key]).is_absolute():
                    lm[key] = str(self.source.root / lm[key])
            if not lm.lexicon:
                lm.lexicon = str(self.source.root / "lexicon.txt")
            if not Path(lm.lexicon).is_file():
                raise DataError(f"{lm.lexicon}: missing; the LM decoder spells its words with the lexicon stage 3 "
                                "writes: run stage 3 (--start 3) first")
            self.decoder = "lm"
        self.decoders = self.problem.build_decoders(self.conf.evaluate, self.encoder, names=(self.decoder,))

    def run_rows(self, rows: list[dict]) -> list[str]:
        from speechrecipe.data.dataset import ManifestDataset
        from speechrecipe.data.preprocessors import TranscribedUtterance
        from speechrecipe.tasks.asr import decode_batch

        dataset = ManifestDataset(rows, TranscribedUtterance(int(self.conf.build_dataset.sample_rate)))
        outs = self.outputs(rows, lambda b: decode_batch(self.task.test_step(b), self.decoders), dataset, "decode")
        found = {utt: text for out in outs for utt, text in zip(out["ids"], out[self.decoder])}
        return [found[row["id"]] for row in rows]

    def transcribe(self, audio: Any) -> str | list[str]:
        return self._apply(audio)


class Diarizer(LoadedModel):
    """diarization: `diarize(audio)` → [(start, end, speaker)] with the threshold and median filter stage 3 tuned."""

    threshold: float = 0.5
    median_frames: int = 1

    def prepare(self) -> None:
        c = self.conf.evaluate
        self.threshold, self.median_frames = float(c.threshold), int(c.median_frames)
        if not c.tune.apply:
            return
        import json

        from speechrecipe.inference.source import inference_file
        from speechrecipe.nn.ssl_upstream import state_digest

        path = inference_file(self.source.root, state_digest(self.task.state_dict()), ".json")
        if not path.is_file():
            raise DataError(f"{path}: missing; stage 3 tunes the threshold and median filter on the dev split: run "
                            f"stage 3 (--start 3) for checkpoint {self.source.checkpoint} first")
        tuned = json.loads(path.read_text())
        self.threshold, self.median_frames = float(tuned["threshold"]), int(tuned["median_frames"])

    def run_rows(self, rows: list[dict]) -> list[list]:
        probs = self.problem.diarize_rows(self.task, rows, "inputs")
        found = self.problem.segments(probs, self.threshold, self.median_frames)
        return [found[row["id"]] for row in rows]

    def diarize(self, audio: Any) -> list | list[list]:
        return self._apply(audio)
