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
    """Each clip alone, then padded batches of 3 and 5 clips of different lengths (clips cut short, so even
    ks's 1 s clips differ)."""
    clips = [torch.from_numpy(sf.read(row["path"], dtype="float32")[0]) for row in rows[:6]]
    inputs = [(clip[None], torch.tensor([len(clip)])) for clip in clips]
    for size in (3, 5):
        cut = [clip[: len(clip) - 1700 * k] for k, clip in enumerate(clips[:size])]
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
