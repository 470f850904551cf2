"""Utterance classifiers by name, for ks, sid and intent: frame features [B, F, D] and lengths ->
one logits tensor [B, C_k] per label field.

- probe: SUPERB's downstream (a per-frame projection, pooling, one linear layer per field);
  a probe of what an upstream's features hold, weak on filterbanks by design.
- tcresnet: TC-ResNet (nn/tcresnet.py), a small keyword-spotting model of 1D convolutions.
- bcresnet: BC-ResNet (nn/bcresnet.py), more accurate per parameter, ~10x slower to train on a CPU.
- xvector | ecapa: a speaker-embedding encoder of asv (nn/speaker_encoder.py) with a linear layer
  per field on its embedding (`head: relu_bn`: on the embedding through ReLU and BatchNorm, as
  Kaldi's x-vector segment layer feeds the next; the embedding itself stays the layer's output).
"""
from __future__ import annotations

from omegaconf import DictConfig
from torch import Tensor, nn

from speechrecipe.nn.speaker_encoder import SPEAKER_ENCODERS, build_speaker_encoder

CLASSIFIERS = ("probe", "tcresnet", "bcresnet") + SPEAKER_ENCODERS


class EmbeddingClassifier(nn.Module):
    """An utterance encoder ([B, F, D] -> [B, E], with `embedding_dim`) and one linear layer per field,
    on the embedding itself (head linear) or on it through ReLU and BatchNorm (head relu_bn)."""

    def __init__(self, encoder: nn.Module, num_classes: list[int], head: str = "linear"):
        super().__init__()
        self.encoder = encoder
        dim = encoder.embedding_dim
        self.head = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(dim)) if head == "relu_bn" else nn.Identity()
        self.classifiers = nn.ModuleList(nn.Linear(encoder.embedding_dim, n) for n in num_classes)

    def forward(self, feats: Tensor, lens: Tensor) -> list[Tensor]:
        embedding = self.head(self.encoder(feats, lens))
        return [classifier(embedding) for classifier in self.classifiers]


def build_classifier(conf: DictConfig, input_dim: int, num_classes: list[int]) -> nn.Module:
    """The classifier conf.name, with the keyword arguments of its sub-section."""
    if conf.name == "probe":
        from speechrecipe.nn.heads import UtteranceClassifier

        return UtteranceClassifier(input_dim, num_classes, **conf.probe)
    if conf.name == "tcresnet":
        from speechrecipe.nn.tcresnet import TCResNet

        return TCResNet(input_dim, num_classes, **conf.tcresnet)
    if conf.name == "bcresnet":
        from speechrecipe.nn.bcresnet import BCResNet

        return BCResNet(input_dim, num_classes, **conf.bcresnet)
    return EmbeddingClassifier(build_speaker_encoder(conf, input_dim), num_classes, conf.get("head", "linear"))
