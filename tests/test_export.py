"""Issue 27: `speechrecipe export --format torchscript|onnx` on tiny trained models of ks, sid, intent and asv.
model.ts runs in a fresh process that imports only torch, model.onnx in onnxruntime, and both give what
`speechrecipe.load` gives (the task's logits or embeddings on the same padded batch) within 1e-4, alone and in
padded batches of other lengths and sizes than the tracing example's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import speechrecipe
from test_inference import FIXTURES, first_test_set, trained  # noqa: F401 - trained is a fixture

TOLERANCE = 1e-4
# runs model.ts on the saved inputs with nothing but torch: speechrecipe is neither imported nor importable
TORCH_ONLY = """
import sys, torch
sys.modules["speechrecipe"] = None
model = torch.jit.load(sys.argv[1])
outputs = []
with torch.no_grad():
    for waveform, lengths in torch.load(sys.argv[2]):
        out = model(waveform, lengths)
        outputs.append([out] if isinstance(out, torch.Tensor) else list(out))
assert not [name for name in sys.modules if name.startswith("speechrecipe") and sys.modules[name] is not None]
torch.save(outputs, sys.argv[3])
"""


def graph_inputs(rows: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Six clips alone, padded batches of 3 and 5 of them cut to different lengths (so even ks's 1 s clips
    differ), and the whole test set in one padded batch."""
    clips = [torch.from_numpy(sf.read(row["path"], dtype="float32")[0]) for row in rows]
    inputs = [(clip[None], torch.tensor([len(clip)])) for clip in clips[:6]]
    for size, cut_samples in ((3, 1700), (5, 1700), (len(clips), 0)):
        cut = [clip[: len(clip) - cut_samples * k] for k, clip in enumerate(clips[:size])]
        lengths = torch.tensor([len(clip) for clip in cut])
        waveform = torch.zeros(size, int(lengths.max()))
        for k, clip in enumerate(cut):
            waveform[k, : len(clip)] = clip
        inputs.append((waveform, lengths))
    return inputs


def eager_outputs(model, inputs) -> list[list[torch.Tensor]]:
    """What `speechrecipe.load` computes on each batch: the task's logits per field, or its embeddings."""
    with torch.no_grad():
        if hasattr(model, "embed"):
            return [[model.task.embed(w, n)] for w, n in inputs]
        return [list(model.task.logits(w, n)) for w, n in inputs]


def torchscript_outputs(model_ts: Path, inputs, folder: Path) -> list[list[torch.Tensor]]:
    torch.save(inputs, folder / "inputs.pt")
    subprocess.run([sys.executable, "-c", TORCH_ONLY, model_ts, folder / "inputs.pt", folder / "outputs.pt"],
                   check=True, cwd=folder, env={"PATH": "/usr/bin:/bin"})
    return torch.load(folder / "outputs.pt")


def onnx_outputs(model_onnx: Path, inputs) -> list[list[torch.Tensor]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_onnx), providers=["CPUExecutionProvider"])
    return [[torch.from_numpy(x) for x in session.run(None, {"waveform": w.numpy(), "lengths": n.numpy()})]
            for w, n in inputs]


def assert_close(found, expected) -> None:
    for got, want in zip(found, expected, strict=True):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.shape == b.shape and (a - b).abs().max() <= TOLERANCE, (a - b).abs().max()


@pytest.mark.e2e
@pytest.mark.parametrize("problem", ["ks", "sid", "intent", "asv"])
def test_exported_graphs_match_eager(cli, trained, tmp_path, problem):
    target, cache = trained(problem)
    bundle = tmp_path / "bundle"
    result = cli("export", target, "--output", bundle, "--format", "torchscript", "--format", "onnx")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in bundle.iterdir() if p.suffix in (".pt", ".ts", ".jit", ".onnx", ".ckpt")) == [
        "model.ckpt", "model.onnx", "model.ts"]
    assert {"model.ts", "model.onnx"} <= set(json.loads((bundle / "bundle.json").read_text())["files"])

    model = speechrecipe.load(bundle)
    _, rows = first_test_set(target, cache)
    inputs = graph_inputs(rows)
    expected = eager_outputs(model, inputs)
    assert_close(torchscript_outputs(bundle / "model.ts", inputs, tmp_path), expected)
    assert_close(onnx_outputs(bundle / "model.onnx", inputs), expected)

    # the model card: inputs, outputs, and each field's labels in the order of classes_<field>.json
    card = (bundle / "README.md").read_text()
    assert "`waveform` [B, T] float32 at 16000 Hz" in card and "`lengths` [B] int64" in card
    if problem == "asv":
        assert "`embeddings` [B, D]" in card
    for field_file in sorted(bundle.glob("classes_*.json")):
        field = field_file.stem[len("classes_"):]
        labels = json.loads(field_file.read_text())["labels"]
        assert f"`logits_{field}`" in card
        assert f"  - {field}: " + ", ".join(f"{k} `{label}`" for k, label in enumerate(labels)) in card


@pytest.mark.e2e
def test_format_is_refused_in_one_line_where_there_is_no_graph(cli, tmp_path):
    target = tmp_path / "asr"
    result = cli("run", "asr", "--target-dir", target, "--cache-dir", tmp_path / "cache", "-c",
                 FIXTURES / "tiny_asr.yaml", "--stop", "2", "train.total_steps=2", "train.eval_step=2",
                 "train.save_step=2", "train.num_workers=0")
    assert result.exit_code == 0, result.stderr
    for fmt in ("onnx", "torchscript"):
        result = cli("export", target, "--output", tmp_path / f"bundle-{fmt}", "--format", fmt)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "asr has no graph export" in result.stderr and "eager bundle" in result.stderr
        assert not (tmp_path / f"bundle-{fmt}").exists()
    result = cli("export", target, "--output", tmp_path / "bundle", "--format", "tflite")
    assert result.exit_code == 2 and "--format tflite: unknown; choose torchscript or onnx" in result.stderr


def untrained_task(upstream: str, options: dict, downstream: str):
    """(task, embeddings?) built from nn/ with random weights and BatchNorm statistics: a model of every kind."""
    from omegaconf import OmegaConf

    from speechrecipe.nn.classifiers import build_classifier
    from speechrecipe.nn.featurizer import Featurizer
    from speechrecipe.nn.speaker_encoder import build_speaker_encoder
    from speechrecipe.nn.upstream import build_upstream
    from speechrecipe.tasks.classification import UtteranceClassificationTask
    from speechrecipe.tasks.speaker_verification import SpeakerVerificationTask

    torch.manual_seed(0)
    up = build_upstream(upstream, **options)
    featurizer = Featurizer(1, up.output_dim)
    kind, _, detail = downstream.partition(":")
    conf = OmegaConf.create({"name": kind, "head": "relu_bn", "tcresnet": {"depth": 8}, "bcresnet": {"scale": 1.0},
                             "probe": {"pooling": detail or "mean", "hidden_dim": 16},
                             "xvector": {"channels": 16, "stats_channels": 24, "embedding_dim": 8},
                             "ecapa": {"channels": 16, "embedding_dim": 8, "scale": 4, "se_channels": 8,
                                       "attention_dim": 8}})
    if detail == "embedding":
        task, embeddings = SpeakerVerificationTask(up, featurizer, build_speaker_encoder(conf, up.output_dim),
                                                   torch.nn.Identity()), True
    else:
        task, embeddings = UtteranceClassificationTask(up, featurizer, build_classifier(conf, up.output_dim, [5, 3]),
                                                       ["action", "object"]), False
    for module in task.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2)
    return task.eval(), embeddings


@pytest.mark.e2e  # not end to end, but about a minute of tracing and exporting
@pytest.mark.parametrize("upstream,options,downstream", [
    ("fbank", {}, "xvector:embedding"), ("mfcc", {}, "ecapa:embedding"), ("fbank", {"n_mels": 40}, "tcresnet:"),
    ("fbank", {"n_mels": 40}, "bcresnet:"), ("fbank", {"cmn": False}, "probe:mean"), ("mfcc", {}, "probe:attentive"),
    ("fbank", {"preemphasis": 0.0}, "probe:stats"), ("fbank", {}, "xvector:"), ("fbank", {}, "ecapa:")])
def test_every_upstream_and_downstream_gives_a_graph_for_any_length(tmp_path, upstream, options, downstream):
    """Traced and exported on the 1.0 s + 0.6 s example, run on other batch sizes and lengths: down to 0.05 s
    (5 frames, inside an x-vector's context) and up to 3 s."""
    from speechrecipe.inference.graph import GraphModel, example_inputs, export_module

    task, embeddings = untrained_task(upstream, options, downstream)
    generator = torch.Generator().manual_seed(1)
    inputs = []
    for lengths in ([48000], [800], [16000, 800, 30001], [12345, 23456]):
        lengths = torch.tensor(lengths)
        waveform = 0.1 * torch.randn(len(lengths), int(lengths.max()), generator=generator)
        inputs.append((waveform * (torch.arange(waveform.shape[1]) < lengths[:, None]), lengths))
    with torch.no_grad():
        expected = [[task.embed(w, n)] if embeddings else task.logits(w, n) for w, n in inputs]
    for fmt in ("torchscript", "onnx"):
        path = tmp_path / f"model.{fmt}"
        module = GraphModel(task, embeddings, complex_stft=fmt == "torchscript").eval()
        export_module(module, example_inputs(16000), fmt, path, ["embeddings"] if embeddings else ["a", "b"])
        if fmt == "torchscript":
            graph = torch.jit.load(str(path))
            with torch.no_grad():
                found = [[out] if embeddings else list(out) for out in (graph(w, n) for w, n in inputs)]
        else:
            found = onnx_outputs(path, inputs)
        assert_close(found, expected)


def test_an_ssl_upstream_is_refused_naming_the_eager_bundle():
    from omegaconf import OmegaConf

    from speechrecipe.errors import ConfigError
    from speechrecipe.inference.graph import GraphFrontend
    from speechrecipe.nn.ssl_upstream import SSLUpstream

    tiny = OmegaConf.to_container(OmegaConf.load(FIXTURES / "tiny_wav2vec2.yaml").build_upstream.ssl.conf)
    with pytest.raises(ConfigError, match="upstream is SSLUpstream: use the eager bundle"):
        GraphFrontend(SSLUpstream("wav2vec2", "custom", tiny, init_seed=7))
