"""Utterance classification (ks, sid, intent): corpus parsers on small fake trees, the clip reader,
class-balanced sampling, the metrics, and stages 0-4 of each problem through the CLI on the
bundled mini corpora (the model must learn: test accuracy far above chance)."""
from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrecipe.config import load_config
from speechrecipe.data.clips import Clip, FieldLabels
from speechrecipe.data.corpora.fluent_speech_commands import prepare_fluent_speech_commands
from speechrecipe.data.corpora.speech_commands import SILENCE_REGIONS, prepare_speech_commands
from speechrecipe.data.manifest import read_jsonl, split_manifest
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.errors import ConfigError, DataError
from speechrecipe.problems.ks import KeywordSpotting
from speechrecipe.tasks.classification import classification_metrics
from test_numbers import assert_headline_is_the_resampled_statistic

RATE = 16000
WORDS = ["yes", "no"]


def write(path: Path, frames: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, frames).astype("float32"), RATE)
    return path


# --- Speech Commands ----------------------------------------------------------------------------


@pytest.fixture
def speech_commands(tmp_path) -> Path:
    """Words yes, no, cat, dog x speakers a..e; c is validation, d and e test; two 2 s noise files."""
    root = tmp_path / "sc"
    for w, word in enumerate(["yes", "no", "cat", "dog"]):
        for s, speaker in enumerate("abcde"):
            write(root / word / f"{speaker}0000000_nohash_0.wav", 1600, seed=10 * w + s)
    (root / "validation_list.txt").write_text("".join(f"{w}/c0000000_nohash_0.wav\n" for w in ["yes", "no", "cat", "dog"]))
    (root / "testing_list.txt").write_text("".join(f"{w}/{s}0000000_nohash_0.wav\n" for w in ["yes", "cat"] for s in "de")
                                           + "no/d0000000_nohash_0.wav\n")
    for k, name in enumerate(["white_noise", "pink_noise"]):
        write(root / "_background_noise_" / f"{name}.wav", 2 * RATE, seed=100 + k)
    return root


def prepare_sc(root: Path, out: Path, **kw) -> dict:
    args = dict(words=WORDS, unknown=True, silence_fraction=0.5, silence_secs=0.1, seed=0, num_workers=1)
    return prepare_speech_commands(root, out, **{**args, **kw})


def test_speech_commands_lists_make_the_splits_and_other_words_are_unknown(speech_commands, tmp_path):
    prepare_sc(speech_commands, tmp_path / "out", silence_fraction=0)
    splits = {s: read_jsonl(split_manifest(tmp_path / "out", s)) for s in ("train", "valid", "test")}
    assert sorted(r["id"] for r in splits["test"]) == sorted(
        ["yes/d0000000_nohash_0", "yes/e0000000_nohash_0", "cat/d0000000_nohash_0", "cat/e0000000_nohash_0",
         "no/d0000000_nohash_0"])
    assert {r["id"].split("/")[1][0] for r in splits["valid"]} == {"c"}
    assert len(splits["train"]) == 4 * 5 - 4 - 5  # files in neither list
    assert Counter(r["label"] for r in splits["train"]) == {"yes": 2, "no": 3, "_unknown_": 6}
    assert {r["word"] for r in splits["train"] if r["label"] == "_unknown_"} == {"cat", "dog"}


def test_speech_commands_can_leave_other_words_out(speech_commands, tmp_path):
    prepare_sc(speech_commands, tmp_path / "out", unknown=False, silence_fraction=0)
    assert {r["label"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")} == {"yes", "no"}


def test_silence_crops_come_from_each_splits_own_region_of_the_noise(speech_commands, tmp_path):
    summary = prepare_sc(speech_commands, tmp_path / "out")
    for split, words in (("train", 11), ("valid", 4), ("test", 5)):
        rows = [r for r in read_jsonl(split_manifest(tmp_path / "out", split)) if r["label"] == "_silence_"]
        assert len(rows) == round(0.5 * words) == summary[split]["_silence_"]
        low, high = SILENCE_REGIONS[split]
        for row in rows:
            assert Path(row["path"]).parent.name == "_background_noise_"
            assert row["num_frames"] == int(0.1 * RATE)
            assert low * 2 * RATE <= row["start"] and row["start"] + row["num_frames"] <= high * 2 * RATE


def test_silence_crops_depend_only_on_the_seed(speech_commands, tmp_path):
    def crops(out: str, seed: int) -> list:
        prepare_sc(speech_commands, tmp_path / out, seed=seed)
        return [(r["path"], r["start"]) for r in read_jsonl(tmp_path / out / "train.jsonl") if r["label"] == "_silence_"]

    assert crops("a", 0) == crops("b", 0) != crops("c", 1)


def test_lists_naming_wav_find_flac_and_missing_files_are_named(speech_commands, tmp_path):
    wav = speech_commands / "yes" / "d0000000_nohash_0.wav"
    data, rate = sf.read(wav)
    sf.write(wav.with_suffix(".flac"), data, rate)
    wav.unlink()
    prepare_sc(speech_commands, tmp_path / "out")
    (speech_commands / "no" / "d0000000_nohash_0.wav").unlink()
    with pytest.raises(DataError, match=r"testing_list.txt names 1 files missing .*no/d0000000_nohash_0.wav"):
        prepare_sc(speech_commands, tmp_path / "out2")


def test_unknown_word_and_short_noise_are_refused_with_the_fix(speech_commands, tmp_path):
    with pytest.raises(ConfigError, match="prepare_data.words: yess has no clips"):
        prepare_sc(speech_commands, tmp_path / "out", words=["yess"])
    with pytest.raises(DataError, match="too short .*silence_fraction=0"):
        prepare_sc(speech_commands, tmp_path / "out", silence_secs=0.5)  # the valid region is 0.2 s


def test_released_test_set_is_a_second_test_set(speech_commands, tmp_path):
    released = tmp_path / "released"
    for label in ("yes", "_unknown_", "_silence_"):
        write(released / label / "x.wav", 1600, seed=7)
    summary = prepare_sc(speech_commands, tmp_path / "out", released_test_dir=str(released))
    assert summary["released"] == {"_silence_": 1, "_unknown_": 1, "yes": 1}


def test_yaml_booleans_in_words_are_refused_before_any_work(cli, tmp_path):
    result = cli("run", "ks", "--target-dir", tmp_path / "exp", "prepare_data.words=[yes,no]")
    assert result.exit_code == 2 and "quote them" in result.stderr


# --- Fluent Speech Commands --------------------------------------------------------------------

HEADER = ["", "path", "speakerId", "transcription", "action", "object", "location"]


def fsc_tree(root: Path, flac: bool = False) -> Path:
    rows = {"train": [("spkA", "Turn on the lights", "activate", "lights", "none"),
                      ("spkA", "Heat up, please", "increase", "heat", "none")],
            "valid": [("spkB", "Lights off", "deactivate", "lights", "none")],
            "test": [("spkC", "Kitchen lights on", "activate", "lights", "kitchen")]}
    (root / "data").mkdir(parents=True)
    n = 0
    for split, items in rows.items():
        with open(root / "data" / f"{split}_data.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            for i, (spk, text, *slots) in enumerate(items):
                rel = f"wavs/speakers/{spk}/utt{n}.wav"
                write((root / rel).with_suffix(".flac" if flac else ".wav"), 3200, seed=n)
                writer.writerow([i, rel, spk, text, *slots])
                n += 1
    return root


def test_fsc_csv_columns_become_row_fields(tmp_path):
    root = fsc_tree(tmp_path / "fsc")
    summary = prepare_fluent_speech_commands(root, tmp_path / "out", num_workers=1)
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert summary["train_utterances"] == 2 and summary["test_speakers"] == 1
    assert train[1]["id"] == "spkA/utt1" and train[1]["speaker"] == "spkA"
    assert train[1]["transcription"] == "Heat up, please"  # a quoted comma stays in its field
    assert (train[1]["action"], train[1]["object"], train[1]["location"]) == ("increase", "heat", "none")
    assert "" not in train[1] and Path(train[1]["path"]).is_file()


def test_fsc_wav_paths_find_flac_and_missing_files_are_named(tmp_path):
    root = fsc_tree(tmp_path / "fsc", flac=True)
    prepare_fluent_speech_commands(root, tmp_path / "out", num_workers=1)
    next((root / "wavs" / "speakers" / "spkC").iterdir()).unlink()
    with pytest.raises(DataError, match=r"test_data.csv names 1 files missing .*spkC/utt3.wav"):
        prepare_fluent_speech_commands(root, tmp_path / "out2", num_workers=1)


def test_fsc_header_without_path_is_refused(tmp_path):
    root = fsc_tree(tmp_path / "fsc")
    (root / "data" / "valid_data.csv").write_text(",file,speakerId,transcription\n0,a.wav,s,t\n")
    with pytest.raises(DataError, match=r"valid_data.csv: header .* lacks path"):
        prepare_fluent_speech_commands(root, tmp_path / "out", num_workers=1)


# --- clips, sampling, metrics ------------------------------------------------------------------


def test_clip_reads_a_rows_segment_and_crops_only_when_asked(tmp_path):
    path = write(tmp_path / "noise.wav", 3 * RATE, seed=1)
    whole, _ = sf.read(path, dtype="float32")
    row = {"id": "s", "path": str(path), "start": RATE, "num_frames": 4000, "sample_rate": RATE, "label": "x"}
    labels = FieldLabels(("label",), ({"x": 3},))
    sample = Clip(RATE, ("labels",), labels).preprocessing(row, random.Random(0))
    assert torch.equal(sample["wav"], torch.from_numpy(whole[RATE : RATE + 4000])) and sample["labels"] == [3]
    cropped = Clip(RATE, ("labels",), labels, max_secs=0.1).preprocessing(row, random.Random(0))["wav"]
    offset = int(np.flatnonzero(np.isclose(whole, float(cropped[0])))[0])
    assert cropped.numel() == 1600 and RATE <= offset <= RATE + 4000 - 1600


class Rows:
    """Just what build_batch_sampler reads from a dataset."""

    def __init__(self, labels: list[str]):
        self.rows = [{"label": y} for y in labels]

    def lengths(self) -> list[int]:
        return [RATE] * len(self.rows)


def test_class_balanced_sampling_draws_every_class_about_equally(tmp_path):
    conf = load_config("ks", overrides=["build_batch_sampler.batch_size=10", "build_batch_sampler.balance_by=label"])
    problem = KeywordSpotting(conf, ExperimentPaths(tmp_path, tmp_path / "cache"))
    labels = ["_unknown_"] * 800 + ["yes"] * 150 + ["_silence_"] * 50
    sampler = problem.build_batch_sampler(conf.build_batch_sampler, Rows(labels))
    drawn = Counter(labels[i] for epoch in range(3) for batch in sampler.epoch_batches(epoch) for i, _ in batch)
    assert all(abs(n / sum(drawn.values()) - 1 / 3) < 0.05 for n in drawn.values()), drawn
    conf.build_batch_sampler.balance_by = None
    plain = problem.build_batch_sampler(conf.build_batch_sampler, Rows(labels))
    assert Counter(labels[i] for b in plain.epoch_batches(0) for i, _ in b)["_unknown_"] == 800


def test_utterance_accuracy_needs_every_field_right():
    logits = [torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 1.0]]), torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0]])]
    labels = torch.tensor([[0, 0], [1, 1], [2, 1]])
    metrics = classification_metrics(logits, labels, ["action", "object"], top_k=[2])
    assert metrics["accuracy_action"] == pytest.approx(2 / 3) and metrics["accuracy_object"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["top2_accuracy_action"] == 1.0


@pytest.mark.e2e
def test_problem_modules_import_no_torch():
    code = ("import sys; from speechrecipe.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['stages', 'ks']); r2 = CliRunner().invoke(app, ['stages', 'intent']); "
            "assert r.exit_code == r2.exit_code == 0, r.output; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- stages 0-4 through the CLI on the bundled mini corpora ------------------------------------

FAST = ["train.log_step=50", "train.num_workers=0", "evaluate.test_ckpt_steps=[valid_best]"]


def run_all(cli, problem: str, target: Path, *overrides: str) -> dict:
    result = cli("run", problem, "--target-dir", target, *FAST, *overrides)
    assert result.exit_code == 0, result.stderr
    for name in ("results/results.json", "results/README.md", "checkpoints/valid_best.ckpt", "training_curve.png"):
        assert (target / name).is_file(), name
    assert_headline_is_the_resampled_statistic(target, problem)  # issue 22
    return json.loads((target / "results" / "results.json").read_text())


@pytest.mark.e2e
def test_ks_end_to_end_learns_keywords(cli, tmp_path):
    target = tmp_path / "ks"
    results = run_all(cli, "ks", target, "train.total_steps=300", "train.eval_step=100", "train.save_step=300")
    chance = 1 / 12
    assert results["test"]["accuracy"] > 4 * chance, results
    classes = json.loads((target / "classes_label.json").read_text())["labels"]
    assert set(classes) == {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_", "_silence_"}
    with open(target / "results" / "test.confusion_label.csv") as f:
        matrix = list(csv.reader(f))
    assert matrix[0][1:] == classes and sum(int(c) for row in matrix[1:] for c in row[1:]) == 71
    assert (target / "results" / "test.confusion_label.png").stat().st_size > 1000
    best = results["test"]["checkpoint"]
    predictions = (target / "evaluation" / best / "test.predictions.tsv").read_text().splitlines()
    assert predictions[0] == "id\tlabel\tlabel_predicted" and len(predictions) == 72


def best_constant(target: Path, results: dict) -> float:
    """Accuracy (a fraction, as results.json's) on the test set of the best constant answer (the most frequent class, or combination of
    classes over the fields, of the test set itself): what the majority class reaches at most."""
    predictions = target / "evaluation" / results["test"]["checkpoint"] / "test.predictions.tsv"
    with open(predictions, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    truths = Counter(tuple(v for k, v in row.items() if k != "id" and not k.endswith("_predicted")) for row in rows)
    return truths.most_common(1)[0][1] / len(rows)


@pytest.mark.e2e
def test_sid_end_to_end_identifies_speakers(cli, tmp_path):
    """The default recipe with 75 of its 200 updates beats the majority class by 15+ points on test utterances it never saw."""
    results = run_all(cli, "sid", tmp_path / "sid", "train.total_steps=75", "train.eval_step=25", "train.save_step=75")
    assert results["test"]["accuracy"] >= best_constant(tmp_path / "sid", results) + 0.15, results
    assert results["test"]["top5_accuracy"] > results["test"]["accuracy"]
    assert "top-5 (%)" in (tmp_path / "sid" / "results" / "README.md").read_text()


@pytest.mark.e2e
def test_intent_end_to_end_gets_whole_intents_right(cli, tmp_path):
    target = tmp_path / "intent"
    results = run_all(cli, "intent", target, "train.total_steps=150", "train.eval_step=75", "train.save_step=150")
    assert results["test"]["accuracy"] >= best_constant(target, results) + 0.15, results  # unseen test speakers
    for field in ("action", "object", "location"):
        assert results["test"][f"accuracy_{field}"] >= results["test"]["accuracy"]
        assert results["test"]["intervals"][f"accuracy_{field}"]["unit"] == "utterance"
        assert (target / "results" / f"test.confusion_{field}.png").is_file()
    found = results["test"]["intervals"]["accuracy"]  # resampled by utterance from the predictions file
    assert found["units"] == 60 and found["low"] <= results["test"]["accuracy"] <= found["high"]


@pytest.mark.e2e
def test_ks_trains_the_same_from_packed_clips_as_from_the_files(cli, tmp_path, isolated_cache):
    def train(name: str, pack: str) -> dict:
        target = tmp_path / name
        result = cli("run", "ks", "--stop", "2", "--target-dir", target, *FAST, f"build_dataset.pack_audio={pack}",
                     "build_dataset.max_secs=0.8", "train.total_steps=30", "train.eval_step=30", "train.save_step=30")
        assert result.exit_code == 0, result.stderr
        return torch.load(target / "checkpoints" / "step-30.ckpt", weights_only=True)["model"]

    packed, files = train("packed", "true"), train("files", "false")
    assert packed.keys() == files.keys() and all(torch.equal(packed[k], files[k]) for k in packed)
    packs = {p.name.split("-")[0] for p in isolated_cache.rglob("packed/*.json")}
    assert {"train", "valid"} <= packs


@pytest.mark.e2e
def test_editing_a_list_or_adding_a_clip_prepares_the_corpus_again(cli, speech_commands, tmp_path):
    target = tmp_path / "exp"
    args = ("--stop", "1", "--target-dir", target, f"prepare_data.dataset_root={speech_commands}",
            "prepare_data.words=[\"yes\",\"no\"]", "prepare_data.silence_secs=0.1", "prepare_data.silence_fraction=0.5")

    def run() -> str:
        result = cli("run", "ks", *args)
        assert result.exit_code == 0, result.stderr
        return result.stderr

    def stage0() -> str:
        result = cli("stages", "ks", *args[2:])
        return next(line for line in result.stdout.splitlines() if line.startswith("0 "))

    def manifest(split: str) -> list[str]:
        (path,) = isolated_manifests(split)
        return sorted(r["id"] for r in read_jsonl(path))

    def isolated_manifests(split: str) -> list[Path]:
        return [p for p in Path(os.environ["SPEECHRECIPE_CACHE_DIR"]).glob(f"ks/*/{split}.jsonl")
                if str(speech_commands) in p.read_text()]

    run()
    assert "stage 0 (prepare data) is up to date; skipping" in run()
    tests = manifest("test_test")
    lists = speech_commands / "testing_list.txt"
    lists.write_text("".join(lists.read_text().splitlines(keepends=True)[1:]))  # one test clip fewer
    assert "the corpus changed since it was prepared" in stage0()
    log = run()
    assert "testing_list.txt changed); preparing it again" in log
    assert set(tests) - set(manifest("test_test")) == {"yes/d0000000_nohash_0"}  # its first line
    train = manifest("train")
    write(speech_commands / "yes" / "f0000000_nohash_0.wav", 1600, seed=77)  # a new clip in a word folder
    log = run()
    assert f"files were added or removed in {speech_commands / 'yes'}" in log
    assert set(manifest("train")) - set(train) == {"yes/f0000000_nohash_0"}
    assert "stage 0 (prepare data) is up to date; skipping" in run()
