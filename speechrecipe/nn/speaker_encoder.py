"""The speaker-embedding encoders (x-vector, ECAPA-TDNN) by name: asv trains them for verification,
sid and intent put a classification head on them (nn/classifiers.py)."""
from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

SPEAKER_ENCODERS = ("xvector", "ecapa")


def build_speaker_encoder(conf: DictConfig, input_dim: int) -> nn.Module:
    """conf.name (xvector | ecapa) with its sub-section's keyword arguments: [B, F, D] -> [B, embedding_dim]."""
    if conf.name == "xvector":
        from speechrecipe.nn.xvector import XVector

        return XVector(input_dim, **conf.xvector)
    from speechrecipe.nn.ecapa import ECAPATDNN

    return ECAPATDNN(input_dim, **conf.ecapa)
