"""The speech-recognition task: upstream → featurizer → (SpecAugment in training) → CTC head, CTC loss."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from speechrecipe.data.batch_keys import upstream_input
from speechrecipe.fileio import atomic_open
from speechrecipe.metrics.wer import error_rate


class CTCTask(nn.Module):
    """forward(batch) is the train step; test_step gives per-frame log-probabilities for decoding."""

    def __init__(self, upstream: nn.Module, featurizer: nn.Module, downstream: nn.Module,
                 specaugment: nn.Module | None = None):
        super().__init__()
        self.upstream, self.featurizer, self.downstream = upstream, featurizer, downstream
        self.specaugment = specaugment

    def log_probs(self, wavs: torch.Tensor, wav_lens: torch.Tensor, augment: bool = False):
        """([B, F', vocab] log-probabilities, [B] valid frames)."""
        hidden, lens = self.upstream(wavs, wav_lens)
        feats, lens = self.featurizer(hidden, lens)
        if augment and self.specaugment is not None:
            feats = self.specaugment(feats)
        return self.downstream(feats, lens)

    def forward(self, batch: dict) -> dict:
        """The train step: CTC loss, averaged over utterances after dividing by target lengths."""
        log_probs, lens = self.log_probs(*upstream_input(batch), augment=self.training)
        loss = F.ctc_loss(log_probs.float().transpose(0, 1), batch["targets"], lens, batch["target_lens"],
                          blank=0, reduction="mean", zero_infinity=True)
        return {"loss": loss}

    def test_step(self, batch: dict) -> dict:
        log_probs, lens = self.log_probs(*upstream_input(batch))
        return {"ids": batch["ids"], "log_probs": log_probs, "lens": lens}


def decode_batch(outputs: dict, decoders: dict[str, Callable]) -> dict:
    """{"ids", <decoder>: [text per utterance]} from a test_step's log-probabilities."""
    log_probs, lens = outputs["log_probs"].float().cpu(), outputs["lens"].cpu().tolist()
    found = {"ids": outputs["ids"]}
    for name, decode in decoders.items():
        found[name] = [decode(log_probs[i, :n]) for i, n in enumerate(lens)]
    return found


def score_hypotheses(refs: dict[str, str], hyps: dict[str, str]) -> dict[str, float]:
    """Corpus WER and CER with their substitution/deletion/insertion counts; a missing hypothesis is empty."""
    ids = sorted(refs)
    scores: dict[str, float] = {}
    for unit, key in (("word", "wer"), ("char", "cer")):
        result = error_rate([refs[u] for u in ids], [hyps.get(u, "") for u in ids], unit)
        scores[key] = result[key]
        for count in ("substitutions", "deletions", "insertions"):
            scores[f"{key}_{count}"] = result[count]
        scores["words" if unit == "word" else "chars"] = result["ref_len"]
    return scores


def write_hypotheses(prefix: Path, refs: dict[str, str], hyps: dict[str, dict[str, str]]) -> None:
    """`<prefix>.ref` and `<prefix>.<decoder>.hyp`: one `<id> <text>` line per utterance, sorted by id."""
    for suffix, texts in [("ref", refs)] + [(f"{name}.hyp", found) for name, found in hyps.items()]:
        with atomic_open(prefix.with_name(f"{prefix.name}.{suffix}")) as handle:
            handle.writelines(f"{utt} {texts.get(utt, '')}".rstrip() + "\n" for utt in sorted(refs))
