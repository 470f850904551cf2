"""The utterance-classification task: one or several label fields, one head each, summed losses."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechrecipe.data.batch_keys import upstream_input
from speechrecipe.data.encoder import LabelEncoder
from speechrecipe.data.tsv import write_tsv
from speechrecipe.metrics.accuracy import (accuracy, balanced_accuracy, confusion_matrix, plot_confusion, top_k_accuracy,
                                           write_confusion_csv)


class UtteranceClassificationTask(nn.Module):
    """upstream → featurizer → downstream (one logits tensor per field) → cross-entropy summed over fields.

    Batches carry "labels" [B, num_fields] (class indices, the fields in build_encoder.fields order).
    With `specaugment` (nn/specaugment.py SeededSpecAugment), training batches are masked from their
    "seeds" [B] between the featurizer and the downstream.
    """

    def __init__(self, upstream: nn.Module, featurizer: nn.Module, downstream: nn.Module, fields: list[str],
                 specaugment: nn.Module | None = None):
        super().__init__()
        self.upstream, self.featurizer, self.downstream = upstream, featurizer, downstream
        self.fields = list(fields)
        self.specaugment = specaugment

    def logits(self, wavs: Tensor, wav_lens: Tensor, seeds: Tensor | None = None) -> list[Tensor]:
        hidden, lens = self.upstream(wavs, wav_lens)
        feats, lens = self.featurizer(hidden, lens)
        if self.specaugment is not None and self.training and seeds is not None:
            feats = self.specaugment(feats, lens, seeds)
        return self.downstream(feats, lens)

    def forward(self, batch: dict) -> dict:
        """The train step."""
        logits, labels = self.logits(*upstream_input(batch), batch.get("seeds")), batch["labels"]
        loss = sum(F.cross_entropy(out, labels[:, k]) for k, out in enumerate(logits))
        correct = torch.stack([out.argmax(-1) == labels[:, k] for k, out in enumerate(logits)]).all(0)
        return {"loss": loss, "accuracy": correct.float().mean()}

    def test_step(self, batch: dict) -> dict:
        return {"ids": batch["ids"], "logits": self.logits(*upstream_input(batch)), "labels": batch["labels"]}

    valid_step = test_step


def gather(outputs: list[dict]) -> tuple[list[str], list[Tensor], Tensor]:
    """test_step outputs → (ids, one [N, C_k] logits tensor per field, labels [N, num_fields])."""
    ids = [utt for out in outputs for utt in out["ids"]]
    num_fields = len(outputs[0]["logits"])
    logits = [torch.cat([out["logits"][k].float() for out in outputs]) for k in range(num_fields)]
    return ids, logits, torch.cat([out["labels"] for out in outputs])


def classification_metrics(logits: list[Tensor], labels: Tensor, fields: list[str],
                           top_k: list[int], balanced: bool = False) -> dict[str, float]:
    """"accuracy": every field right (SUPERB's IC metric; plain accuracy for one field),
    "accuracy_<field>" per field when there are several, "top<k>_accuracy[_<field>]" for each k,
    and with `balanced` "balanced_accuracy[_<field>]" (mean per-class recall)."""
    metrics: dict[str, float] = {}
    correct = torch.stack([out.argmax(-1) == labels[:, k] for k, out in enumerate(logits)]).all(0)
    metrics["accuracy"] = correct.double().mean().item()
    for k, (field, out) in enumerate(zip(fields, logits)):
        suffix = f"_{field}" if len(fields) > 1 else ""
        if len(fields) > 1:
            metrics[f"accuracy{suffix}"] = accuracy(out.argmax(-1), labels[:, k])
        if balanced:
            metrics[f"balanced_accuracy{suffix}"] = balanced_accuracy(out.argmax(-1), labels[:, k])
        for n in top_k:
            metrics[f"top{n}_accuracy{suffix}"] = top_k_accuracy(out, labels[:, k], min(int(n), out.shape[1]))
    return metrics


def write_predictions(prefix: Path, ids: list[str], logits: list[Tensor], labels: Tensor,
                      encoders: dict[str, LabelEncoder], confusion: bool) -> None:
    """<prefix>.predictions.tsv (true and predicted class per field), and with `confusion`
    <prefix>.confusion_<field>.csv and .png per field."""
    predicted = [out.argmax(-1) for out in logits]
    header = ["id", *(name for field in encoders for name in (field, f"{field}_predicted"))]
    rows = ([utt, *(c for k, e in enumerate(encoders.values())
                    for c in (e.decode(int(labels[i, k])), e.decode(int(predicted[k][i]))))]
            for i, utt in enumerate(ids))
    write_tsv(f"{prefix}.predictions.tsv", rows, header)
    if confusion:
        for k, (field, encoder) in enumerate(encoders.items()):
            matrix = confusion_matrix(predicted[k], labels[:, k], len(encoder))
            write_confusion_csv(matrix, encoder.labels, Path(f"{prefix}.confusion_{field}.csv"))
            plot_confusion(matrix, encoder.labels, Path(f"{prefix}.confusion_{field}.png"))
