"""`speechrecipe export --format torchscript|onnx`: a trained ks, sid, intent or asv model as one plain graph,
`waveform [B, T]` float32 at the model's rate and `lengths [B]` int64 in, the task's outputs out (a tuple of
logits, one per label field in build_encoder.fields order; or embeddings [B, D]), with the feature extraction
and its mean normalisation inside, so torch.jit.load or onnxruntime alone give the numbers `speechrecipe.load`
gives.

The fbank/mfcc upstream is rebuilt for the graph (`GraphFrontend`). TorchScript keeps torch.stft, as the
eager upstream; ONNX has no complex tensors, so there the STFT is a real-valued DFT (the frames and the
windowed DFT basis in one conv1d: ~5x the frontend time of an FFT, bench/RESULTS.md). The rest of the task
is the trained modules themselves, traced: every length-dependent step of the frontend is a tensor
operation, and the frontend always appends MARGIN_FRAMES zero frames past the longest input so that no
branch or size is fixed by the tracing example (the downstreams ignore frames past each input's length,
and short inputs then never take another path than the example). Tests check other batch sizes and
lengths than the example's.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechrecipe.errors import ConfigError

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
PROBLEMS = ("ks", "sid", "intent", "asv")
# zero frames appended past the longest input: at least an x-vector's context (14), so an input of any length
# takes the path of the tracing example
MARGIN_FRAMES = 16
ONNX_OPSET = 17


class GraphFrontend(nn.Module):
    """The Fbank or MFCC upstream (nn/upstream.py) in evaluation mode, from tensor operations only.

    Frame i covers samples [i*hop, i*hop + win) (no centre padding). Its power spectrum comes from torch.stft
    (`complex_stft`, for TorchScript), or from a real DFT whose basis holds the upstream's window, zero-padded to
    n_fft as torch.stft pads it (for ONNX)."""

    def __init__(self, upstream: nn.Module, complex_stft: bool = False):
        super().__init__()
        from speechrecipe.nn.upstream import LOG_FLOOR, MFCC, Fbank

        if not isinstance(upstream, (Fbank, MFCC)):
            raise ConfigError(f"export --format: the graph holds fbank or mfcc features; this model's upstream is "
                              f"{type(upstream).__name__}: use the eager bundle (speechrecipe.load) for it")
        mel = upstream.mel if isinstance(upstream, Fbank) else upstream.mfcc.MelSpectrogram
        self.win, self.hop, n_fft = upstream.win_samples, upstream.hop_samples, upstream.n_fft
        self.preemphasis, self.cmn = float(upstream.preemphasis), bool(upstream.cmn)
        self.mfcc = isinstance(upstream, MFCC)
        self.floor = LOG_FLOOR
        # the window inside n_fft as torch.stft places it (centred), then frames start at the window
        left = (n_fft - self.win) // 2
        self.complex_stft, self.n_fft, self.left = complex_stft, n_fft, left
        self.bins = n_fft // 2 + 1
        window = mel.spectrogram.window
        if complex_stft:
            self.register_buffer("window", window.float().clone())
        else:
            angle = 2 * math.pi * torch.outer(torch.arange(self.win, dtype=torch.float64) + left,
                                              torch.arange(self.bins, dtype=torch.float64)) / n_fft
            basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) * window.double()[:, None]
            # conv1d weight [2 * bins, 1, win]: the real parts' rows, then the imaginary parts'
            self.register_buffer("basis", basis.t().unsqueeze(1).float().contiguous())
        self.register_buffer("mel_fb", mel.mel_scale.fb.float().clone())  # [bins, n_mels]
        self.register_buffer("dct", upstream.mfcc.dct_mat.float().clone() if self.mfcc else torch.zeros(0))

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """waveform [B, T], lengths [B] → (features [B, F, D], zero past each input's frames; frames [B])."""
        x = waveform.float()
        if self.preemphasis > 0:
            x = torch.sub(x, F.pad(x, (1, 0))[:, :-1], alpha=self.preemphasis)  # as the eager upstream's sub_
        # MARGIN_FRAMES hops of zeros, and a window's worth so that F never falls below MARGIN_FRAMES
        x = F.pad(x, (0, self.win + MARGIN_FRAMES * self.hop))
        if self.complex_stft:  # as the eager upstream: the window centred in n_fft, shifted to start at the frame
            z = torch.stft(F.pad(x, (self.left, self.n_fft - self.win - self.left)), self.n_fft, self.hop, self.win,
                           self.window, center=False, normalized=False, onesided=True, return_complex=True)
            power = z.real.square() + z.imag.square()  # [B, bins, F]
        else:
            spec = F.conv1d(x.unsqueeze(1), self.basis, stride=self.hop)  # [B, 2 * bins, F]
            power = spec[:, : self.bins].square() + spec[:, self.bins :].square()
        mels = torch.matmul(power.transpose(1, 2), self.mel_fb)  # [B, F, n_mels]
        if self.mfcc:
            feats = torch.matmul(torch.log(mels + 1e-6), self.dct)  # as torchaudio's MFCC(log_mels=True)
        else:
            feats = mels.clamp(min=self.floor).log()
        frames = torch.div(lengths - self.win, self.hop, rounding_mode="floor").add(1).clamp(min=0)
        positions = torch.arange(feats.shape[1], device=feats.device).unsqueeze(0)
        mask = (positions < frames.unsqueeze(1)).unsqueeze(-1).to(feats.dtype)
        if self.cmn:
            mean = (feats * mask).sum(dim=1, keepdim=True) / frames.clamp(min=1).to(feats.dtype)[:, None, None]
            feats = feats - mean
        return feats * mask, frames


class GraphModel(nn.Module):
    """waveform [B, T], lengths [B] → the task's outputs: a tuple of logits per field, or embeddings [B, D]."""

    def __init__(self, task: nn.Module, embeddings: bool, complex_stft: bool = False):
        super().__init__()
        self.frontend = GraphFrontend(task.upstream, complex_stft)
        self.featurizer, self.downstream = task.featurizer, task.downstream
        self.embeddings = embeddings

    def forward(self, waveform: Tensor, lengths: Tensor):
        feats, frames = self.frontend(waveform, lengths)
        feats, frames = self.featurizer([feats], frames)
        out = self.downstream(feats, frames)
        return out if self.embeddings else tuple(out)


def check_formats(formats: list[str], problem_spec: str) -> None:
    """Refuse, before any work, a format that does not exist, a problem whose outputs are no single graph, or
    onnx without its extra."""
    import importlib

    from speechrecipe.inference.models import Classifier, SpeakerEmbedder
    from speechrecipe.registry import resolve_problem

    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt}: unknown; choose {' or '.join(FORMATS)}")
    module_name, _, class_name = (resolve_problem(problem_spec).inference or ":").rpartition(":")
    loaded = getattr(importlib.import_module(module_name), class_name) if module_name else None
    if formats and not (isinstance(loaded, type) and issubclass(loaded, (Classifier, SpeakerEmbedder))):
        raise ConfigError(f"--format {formats[0]}: {problem_spec} has no graph export (its decoding or chunking runs "
                          f"outside the model); export without --format and use the eager bundle with "
                          f"speechrecipe.load or speechrecipe infer (graphs: {', '.join(PROBLEMS)})")
    if "onnx" in formats:
        try:
            import onnx  # noqa: F401 - the exporter writes through it
        except ImportError as err:
            raise ConfigError("--format onnx needs the onnx extra: pip install 'speechrecipe[onnx]'") from err


def graph_model(model, fmt: str) -> GraphModel:
    """The graph of a loaded ks, sid, intent (Classifier) or asv (SpeakerEmbedder) model for format `fmt`,
    in evaluation mode."""
    from speechrecipe.inference.models import SpeakerEmbedder

    return GraphModel(model.task, isinstance(model, SpeakerEmbedder), complex_stft=fmt == "torchscript").eval()


def example_inputs(sample_rate: int) -> tuple[Tensor, Tensor]:
    """Two inputs of different lengths (1.0 s and 0.6 s), padded: the tracing example."""
    generator = torch.Generator().manual_seed(0)
    waveform = 0.1 * torch.randn(2, sample_rate, generator=generator)
    lengths = torch.tensor([sample_rate, int(0.6 * sample_rate)])
    waveform[1, lengths[1]:] = 0
    return waveform, lengths


def write_graph(model, fmt: str, path: Path) -> None:
    """model.ts (torch.jit.trace, saved) or model.onnx (dynamic batch and length) of a loaded model at `path`."""
    module = graph_model(model, fmt)
    export_module(module, example_inputs(model.sample_rate), fmt, path, output_names(module.embeddings, _fields(model)))


def export_module(module: nn.Module, inputs: tuple[Tensor, Tensor], fmt: str, path: Path, outputs: list[str]) -> None:
    """Trace `module` on `inputs` and save it as TorchScript, or export it to ONNX with dynamic batch and length."""
    import warnings

    # the tracer's and exporter's warnings name branches MARGIN_FRAMES makes constant, and torch.jit's deprecation
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, inputs, check_trace=False), str(path))
            return
        axes = {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, **{n: {0: "batch"} for n in outputs}}
        torch.onnx.export(module, inputs, str(path), input_names=["waveform", "lengths"], output_names=outputs,
                          dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)


def _fields(model) -> list[str]:
    """The label fields of a classifier (build_encoder.fields order), none for asv."""
    from speechrecipe.inference.models import Classifier

    return list(model.encoder) if isinstance(model, Classifier) else []


def output_names(embeddings: bool, fields: list[str]) -> list[str]:
    return ["embeddings"] if embeddings else [f"logits_{field}" for field in fields]


def graph_card(model, formats: list[str]) -> list[str]:
    """The model card's section on model.ts / model.onnx: inputs, outputs, label order."""
    from speechrecipe.inference.models import Classifier

    files = " and ".join(f"`{FORMATS[f]}`" for f in formats)
    rate, upstream = model.sample_rate, model.task.upstream
    features = type(upstream).__name__.lower() + (", mean-normalised over each input's frames" if upstream.cmn else "")
    loaders = {"torchscript": "`torch.jit.load(\"model.ts\")`",
               "onnx": "`onnxruntime.InferenceSession(\"model.onnx\")`"}
    lines = ["## Graph: " + files, "",
             f"{files} {'run' if len(formats) > 1 else 'runs'} without speechrecipe: "
             f"{' or '.join(loaders[f] for f in formats)}. The features ({features}) are computed inside the "
             "graph.", "",
             f"- inputs: `waveform` [B, T] float32 at {rate} Hz, mono, samples in [-1, 1] (padding past each "
             f"input's length is ignored); `lengths` [B] int64, samples per input. Resample and downmix first "
             f"(speechrecipe does it for you in `load` and `infer`)."]
    if isinstance(model, Classifier):
        names = output_names(False, _fields(model))
        lines.append(f"- outputs: a tuple of logits, one [B, classes] tensor per label field, in this order: "
                     + ", ".join(f"`{n}`" for n in names) + ". Softmax gives `load(...).classify`'s probabilities.")
        lines += ["- label order (column k of a field's logits is its k-th label, as in classes_<field>.json):", ""]
        for field, encoder in model.encoder.items():
            lines.append(f"  - {field}: " + ", ".join(f"{k} `{label}`" for k, label in enumerate(encoder.labels)))
    else:
        lines.append("- output: `embeddings` [B, D], before length normalisation; score two inputs by the cosine of "
                     "their embeddings (a run scored with AS-norm also needs its cohort: use `load(...).score`).")
    lines += ["", "Outputs match `speechrecipe.load` within 1e-4 (tests/test_export.py).", ""]
    return lines
