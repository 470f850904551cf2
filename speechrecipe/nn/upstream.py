"""Upstreams: waveforms [B, T] at `sample_rate` -> a list of hidden-state layers [B, F, D].

Every upstream returns `(hidden_states, feat_lens)`: a list of `num_layers` tensors, so
filterbanks (one layer) and self-supervised models (many layers) share one interface with
the Featurizer. Spectral frontends frame without centre padding (Kaldi's snip_edges):
frame i covers samples [i*hop, i*hop + win), so a valid frame never reads padding and a
padded batch gives each utterance exactly the features it gets alone.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from speechrecipe.errors import ConfigError
from speechrecipe.nn.catalog import SSL, UPSTREAM_NAMES
from speechrecipe.nn.pooling import length_mask

LOG_FLOOR = 1e-6  # mel power floor before the log; waveforms are floats in [-1, 1]


@runtime_checkable
class Upstream(Protocol):
    """What every upstream provides."""

    num_layers: int
    output_dim: int
    hop_samples: int  # waveform samples per output frame (frames every hop_samples / sample_rate s)
    sample_rate: int

    def forward(self, wavs: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs [B, T], wav_lens [B] -> (num_layers x [B, F, output_dim], feat_lens [B])."""
        ...


def num_frames(wav_lens: Tensor, win_samples: int, hop_samples: int) -> Tensor:
    """Frames of a framing without centre padding: floor((L - win) / hop) + 1, at least 0."""
    return torch.div(wav_lens - win_samples, hop_samples, rounding_mode="floor").add(1).clamp(min=0)


SPECTRUM_BLOCK_SAMPLES = 160_000  # the CPU computes a batch's spectrum in blocks of about 10 s of 16 kHz audio


class _SpectralUpstream(nn.Module):
    """Shared framing, pre-emphasis, dither and mean normalisation; subclasses make the spectrum."""

    num_layers = 1

    def __init__(
        self,
        sample_rate: int,
        win_ms: float,
        hop_ms: float,
        n_fft: int,
        dither: float,
        preemphasis: float,
        cmn: bool,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.win_samples = round(sample_rate * win_ms / 1000)
        self.hop_samples = round(sample_rate * hop_ms / 1000)
        if self.hop_samples < 1 or self.win_samples < 1:
            raise ConfigError(f"win_ms={win_ms}, hop_ms={hop_ms}: both must be at least one sample")
        if n_fft < self.win_samples:
            raise ConfigError(
                f"n_fft={n_fft} is shorter than the {self.win_samples}-sample window "
                f"(win_ms={win_ms}); use n_fft >= {self.win_samples}"
            )
        self.n_fft = n_fft
        self.dither = dither
        self.preemphasis = preemphasis
        self.cmn = cmn

    def _mel_kwargs(self, n_mels: int, f_min_hz: float, f_max_hz: float | None) -> dict:
        # center=False: frames start at sample 0 (see _frame_input for the window offset).
        return dict(
            n_fft=self.n_fft, win_length=self.win_samples, hop_length=self.hop_samples,
            n_mels=n_mels, f_min=f_min_hz, f_max=f_max_hz, center=False, power=2.0,
            window_fn=torch.hamming_window, mel_scale="htk",
        )

    @property
    def frame_shift_ms(self) -> float:
        return 1000.0 * self.hop_samples / self.sample_rate

    def num_frames(self, wav_lens: Tensor) -> Tensor:
        """Valid output frames for waveforms of `wav_lens` samples."""
        return num_frames(wav_lens, self.win_samples, self.hop_samples)

    def _frame_input(self, wavs: Tensor) -> Tensor:
        """Pad so frame i's window starts at sample i*hop; pre-emphasis; dither (training only)."""
        wavs = wavs.float()
        # torch.stft zero-pads a short window to n_fft at its centre; shift the signal by that
        # offset so the window, not the n_fft frame, starts at i*hop. Samples outside the window
        # are multiplied by zero, so they may be padding without changing any value.
        left = (self.n_fft - self.win_samples) // 2
        right = self.n_fft - self.win_samples - left + max(0, self.win_samples - wavs.shape[1])
        x = F.pad(wavs, (left, right))  # a fresh copy: the steps below work in place on it
        if self.preemphasis > 0:  # causal, so valid samples never read padding
            x[:, left + 1 : left + wavs.shape[1]].sub_(wavs[:, :-1], alpha=self.preemphasis)
        if self.training and self.dither > 0:
            x.add_(torch.randn_like(x), alpha=self.dither)
        return x

    def _spectrum(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def _mel_power(x: Tensor, mel: torchaudio.transforms.MelSpectrogram) -> Tensor:
        """mel(x), with |stft|^2 as re^2 + im^2: the complex abs of torchaudio's Spectrogram takes
        2.8x as long on CPUs and was a quarter of a keyword-spotting training step."""
        spec = mel.spectrogram
        z = torch.stft(x, spec.n_fft, spec.hop_length, spec.win_length, spec.window, center=spec.center,
                       normalized=False, onesided=True, return_complex=True)
        return mel.mel_scale(z.real.square() + z.imag.square())

    def _spectrum_by_rows(self, x: Tensor) -> Tensor:
        """_spectrum of an evaluation batch, on the CPU in blocks of rows of at most SPECTRUM_BLOCK_SAMPLES: the
        same values bit for bit (tests/test_nn.py), up to 3x faster once a batch's stft outgrows the cache
        (bench/RESULTS.md, issue 26). Training keeps the whole batch: blocks are not measured there."""
        rows = max(1, SPECTRUM_BLOCK_SAMPLES // max(1, x.shape[1]))
        if self.training or x.device.type != "cpu" or x.shape[0] <= rows:
            return self._spectrum(x)
        blocks = [self._spectrum(block) for block in x.split(rows)]
        # the whole batch's memory layout (its dims by stride), so the steps after it reduce in the same order
        order = sorted(range(blocks[0].dim()), key=lambda d: blocks[0].stride(d), reverse=True)
        joined = torch.cat([b.permute(order) for b in blocks], dim=order.index(0))
        return joined.permute([order.index(d) for d in range(len(order))])

    def forward(self, wavs: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs [B, T], wav_lens [B] -> ([feats [B, F, D]], feat_lens [B]); padded frames are 0."""
        feat_lens = self.num_frames(wav_lens)
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            feats = self._spectrum_by_rows(self._frame_input(wavs))  # [B, D, frames of the padded T]
        max_frames = int(feat_lens.max()) if feat_lens.numel() else 0
        feats = feats[:, :, :max_frames].transpose(1, 2)
        mask = length_mask(feat_lens, max_frames).unsqueeze(-1).to(feats.dtype)
        if self.cmn:
            mean = (feats * mask).sum(dim=1, keepdim=True) / feat_lens.clamp(min=1)[:, None, None]
            feats = feats - mean
        return [(feats * mask).contiguous()], feat_lens


class Fbank(_SpectralUpstream):
    """Log-mel filterbank, batched with torchaudio's MelSpectrogram."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        f_min_hz: float = 20.0,
        f_max_hz: float | None = None,
        dither: float = 0.0,
        preemphasis: float = 0.97,
        cmn: bool = True,
    ):
        """dither: std of Gaussian noise added in training mode, in waveform units (1/32768 ~ 1 LSB).
        preemphasis: 0 disables. cmn: subtract each utterance's mean over its valid frames."""
        super().__init__(sample_rate, win_ms, hop_ms, n_fft, dither, preemphasis, cmn)
        self.output_dim = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, **self._mel_kwargs(n_mels, f_min_hz, f_max_hz)
        )

    def _spectrum(self, x: Tensor) -> Tensor:
        return self._mel_power(x, self.mel).clamp(min=LOG_FLOOR).log()


class MFCC(_SpectralUpstream):
    """MFCCs (DCT-II of the log-mel filterbank), batched with torchaudio's MFCC."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 30,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        f_min_hz: float = 20.0,
        f_max_hz: float | None = None,
        dither: float = 0.0,
        preemphasis: float = 0.97,
        cmn: bool = True,
    ):
        """Options as for Fbank; n_mfcc <= n_mels coefficients are kept."""
        super().__init__(sample_rate, win_ms, hop_ms, n_fft, dither, preemphasis, cmn)
        if n_mfcc > n_mels:
            raise ConfigError(f"n_mfcc={n_mfcc} exceeds n_mels={n_mels}; use n_mfcc <= n_mels")
        self.output_dim = n_mfcc
        # log_mels=True takes log(mel + 1e-6); the default dB path clips at the batch maximum
        # (top_db), which would make one utterance's features depend on its batch.
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc, log_mels=True,
            melkwargs=self._mel_kwargs(n_mels, f_min_hz, f_max_hz),
        )

    def _spectrum(self, x: Tensor) -> Tensor:
        log_mels = torch.log(self._mel_power(x, self.mfcc.MelSpectrogram) + 1e-6)  # as MFCC(log_mels=True)
        return torch.matmul(log_mels.transpose(-1, -2), self.mfcc.dct_mat).transpose(-1, -2)


class Precomputed(nn.Module):
    """Features dumped by dump-feature (path: its target_dir). The batch carries their frames where
    waveforms would be (data/frames.py), so this only hands each dumped layer on, as float32."""

    def __init__(self, path: str | None = None):
        super().__init__()
        from speechrecipe.data.frames import KEY
        from speechrecipe.data.feature_shards import dump_folder, read_meta

        if not path:
            raise ConfigError(f"{KEY}: give the target_dir of a dump-feature run")
        meta = read_meta(dump_folder(path), KEY)
        self.num_layers, self.output_dim = int(meta["num_layers"]), int(meta["output_dim"])
        self.sample_rate, self.hop_samples = int(meta["sample_rate"]), int(meta["hop_samples"])

    def forward(self, frames: Tensor, frame_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        """frames [B, F, layers, D] (any float dtype), frame_lens [B] -> (layers x [B, F, D] float32, frame_lens)."""
        frames = frames.float()
        return [frames[:, :, layer] for layer in range(self.num_layers)], frame_lens


UPSTREAMS: dict[str, type[nn.Module]] = {"fbank": Fbank, "mfcc": MFCC, "precomputed": Precomputed}


def build_upstream(name: str, **kwargs) -> nn.Module:
    """An upstream by name ("fbank", "mfcc", "wav2vec2", "hubert", "wavlm", "precomputed") with its constructor keyword arguments."""
    if name in SSL:
        from speechrecipe.nn.ssl_upstream import SSLUpstream

        return SSLUpstream(name, **kwargs)
    if name not in UPSTREAMS:
        raise ConfigError(f"upstream {name!r}: unknown; choose one of {', '.join(UPSTREAM_NAMES)}")
    klass = UPSTREAMS[name]
    allowed = [p for p in inspect.signature(klass.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]}?" if close else f"{name} takes {', '.join(allowed)}"
            raise ConfigError(f"upstream {name}: no option {key!r}; {hint}")
    return klass(**kwargs)
