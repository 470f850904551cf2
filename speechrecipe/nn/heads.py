"""Downstream heads over frame features [B, F, D]: utterance classification, CTC and frame tagging."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from speechrecipe.errors import ConfigError
from speechrecipe.nn.pooling import build_pooling, length_mask


class UtteranceClassifier(nn.Module):
    """Per-frame linear projection, pooling, one linear classifier per label field.

    Mean pooling makes this a linear probe, as in SUPERB. `num_classes` as a list gives
    one head per field (e.g. intent action/object/location) over the shared pooled vector.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int | list[int],
        pooling: str = "mean",
        hidden_dim: int = 256,
    ):
        super().__init__()
        sizes = [num_classes] if isinstance(num_classes, int) else list(num_classes)
        self.projector = nn.Linear(input_dim, hidden_dim)
        self.pooling = build_pooling(pooling, hidden_dim)
        self.classifiers = nn.ModuleList(nn.Linear(self.pooling.output_dim, n) for n in sizes)

    def forward(self, feats: Tensor, lens: Tensor) -> list[Tensor]:
        """feats [B, F, D], lens [B] -> one logits [B, num_classes_k] per field (a list even for one)."""
        pooled = self.pooling(self.projector(feats), lens)
        return [classifier(pooled) for classifier in self.classifiers]


def stack_frames(feats: Tensor, lens: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Concatenate each `factor` consecutive frames: [B, F, D] -> [B, ceil(F/factor), factor*D].

    A partial last group is completed with zeros, also inside a padded batch, so the result
    does not depend on padding.
    """
    if factor == 1:
        return feats, lens
    batch, frames, dim = feats.shape
    feats = feats * length_mask(lens, frames).unsqueeze(-1).to(feats.dtype)
    feats = F.pad(feats, (0, 0, 0, (-frames) % factor))
    out_lens = torch.div(lens + factor - 1, factor, rounding_mode="floor")
    return feats.reshape(batch, -1, factor * dim), out_lens


class _FrameMask:
    """Forward pre-hook that multiplies a conv's input [B, C, F] by the current frame mask.

    A plain object rather than a closure, so deepcopy and pickle carry it with the model.
    """

    def __init__(self) -> None:
        self.mask: Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        return None if self.mask is None else (args[0] * self.mask,)


class CTCHead(nn.Module):
    """Frame stacking, a BiLSTM or Conformer encoder, linear to the vocabulary, log-softmax.

    forward: feats [B, F, D], lens -> (log-probs [B, F', vocab_size], out_lens = ceil(lens / subsample)),
    F' = max(out_lens).
    `num_heads`, `ffn_dim` and `conv_kernel_size` are read only by kind="conformer".
    """

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        hidden_dim: int = 256,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.1,
        kind: str = "lstm",
        subsample: int = 1,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        conv_kernel_size: int = 31,
    ):
        super().__init__()
        if subsample < 1:
            raise ConfigError(f"subsample={subsample}: use 1 (no stacking) or more frames per step")
        self.kind = kind
        self.subsample = subsample
        stacked_dim = input_dim * subsample
        if kind == "lstm":
            self.encoder = nn.LSTM(
                stacked_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
            )
            encoder_dim = hidden_dim * (2 if bidirectional else 1)
        elif kind == "conformer":
            self.input_proj = nn.Linear(stacked_dim, hidden_dim)
            self.encoder = torchaudio.models.Conformer(
                input_dim=hidden_dim, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
                depthwise_conv_kernel_size=conv_kernel_size, dropout=dropout,
            )
            self._mask_depthwise_inputs()
            encoder_dim = hidden_dim
        else:
            raise ConfigError(f"kind {kind!r}: unknown; choose lstm or conformer")
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(encoder_dim, vocab_size)

    def _mask_depthwise_inputs(self) -> None:
        """torchaudio's depthwise convolutions read padded frames near each utterance's end;
        zero those frames first so padded and unpadded batches agree."""
        self._frame_mask = _FrameMask()
        for module in self.encoder.modules():
            if isinstance(module, nn.Conv1d) and module.groups > 1:
                module.register_forward_pre_hook(self._frame_mask)

    def forward(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        x, lens = self.encode(feats, lens)
        return F.log_softmax(self.output(self.dropout(x)), dim=-1), lens

    def _lstm_by_sequence(self, x: Tensor, lens: Tensor) -> Tensor:
        """The LSTM over each sequence alone, zero-padded as pad_packed_sequence pads: on the CPU, torch's LSTM
        over a packed batch of unequal lengths leaves its fast path and takes 2-3x as long as the sequences one by
        one in evaluation, 2-5x in training (forward and backward; bench/bench_lstm_eval.py, bench/RESULTS.md)."""
        out = pad_sequence([self.encoder(x[i : i + 1, :n])[0][0] for i, n in enumerate(lens.tolist())], batch_first=True)
        return F.pad(out, (0, 0, 0, x.shape[1] - out.shape[1]))

    def encode(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """Frame stacking and the encoder: ([B, F', encoder_dim], out_lens)."""
        x, lens = stack_frames(feats, lens, self.subsample)
        lens = lens.clamp(min=1)
        x = x[:, : int(lens.max())]  # torchaudio's Conformer wants exactly max(lens) frames
        if self.kind == "lstm" and x.device.type == "cpu" and bool((lens != lens[0]).any()):
            x = self._lstm_by_sequence(x, lens)
        elif self.kind == "lstm":
            packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=x.shape[1])
        else:
            self._frame_mask.mask = length_mask(lens, x.shape[1]).unsqueeze(1).to(x.dtype)  # [B, 1, F']
            try:
                x, _ = self.encoder(self.input_proj(x), lens)
            finally:
                self._frame_mask.mask = None
        return x, lens


class FrameTagger(CTCHead):
    """CTCHead's encoder with independent per-frame logits, one per output (e.g. speaker activity:
    a sigmoid each, not a softmax over them). forward: feats [B, F, D], lens -> (logits [B, F', outputs], lens)."""

    def forward(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        x, lens = self.encode(feats, lens)
        return self.output(self.dropout(x)), lens
