"""Speaker-classification losses; each owns its class weights.

forward(embeddings [B, E], labels [B]) -> (mean loss, logits [B, num_classes]). The logits
carry no margin, so their argmax is the prediction to score accuracy with.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechrecipe.errors import ConfigError


class SoftmaxLoss(nn.Module):
    """Linear layer + cross-entropy."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.classifier(embeddings)
        return F.cross_entropy(logits, labels), logits


class _CosineLoss(nn.Module):
    """Cosine similarity to unit-norm class weights, scaled; subclasses add the margin."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: float, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.margin = margin
        self.scale = scale

    def cosine(self, embeddings: Tensor) -> Tensor:
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def _target_logit(self, cosine: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        cosine = self.cosine(embeddings)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        with_margin = torch.where(target, self._target_logit(cosine), cosine)
        loss = F.cross_entropy(self.scale * with_margin, labels)
        return loss, self.scale * cosine


class AMSoftmaxLoss(_CosineLoss):
    """Additive margin softmax (CosFace): the target logit is s * (cos(theta) - m)."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__(embedding_dim, num_classes, margin, scale)

    def _target_logit(self, cosine: Tensor) -> Tensor:
        return cosine - self.margin


class AAMSoftmaxLoss(_CosineLoss):
    """Additive angular margin softmax (ArcFace): the target logit is s * cos(theta + m).

    cos(theta + m) = cos*cos(m) - sin*sin(m) is only monotonic in theta while theta + m <= pi;
    beyond that (cos <= cos(pi - m)) the target logit is cos - m*sin(m), the usual CosFace-like
    fallback, unless `easy_margin` applies the margin only where cos > 0.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: float = 0.2,
        scale: float = 30.0,
        easy_margin: bool = False,
    ):
        super().__init__(embedding_dim, num_classes, margin, scale)
        self.easy_margin = easy_margin
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def _target_logit(self, cosine: Tensor) -> Tensor:
        # the floor keeps d sin / d cos finite at cos = +-1
        sine = (1.0 - cosine.square()).clamp(min=1e-7).sqrt()
        phi = cosine * self.cos_m - sine * self.sin_m
        if self.easy_margin:
            return torch.where(cosine > 0, phi, cosine)
        return torch.where(cosine > self.threshold, phi, cosine - self.fallback)


LOSSES: dict[str, type[nn.Module]] = {
    "softmax": SoftmaxLoss,
    "amsoftmax": AMSoftmaxLoss,
    "aamsoftmax": AAMSoftmaxLoss,
}


def build_loss(
    name: str,
    embedding_dim: int,
    num_classes: int,
    margin: float = 0.2,
    scale: float = 30.0,
    easy_margin: bool = False,
) -> nn.Module:
    """A loss by name; "softmax" ignores margin and scale, only "aamsoftmax" reads easy_margin."""
    if name == "softmax":
        return SoftmaxLoss(embedding_dim, num_classes)
    if name == "amsoftmax":
        return AMSoftmaxLoss(embedding_dim, num_classes, margin=margin, scale=scale)
    if name == "aamsoftmax":
        return AAMSoftmaxLoss(embedding_dim, num_classes, margin=margin, scale=scale, easy_margin=easy_margin)
    raise ConfigError(f"loss {name!r}: unknown; choose one of {', '.join(LOSSES)}")
