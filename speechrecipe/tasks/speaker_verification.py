"""The speaker-verification task: train as speaker classification, test as embedding extraction."""
from __future__ import annotations

import torch
from torch import nn

from speechrecipe.data.batch_keys import upstream_input


class SpeakerVerificationTask(nn.Module):
    """upstream → featurizer → downstream (embedding) → classification loss."""

    def __init__(self, upstream: nn.Module, featurizer: nn.Module, downstream: nn.Module, loss: nn.Module):
        super().__init__()
        self.upstream, self.featurizer, self.downstream, self.loss = upstream, featurizer, downstream, loss

    def embed(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        hidden, lens = self.upstream(wavs, wav_lens)
        feats, lens = self.featurizer(hidden, lens)
        return self.downstream(feats, lens)

    def forward(self, batch: dict) -> dict:
        """The train step."""
        loss, logits = self.loss(self.embed(*upstream_input(batch)), batch["labels"])
        return {"loss": loss, "accuracy": (logits.argmax(-1) == batch["labels"]).float().mean()}

    def test_step(self, batch: dict) -> dict:
        return {"ids": batch["ids"], "embeddings": self.embed(*upstream_input(batch))}

    valid_step = test_step
