"""dump-feature: shards + index from the real CLI, resumable after SIGKILL, equal under torchrun (one node
and two), bad audio named and left out; the precomputed upstream trains as on-the-fly features do."""
from __future__ import annotations

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrecipe.data.audio import read_audio
from speechrecipe.data.feature_shards import FeatureShards
from speechrecipe.nn.upstream import Fbank
from helpers import wait_for

SHARD = "dump.shard_secs=8"  # the mini Speech Commands corpus (~310 s) in ~40 shards


def speechrecipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "run", "dump-feature", *args]


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def dump_bytes(target: Path) -> dict[str, bytes]:
    """Every file of the dump (shards, their indexes, the index, the description)."""
    folder = target / "features"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted process, stages 0-2."""
    target = tmp_path_factory.mktemp("dump-reference")
    run(speechrecipe("--target-dir", str(target), SHARD))
    return target


@pytest.mark.e2e
def test_dump_holds_every_utterance_as_the_upstream_computes_it(reference):
    shards = FeatureShards.open(reference / "features")
    rows = [json.loads(line) for line in (reference / "features" / "index.jsonl").read_text().splitlines()]
    assert len(shards.entries) == len(rows) > 300 and len(list((reference / "features").glob("shard-*.bin"))) > 30
    results = json.loads((reference / "results" / "results.json").read_text())
    assert results["utterances"] == len(rows) and results["bytes"] > 0 and results["audio_s_per_s"] > 0
    assert (reference / "results" / "README.md").read_text().startswith("# Feature dump")
    cache = Path(os.environ["SPEECHRECIPE_CACHE_DIR"]) / "dump-feature"
    manifest = {json.loads(line)["id"]: json.loads(line) for p in cache.glob("*/test_*.jsonl") for line in p.read_text().splitlines()}
    assert len(manifest) > 5
    fbank = Fbank(n_mels=80, cmn=False).eval()
    for utt in sorted(manifest)[:5]:  # float16 of what fbank gives the clip alone
        row = manifest[utt]
        wav = read_audio(row["path"], int(row.get("start", 0)), int(row["num_frames"]))
        (feats,), _ = fbank(wav[None], torch.tensor([wav.numel()]))
        assert np.array_equal(shards.get(utt)[:, 0], feats[0].half().numpy())
    assert shards.get(utt, 10, 20).shape == (20, 1, 80)


@pytest.mark.e2e
def test_sigkill_during_the_dump_resumes_byte_identical(reference, tmp_path):
    command = speechrecipe("--target-dir", str(tmp_path), SHARD)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "features" / "shard-00003.json").is_file(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list((tmp_path / "features").glob("shard-*.json")))
    assert not (tmp_path / "features" / "index.jsonl").exists() and done < 40
    result = run(command)
    assert f"({done} already done)" in result.stderr or f"({done + 1} already done)" in result.stderr
    assert dump_bytes(tmp_path) == dump_bytes(reference)


@pytest.mark.e2e
def test_two_ranks_dump_what_one_process_dumps(reference, tmp_path):
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "speechrecipe", "run", "dump-feature", "--target-dir", str(tmp_path), SHARD])
    timings = [json.loads(p.read_text()) for p in (tmp_path / "dump_timing").glob("*.json")]
    assert {t["rank"] for t in timings} == {0, 1}
    assert dump_bytes(tmp_path) == dump_bytes(reference)


@pytest.mark.e2e
def test_two_nodes_dump_what_one_process_dumps(reference, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                                "--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-id", "dump",
                                "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "speechrecipe", "run", "dump-feature",
                                "--target-dir", str(tmp_path), SHARD],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for node in (0, 1)]
    for agent in agents:
        _, err = agent.communicate(timeout=600)
        assert agent.returncode == 0, err[-3000:]
    timings = [json.loads(p.read_text()) for p in (tmp_path / "dump_timing").glob("*.json")]
    assert {t["rank"] for t in timings} == {0, 1}
    assert dump_bytes(tmp_path) == dump_bytes(reference)


def test_a_list_of_files_dumps_the_good_ones_and_names_the_bad_one(cli, tmp_path, caplog):
    audio = tmp_path / "my audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.flac", "sub/c.wav"):
        (audio / name).parent.mkdir(exist_ok=True)
        sf.write(audio / name, rng.uniform(-0.3, 0.3, 16000 + 800 * len(name)).astype("float32"), 16000)
    (audio / "broken.wav").write_bytes(b"RIFF not really audio")
    listing = audio / "files.txt"
    listing.write_text("a.wav\nb.flac\n# a comment\n\nsub/c.wav\nbroken.wav\n")
    result = cli("run", "dump-feature", "--target-dir", tmp_path / "exp", "prepare_data.corpus=list",
                 f"prepare_data.list_file={listing}", "dump.dtype=float32")
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if "broken.wav" in r.getMessage()]
    assert len(warned) == 1 and "1 file is unusable and left out" in warned[0]
    bad = Path(warned[0].rsplit("; see ", 1)[1]).read_text()  # this run's cache folder, not another test's
    assert "broken.wav\tnot an audio file" in bad or "broken.wav\tcorrupt" in bad
    shards = FeatureShards.open(tmp_path / "exp" / "features")
    assert sorted(shards.entries) == ["a", "b", "sub/c"] and shards.meta["dtype"] == "float32"
    assert shards.frames("sub/c") == (16000 + 800 * 9 - 400) // 160 + 1


def hugging_face_dump(tmp_path: Path) -> tuple[torch.Tensor, list[str]]:
    """A tiny Hugging Face wav2vec2 folder and a one-file list: (its hidden states of the file [frames, 3, 32], the
    dump-feature arguments that dump them in float32)."""
    from test_pretrained import TINY_YAML, tiny_hugging_face_model

    hf = tiny_hugging_face_model(tmp_path / "hf")
    audio = tmp_path / "audio"
    audio.mkdir()
    wav = np.random.default_rng(3).uniform(-0.3, 0.3, 12000).astype("float32")
    sf.write(audio / "a.wav", wav, 16000, subtype="FLOAT")
    (audio / "files.txt").write_text("a.wav\n")
    with torch.no_grad():
        expected = torch.stack(hf(torch.from_numpy(wav)[None], output_hidden_states=True).hidden_states, 2)[0]
    return expected, ["-c", str(TINY_YAML), "prepare_data.corpus=list", f"prepare_data.list_file={audio / 'files.txt'}",
                      "dump.dtype=float32", f"pretrained.upstream={tmp_path / 'hf'}"]


@pytest.mark.e2e
def test_a_hugging_face_folder_given_in_pretrained_is_what_the_dump_holds(cli, tmp_path):
    """pretrained.upstream loads into the upstream that dumps, as into a training task: the dump holds the Hugging
    Face model's own hidden states (issue 30: dump once from the same weights s3prl loads)."""
    expected, common = hugging_face_dump(tmp_path)
    result = cli("run", "dump-feature", "--target-dir", tmp_path / "exp", *common)
    assert result.exit_code == 0, result.output
    shards = FeatureShards.open(tmp_path / "exp" / "features")
    assert shards.meta["pretrained"] == [{"name": "upstream", "source": str(tmp_path / "hf"), "format": "huggingface"}]
    torch.testing.assert_close(torch.from_numpy(np.array(shards.get("a"))), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.e2e
def test_dump_layers_keeps_only_the_layers_named_and_a_wrong_one_is_one_line(cli, tmp_path):
    """dump.layers=[0,-1]: the dump holds those two of the upstream's 3 hidden states, in that order (1/13 of the
    disk a layer for a base model), and the precomputed upstream reads 2 layers; a layer the upstream does not have,
    or one named twice, is a config error naming dump.layers before stage 0."""
    from speechrecipe.nn.upstream import build_upstream

    expected, common = hugging_face_dump(tmp_path)
    for layers, why in (("[3]", "3 is not one of this upstream's 3 hidden states"), ("[1,-2]", "names a layer twice"),
                        ("1", "is not a list of layers")):
        result = cli("run", "dump-feature", "--target-dir", tmp_path / "bad", *common, f"dump.layers={layers}")
        assert result.exit_code == 2 and "dump.layers" in result.stderr and why in result.stderr, result.output
        assert not (tmp_path / "bad" / "features").exists()
    result = cli("run", "dump-feature", "--target-dir", tmp_path / "exp", *common, "dump.layers=[0,-1]")
    assert result.exit_code == 0, result.output
    shards = FeatureShards.open(tmp_path / "exp" / "features")
    assert (shards.meta["num_layers"], shards.meta["layers"], shards.meta["upstream_num_layers"]) == (2, [0, 2], 3)
    torch.testing.assert_close(torch.from_numpy(np.array(shards.get("a"))), expected[:, [0, 2]], atol=1e-4, rtol=1e-4)
    assert build_upstream("precomputed", path=str(tmp_path / "exp")).num_layers == 2
    result = cli("run", "dump-feature", "--target-dir", tmp_path / "first", *common, "dump.layers=[1]")
    assert result.exit_code == 0, result.output
    shards = FeatureShards.open(tmp_path / "first" / "features")  # layer 1: the second transformer layer is not run
    assert (shards.meta["layers"], shards.meta["hidden_states_computed"]) == ([1], 2)
    torch.testing.assert_close(torch.from_numpy(np.array(shards.get("a"))), expected[:, [1]], atol=1e-4, rtol=1e-4)


def test_config_mistakes_are_one_line_before_any_work(cli, tmp_path):
    target = tmp_path / "exp"
    result = cli("run", "dump-feature", "--target-dir", target, "prepare_data.conf.word=[yes]")
    assert result.exit_code == 2 and "prepare_data.conf.word: not an option of the speech_commands parser; did you mean words?" in result.stderr
    result = cli("run", "dump-feature", "--target-dir", target, "prepare_data.corpus=librispeech", "prepare_data.conf.test_sets=null")
    assert result.exit_code != 0
    result = cli("run", "dump-feature", "--target-dir", target, "prepare_data.corpus=list")
    assert result.exit_code == 2 and "prepare_data.list_file: None is not a file" in result.stderr
    result = cli("run", "ks", "--target-dir", target / "ks", "build_upstream.name=precomputed",
                 f"build_upstream.precomputed.path={tmp_path / 'nothing'}")
    assert result.exit_code == 2 and "build_upstream.precomputed.path" in result.stderr and "no finished feature dump" in result.stderr
    assert not (target / "features").exists()


KS_FAST = ("train.total_steps=30", "train.eval_step=30", "train.save_step=30", "build_batch_sampler.batch_size=16")
# the fbank dump-feature dumps by default, and no augmentation (the ks defaults shift, add noise and mask)
KS_PLAIN = ("build_upstream.fbank.n_mels=80", "build_upstream.fbank.cmn=false", "build_dataset.augment.shift_ms=0",
            "build_dataset.augment.noise_prob=0", "build_task.specaugment.apply=false")


@pytest.mark.e2e
def test_ks_on_precomputed_features_trains_the_same_weights_as_on_the_fly(cli, tmp_path):
    """Whole 1 s clips, no augmentation, float32 dump: nothing random touches the waveform."""
    dump = tmp_path / "dump"
    assert cli("run", "dump-feature", "--target-dir", dump, "dump.dtype=float32").exit_code == 0
    models = {}
    for upstream in ("fbank", "precomputed"):
        target = tmp_path / upstream
        result = cli("run", "ks", "--stop", "2", "--target-dir", target, f"build_upstream.name={upstream}",
                     f"build_upstream.precomputed.path={dump}", *KS_FAST, *KS_PLAIN)
        assert result.exit_code == 0, result.output
        models[upstream] = torch.load(target / "checkpoints" / "step-30.ckpt", weights_only=True)["model"]
    trained = [k for k in models["precomputed"] if k.startswith("downstream.")]
    assert trained and all(torch.equal(models["fbank"][k], models["precomputed"][k]) for k in trained)
    result = cli("run", "dump-feature", "--target-dir", tmp_path / "trained", "dump.dtype=float32",
                 f"dump.checkpoint={tmp_path / 'fbank' / 'checkpoints' / 'step-30.ckpt'}")
    assert result.exit_code == 0, result.output
    again = FeatureShards.open(tmp_path / "trained" / "features")  # its front end: fbank + a one-layer featurizer
    first = FeatureShards.open(dump / "features")
    utt = sorted(first.entries)[0]
    assert np.array_equal(again.get(utt), first.get(utt))


@pytest.mark.e2e
def test_asv_and_sid_train_on_precomputed_frames(cli, tmp_path):
    tiny = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
    dump = tmp_path / "dump"
    result = cli("run", "dump-feature", "--target-dir", dump, "prepare_data.corpus=voxceleb1",
                 "build_upstream.fbank.cmn=true")
    assert result.exit_code == 0, result.output
    target = tmp_path / "asv"
    result = cli("run", "asv", "--target-dir", target, "-c", tiny, "build_upstream.name=precomputed",
                 f"build_upstream.precomputed.path={dump}", "train.total_steps=40", "train.eval_step=20",
                 "train.save_step=20")
    assert result.exit_code == 0, result.output
    assert 0 <= json.loads((target / "results" / "results.json").read_text())["voxceleb1_o"]["eer"] <= 1
    result = cli("run", "sid", "--stop", "2", "--target-dir", tmp_path / "sid", "build_upstream.name=precomputed",
                 f"build_upstream.precomputed.path={dump}", "train.total_steps=10", "train.eval_step=10",
                 "train.save_step=10",  # the same dump serves sid: every utterance of iden_split.txt
                 "build_dataset.augment.speed_perturb=false")  # (the default: speed perturbation needs waveforms)
    assert result.exit_code == 0, result.output
    result = cli("run", "asv", "--target-dir", tmp_path / "aug", "-c", tiny, "build_upstream.name=precomputed",
                 f"build_upstream.precomputed.path={dump}", "build_dataset.augment.speed_perturb=true")
    assert result.exit_code == 2 and "build_dataset.augment" in result.stderr
@pytest.mark.e2e
def test_a_dump_of_another_version_of_the_corpus_is_refused_and_a_copy_at_another_path_is_not(cli, tmp_path):
    """Issue 22: a dump of the mini Speech Commands with every clip cut to 0.5 s is not read for the original;
    a dump of a byte-identical copy elsewhere is."""
    from speechrecipe.config import asset_path

    original = asset_path("mini/speech_commands")
    trimmed = Path(shutil.copytree(original, tmp_path / "trimmed"))
    for clip in trimmed.glob("*/*.*"):
        if clip.parent.name != "_background_noise_" and clip.suffix in (".wav", ".flac"):
            data, rate = sf.read(clip, dtype="int16")
            sf.write(clip, data[: rate // 2], rate, subtype=sf.info(clip).subtype)
    copy = Path(shutil.copytree(original, tmp_path / "copy"))
    for corpus in (trimmed, copy):
        result = cli("run", "dump-feature", "--stop", "1", "--target-dir", tmp_path / f"dump_{corpus.name}",
                     f"prepare_data.dataset_root={corpus}")
        assert result.exit_code == 0, result.output
    entry = next(e for e in FeatureShards.open(tmp_path / "dump_trimmed" / "features").entries.values()
                 if not e["id"].startswith("_silence_"))
    assert entry["num_samples"] == 8000 and entry["audio"]["num_frames"] == 8000

    result = cli("run", "ks", "--stop", "2", "--target-dir", tmp_path / "on_trimmed", "build_upstream.name=precomputed",
                 f"build_upstream.precomputed.path={tmp_path / 'dump_trimmed'}", *KS_FAST, *KS_PLAIN)
    assert result.exit_code == 1
    (line,) = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert f"the dump {tmp_path / 'dump_trimmed' / 'features'} was not made from this corpus" in line, line
    made_from = FeatureShards.open(tmp_path / "dump_copy" / "features").entries[entry["id"]]["audio"]["num_frames"]
    assert made_from > 8000 and "samples in the dump, " in line and re.search(r": 8000 samples in the dump, \d+ in the manifest", line), line
    assert not list((tmp_path / "on_trimmed").glob("checkpoints/*.ckpt"))

    result = cli("run", "ks", "--stop", "2", "--target-dir", tmp_path / "on_copy", "build_upstream.name=precomputed",
                 f"build_upstream.precomputed.path={tmp_path / 'dump_copy'}", *KS_FAST, *KS_PLAIN)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "on_copy" / "checkpoints" / "step-30.ckpt").is_file()
    assert "this config's build_upstream options other than precomputed are not used" in (tmp_path / "on_copy" / "log.txt").read_text()


@pytest.mark.e2e
def test_asr_trains_and_decodes_from_a_dump(cli, tmp_path):
    """A dump of LibriSpeech (frame rate and lengths from its index) serves asr as it serves the classifiers."""
    dump = tmp_path / "dump"
    result = cli("run", "dump-feature", "--target-dir", dump, "prepare_data.corpus=librispeech",
                 "prepare_data.conf.train_sets=[train-clean-100]", "prepare_data.conf.valid_sets=[dev-clean]",
                 "prepare_data.conf.test_sets=[test-clean]", "build_upstream.fbank.cmn=true")
    assert result.exit_code == 0, result.output
    target = tmp_path / "asr"
    result = cli("run", "asr", "--target-dir", target, "-c", Path(__file__).parent / "fixtures" / "tiny_asr.yaml",
                 "build_upstream.name=precomputed", f"build_upstream.precomputed.path={dump}",
                 "train.total_steps=10", "train.eval_step=10", "train.save_step=10")
    assert result.exit_code == 0, result.output
    results = json.loads((target / "results" / "results.json").read_text())
    assert results["test-clean"]["beam_words"] > 0 and 0 <= results["test-clean"]["beam_cer"] <= 1.5


def test_progress_in_a_pipe_is_plain_lines(tmp_path):
    """Issue 23.7: stdout and stderr are pipes, so every progress display prints whole lines, never a `\\r` bar."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for number in range(4):
        sf.write(audio / f"{number}.wav", rng.uniform(-0.3, 0.3, 16000).astype("float32"), 16000)
    listing = audio / "files.txt"
    listing.write_text("".join(f"{number}.wav\n" for number in range(4)))
    # bytes, not text: text mode would turn each "\r" into a newline
    result = subprocess.run(speechrecipe("--target-dir", str(tmp_path / "exp"), "--cache-dir", str(tmp_path / "cache"),
                                         "prepare_data.corpus=list", f"prepare_data.list_file={listing}",
                                         "dump.shard_secs=1"), capture_output=True, timeout=600)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output[-3000:]
    assert "\r" not in output and "\x1b[" not in output, output
    shards = [line for line in output.splitlines() if line.startswith("dump: shard ")]
    assert shards and shards[-1].startswith("dump: shard 4/4 (100%)"), output
