"""Issue 26: `speechrecipe.load`, `speechrecipe infer` and `speechrecipe export` on tiny trained models of every
problem, through the CLI: stage 3's outputs reproduced from the target_dir and from a bundle with the
target_dir and the cache deleted; bad inputs refused in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speechrecipe
from speechrecipe.data.manifest import read_jsonl

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
MINI_VOX = REPO / "speechrecipe" / "assets" / "mini" / "voxceleb1"
SHORT = ["train.total_steps=8", "train.eval_step=8", "train.save_step=8", "train.log_step=4", "train.num_workers=0",
         "evaluate.test_ckpt_steps=[valid_best]"]
RUNS = {
    "asv": ["-c", FIXTURES / "tiny_asv.yaml"],
    "ks": [],
    "intent": [],
    "sid": [],
    "asr": ["-c", FIXTURES / "tiny_asr.yaml"],
    "diarization": ["-c", FIXTURES / "tiny_diarization.yaml"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train each problem for a few updates (stages 0-4) on its bundled mini corpus: {problem: (target, cache)}."""
    from typer.testing import CliRunner

    from speechrecipe.cli import app

    made = {}

    def train(problem: str):
        if problem not in made:
            root = tmp_path_factory.mktemp(problem)
            target, cache = root / "exp", root / "cache"
            args = ["run", problem, "--target-dir", target, "--cache-dir", cache, *RUNS[problem], *SHORT]
            result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
            assert result.exit_code == 0, result.stderr
            made[problem] = (target, cache)
        return made[problem]

    return train


def first_test_set(target: Path, cache: Path) -> tuple[str, list[dict]]:
    """(test set, manifest rows) of the run's first test set: whole files only (ks's _silence_ crops are not)."""
    manifest = sorted(cache.glob("*/*/test_*.jsonl"))[0]
    return manifest.stem[len("test_"):], [row for row in read_jsonl(manifest) if "start" not in row]


def list_file(rows: list[dict], folder: Path) -> Path:
    path = folder / "inputs.txt"
    path.write_text("".join(row["path"] + "\n" for row in rows))
    return path


def input_id(row: dict) -> str:
    return str(Path(row["path"]).with_suffix(""))


def read_table(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def stage3_outputs(problem: str, target: Path, test_set: str, rows: list[dict]) -> dict:
    """{input id: what stage 3 wrote for it} (predicted labels, hypothesis, RTTM lines)."""
    folder = target / "evaluation" / "valid_best"
    by_corpus_id = {row["id"]: input_id(row) for row in rows}
    if problem in ("ks", "intent", "sid"):
        table = read_table(folder / f"{test_set}.predictions.tsv")
        return {by_corpus_id[r[0]]: r[2::2] for r in table[1:] if r[0] in by_corpus_id}
    if problem == "asr":
        lines = (folder / f"{test_set}.beam.hyp").read_text().splitlines()
        return {by_corpus_id[line.split(" ", 1)[0]]: line.split(" ", 1)[1] if " " in line else "" for line in lines}
    return rttm_by_recording(folder / f"{test_set}.rttm", by_corpus_id)


def rttm_by_recording(path: Path, rename: dict | None = None) -> dict:
    found: dict = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        recording = rename[fields[1]] if rename else fields[1]
        found.setdefault(recording, []).append(fields[2:])
    return found


def infer_outputs(problem: str, output: Path) -> dict:
    if problem == "diarization":
        return rttm_by_recording(output)
    table = read_table(output)
    if problem == "asr":
        return {r[0]: r[1] for r in table[1:]}
    return {r[0]: r[1::2] for r in table[1:]}


def run_infer(cli, source: Path, rows: list[dict], folder: Path, name: str, problem: str) -> Path:
    suffix = ".rttm" if problem == "diarization" else ".tsv"
    output = folder / f"{name}{suffix}"
    result = cli("infer", source, f"@{list_file(rows, folder)}", "--output", output)
    assert result.exit_code == 0, result.stderr
    return output


@pytest.mark.e2e
@pytest.mark.parametrize("problem", ["ks", "intent", "sid", "asr", "diarization"])
def test_infer_and_bundle_reproduce_stage_3(cli, trained, tmp_path, problem):
    target, cache = trained(problem)
    test_set, rows = first_test_set(target, cache)
    expected = stage3_outputs(problem, target, test_set, rows)
    assert len(expected) == len(rows) or problem == "diarization"
    found = infer_outputs(problem, run_infer(cli, target, rows, tmp_path, "out", problem))
    assert found == expected

    # load(): one input gives one result, a list gives a list, in the order given
    model = speechrecipe.load(target)
    first, batch = model_call(model, rows[0]["path"]), model_call(model, [r["path"] for r in rows[:3]])
    assert len(batch) == 3 and same_result(problem, first, batch[0], expected[input_id(rows[0])])

    # the bundle, with the target_dir and the cache gone
    bundle = tmp_path / "bundle"
    assert cli("export", target, "--output", bundle).exit_code == 0
    assert not list(bundle.glob("*.pt")) and (bundle / "README.md").is_file() and (bundle / "results.json").is_file()
    # target_dir and the prepared cache out of the way (restored for the other tests); diarization's mini corpus,
    # built in the cache, stays: it is the audio the inputs name
    away = [target, *(p for p in cache.glob("*/*") if p.name != "mini_corpus")]
    for k, path in enumerate(away):
        shutil.move(str(path), tmp_path / f"away{k}")
    try:
        assert infer_outputs(problem, run_infer(cli, bundle, rows, tmp_path, "from_bundle", problem)) == expected
    finally:
        for k, path in enumerate(away):
            shutil.move(str(tmp_path / f"away{k}"), path)


def model_call(model, audio):
    for method in ("classify", "transcribe", "diarize", "embed"):
        if hasattr(model, method):
            return getattr(model, method)(audio)
    raise AssertionError(type(model))


def same_result(problem: str, one, from_batch, stage3) -> bool:
    if problem in ("ks", "intent", "sid"):
        labels = [v for k, v in one.items() if k != "id" and not k.endswith("_probs")]
        probs = [p for k, p in one.items() if k.endswith("_probs")]
        assert all(abs(sum(p.values()) - 1) < 1e-4 for p in probs)
        close = all(abs(p - from_batch[k][label]) < 1e-5 for k in one if k.endswith("_probs") for label, p in one[k].items())
        return labels == stage3 and close and from_batch["id"] == one["id"] == str(Path(one["id"]))
    if problem == "asr":
        return one == from_batch == stage3
    return one == from_batch  # segments: stage 3's RTTM rounds them to ms


@pytest.mark.e2e
def test_asv_scores_trials_as_stage_3_and_the_bundle_too(cli, trained, tmp_path):
    target, cache = trained("asv")
    out = tmp_path / "scores.tsv"
    result = cli("infer", target, "--trials", MINI_VOX / "veri_test2.txt", "--root", MINI_VOX / "wav", "--output", out)
    assert result.exit_code == 0, result.stderr
    stage3 = {(e, t): float(s) for e, t, s, _ in read_table(target / "evaluation" / "valid_best" / "voxceleb1_o.scores")}
    table = read_table(out)
    assert table[0] == ["label", "enroll", "test", "score"] and len(table) - 1 == len(stage3)
    for label, enroll, test, score in table[1:]:
        key = (str(Path(enroll).with_suffix("")), str(Path(test).with_suffix("")))
        assert abs(float(score) - stage3[key]) <= 1e-5

    # embeddings: [N, D] in the TSV's row order; load().score agrees with the file
    wavs = sorted((MINI_VOX / "wav").rglob("*.flac"))[:4]
    emb_out = tmp_path / "emb.tsv"
    assert cli("infer", target, *wavs[:4], "--output", emb_out).exit_code == 0
    embeddings = np.load(f"{emb_out}.npy")
    assert embeddings.shape[0] == 4 and [r[0] for r in read_table(emb_out)[1:]] == [str(w.with_suffix("")) for w in wavs]
    model = speechrecipe.load(target)
    assert np.allclose(model.embed(str(wavs[1])).numpy(), embeddings[1], atol=1e-5)
    pair = model.score(str(wavs[0]), str(wavs[1]))
    cos = embeddings[0] @ embeddings[1] / np.linalg.norm(embeddings[0]) / np.linalg.norm(embeddings[1])
    assert abs(pair - cos) < 1e-5

    # samples with their rate, stereo and another rate: resampled and downmixed as stage 0 does
    samples, rate = sf.read(wavs[0], dtype="float32")
    assert np.allclose(model.embed((samples, rate)).numpy(), embeddings[0], atol=1e-5)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([samples, samples], 1), rate, subtype="FLOAT")
    result = cli("infer", target, stereo, "--output", tmp_path / "stereo.tsv")
    assert result.exit_code == 0 and "stereo.wav: stereo → downmixed" in result.stderr
    assert np.allclose(np.load(f"{tmp_path / 'stereo.tsv'}.npy")[0], embeddings[0], atol=1e-5)
    slow = tmp_path / "8k.wav"
    sf.write(slow, samples[::2], rate // 2)
    result = cli("infer", target, slow, "--output", tmp_path / "8k.tsv")
    assert result.exit_code == 0 and "8k.wav: sample rate 8000 → resampled to 16000" in result.stderr

    bundle = tmp_path / "bundle"
    assert cli("export", target, "--output", bundle).exit_code == 0
    card = (bundle / "README.md").read_text()
    assert "eer" in card and "speechrecipe run asv" in card and "sha256" in card
    bundled = speechrecipe.load(bundle)
    assert np.allclose(bundled.embed(str(wavs[1])).numpy(), embeddings[1], atol=1e-5)

    # AS-norm: the cohort stage 3 embedded travels with the model (target_dir/inference/, then the bundle)
    asnorm = [*RUNS["asv"], *SHORT, "evaluate.score_norm=asnorm", "evaluate.asnorm_top_n=5"]
    result = cli("run", "asv", "--start", "3", "--target-dir", target, "--cache-dir", cache, *asnorm)
    assert result.exit_code == 0, result.stderr
    stage3 = {(e, t): float(s) for e, t, s, _ in read_table(target / "evaluation" / "valid_best" / "voxceleb1_o.scores")}
    bundle = tmp_path / "bundle-asnorm"
    assert cli("export", target, "--output", bundle).exit_code == 0 and list((bundle / "inference").glob("*.cohort.pt"))
    for source in (target, bundle):
        result = cli("infer", source, "--trials", MINI_VOX / "veri_test2.txt", "--root", MINI_VOX / "wav", "--output", out)
        assert result.exit_code == 0, result.stderr
        for label, enroll, test, score in read_table(out)[1:]:
            key = (str(Path(enroll).with_suffix("")), str(Path(test).with_suffix("")))
            assert abs(float(score) - stage3[key]) <= 1e-5


@pytest.mark.e2e
def test_bad_inputs_get_one_line_each(cli, trained, tmp_path):
    target, cache = trained("ks")
    _, rows = first_test_set(target, cache)
    good = rows[0]["path"]
    empty, corrupt, missing = tmp_path / "empty.wav", tmp_path / "corrupt.wav", tmp_path / "missing.wav"
    empty.write_bytes(b"")
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    out = tmp_path / "out.tsv"
    result = cli("infer", target, good, empty, corrupt, missing, "--output", out)
    assert result.exit_code == 0, result.stderr  # the rest goes on
    assert len(read_table(out)) == 2
    report = read_table(Path(f"{out}.bad_audio.tsv"))
    assert report[0] == ["path", "problem"] and {r[0] for r in report[1:]} == {str(empty), str(corrupt), str(missing)}
    for path, problem in (("empty.wav", "empty file"), ("missing.wav", "file not found")):
        assert any(path in line and problem in line for line in result.stderr.splitlines())

    result = cli("infer", target, empty, missing, "--output", tmp_path / "none.tsv")
    assert result.exit_code == 1 and "none of the 2 inputs is usable audio" in result.stderr
    assert not (tmp_path / "none.tsv").exists()

    result = cli("infer", target, good, "--checkpoint", "step-999")
    assert result.exit_code == 2 and "no such checkpoint" in result.stderr and "valid_best" in result.stderr
    result = cli("infer", tmp_path / "nowhere", good)
    assert result.exit_code == 1 and "does not exist" in result.stderr

    unfinished = tmp_path / "unfinished"
    shutil.copytree(target, unfinished)
    (unfinished / "records" / "stage-2.json").unlink()
    result = cli("infer", unfinished, good)
    assert result.exit_code == 1 and "training never finished" in result.stderr

    bundle = tmp_path / "bundle"
    assert cli("export", target, "--output", bundle).exit_code == 0
    result = cli("export", target, "--output", bundle)
    assert result.exit_code == 2 and "exists" in result.stderr and (bundle / "bundle.json").is_file()
    config = bundle / "config.yaml"
    config.write_text(config.read_text().replace("seed:", "seed: 1 #", 1))
    result = cli("infer", bundle, good)
    assert result.exit_code == 1 and "config.yaml: its sha256 differs" in result.stderr


def test_import_speechrecipe_stays_light():
    import subprocess
    import sys

    code = "import sys, speechrecipe; assert callable(speechrecipe.load); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.e2e
def test_a_bundle_holds_a_frozen_ssl_upstream_loaded_from_a_file(cli, tmp_path):
    """The checkpoints of a frozen upstream hold only its digest; the bundle holds its weights, so it loads with
    the `pretrained:` file, the target_dir and the cache gone."""
    import torch

    from speechrecipe.engine.checkpoint import load as load_checkpoint
    from speechrecipe.nn.ssl_upstream import SSLUpstream
    from omegaconf import OmegaConf

    tiny = OmegaConf.to_container(OmegaConf.load(FIXTURES / "tiny_wav2vec2.yaml").build_upstream.ssl.conf)
    source = tmp_path / "upstream.pt"
    torch.save(SSLUpstream("wav2vec2", "custom", tiny, init_seed=7).model.state_dict(), source)
    target, cache = tmp_path / "exp", tmp_path / "cache"
    result = cli("run", "ks", "--target-dir", target, "--cache-dir", cache, "-c", FIXTURES / "tiny_wav2vec2.yaml",
                 f"pretrained.upstream={source}", *SHORT)
    assert result.exit_code == 0, result.stderr
    assert not any(k.startswith("upstream.model.") for k in load_checkpoint(target / "checkpoints" / "valid_best.ckpt")["model"])
    test_set, rows = first_test_set(target, cache)
    expected = stage3_outputs("ks", target, test_set, rows)
    bundle = tmp_path / "bundle"
    assert cli("export", target, "--output", bundle).exit_code == 0
    assert any(k.startswith("upstream.model.") for k in load_checkpoint(bundle / "model.ckpt")["model"])
    for path in (target, cache / "ks", source, tmp_path / "exp" / "pretrained"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    assert infer_outputs("ks", run_infer(cli, bundle, rows, tmp_path, "out", "ks")) == expected
