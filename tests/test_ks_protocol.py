"""ks's class-share protocol (issue 24), through the CLI on a generated Speech Commands corpus whose voices
and `_unknown_` words no bundled corpus has and whose test speakers are heard nowhere else
(bench/calibration/make_ks_corpus.py, small scale): the default must beat always answering `_unknown_`
on the unknown-heavy test split as published and on a class-balanced released test set, and every split's
class shares must follow the configured protocol, logged by stage 0 and shown in the results README."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from speechrecipe.data.manifest import read_jsonl
from speechrecipe.data.tsv import write_tsv
from speechrecipe.tasks.classification import classification_metrics
from speechrecipe.tasks.unit_statistics import classification_units

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"}
# 12 / 3 / 4 speakers x (10 command words + 9 `_unknown_` words x 2 takes) and 4 released-test speakers
SCALE = ["--train-speakers", "12", "--valid-speakers", "3", "--test-speakers", "4", "--released-speakers", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("needs espeak-ng and sox (.ci/run installs them)")
    out = tmp_path_factory.mktemp("ks_calibration") / "corpus"
    subprocess.run([sys.executable, str(REPO / "bench/calibration/make_ks_corpus.py"), "--out", str(out), *SCALE],
                   check=True, capture_output=True)
    return out


def data_args(corpus: Path) -> list[str]:
    return [f"prepare_data.dataset_root={corpus / 'speech_commands'}",
            f"prepare_data.released_test_dir={corpus / 'released_test'}"]


def run_ks(cli, target: Path, *args: str) -> Path:
    """`speechrecipe run ks` with a cache of its own; returns its prepared folder (cache/ks/<digest>)."""
    result = cli("run", "ks", "--target-dir", target, "--cache-dir", target / "cache", *args)
    assert result.exit_code == 0, result.stderr
    (prepared,) = (target / "cache" / "ks").glob("*/summary.json")
    return prepared.parent


def shares(prepared: Path, split: str) -> Counter:
    """{label: clips} of a prepared split's manifest."""
    name = split if split in ("train", "valid") else f"test_{split}"
    return Counter(row["label"] for row in read_jsonl(prepared / f"{name}.jsonl"))


@pytest.mark.e2e  # generates a corpus with espeak-ng (and trains)
def test_default_beats_always_unknown_on_the_published_test_split_and_a_class_balanced_one(cli, corpus, tmp_path):
    target = tmp_path / "ks"
    prepared = run_ks(cli, target, *data_args(corpus), "train.total_steps=300")
    results = json.loads((target / "results" / "results.json").read_text())
    test, released = shares(prepared, "test"), shares(prepared, "released")
    always_unknown = test["_unknown_"] / sum(test.values())
    assert always_unknown > 0.5  # as published: `_unknown_` is the majority of the test split
    assert set(released.values()) == {4}  # class-balanced: always `_unknown_` gets 1/12
    for name, majority in (("test", always_unknown), ("released", 1 / 12)):
        entry = results[name]
        assert entry["accuracy"] >= majority + 0.15, (name, majority, entry)
        assert entry["balanced_accuracy"] >= 1 / 12 + 0.15, (name, entry)
        interval = entry["intervals"]["balanced_accuracy"]
        assert interval["low"] <= entry["balanced_accuracy"] <= interval["high"] and interval["unit"] == "utterance"
    readme = (target / "results" / "README.md").read_text()
    assert "balanced accuracy (%)" in readme and "Training prior: the train split's shares" in readme
    assert f"| test | {sum(test.values())} clips: _unknown_ {100 * always_unknown:.1f} %" in readme


@pytest.mark.e2e  # generates a corpus with espeak-ng (and trains)
def test_train_and_test_class_shares_follow_the_configured_protocol(cli, corpus, tmp_path):
    published = run_ks(cli, tmp_path / "published", "--stop", "0", *data_args(corpus))
    listed = {"train": 12, "valid": 3, "test": 4}  # speakers; each says 10 command words and 18 `_unknown_` clips
    for split, speakers in listed.items():
        counts = shares(published, split)
        assert counts["_unknown_"] == 18 * speakers and sum(counts[w] for w in COMMANDS) == 10 * speakers
        assert counts["_silence_"] == round(0.1 * 28 * speakers)
    log = (tmp_path / "published" / "log.txt").read_text()
    assert "train: 370 clips: _unknown_ 58.4 %, _silence_ 9.2 %, 10 words 32.4 %" in log
    assert "training prior: the train split's shares (build_batch_sampler.balance_by: null, _unknown_ 58.4 %)" in log
    assert "training learns" not in log
    run_ks(cli, tmp_path / "balanced", "--stop", "0", *data_args(corpus), "build_batch_sampler.balance_by=label")
    log = (tmp_path / "balanced" / "log.txt").read_text()  # class-balanced training against the published test split
    assert "training learns _unknown_ at 8.3 % and the test split has 58.5 %" in log

    warden = run_ks(cli, tmp_path / "warden", "--stop", "0", *data_args(corpus), "prepare_data.unknown_fraction=0.5")
    for split, speakers in listed.items():
        counts = shares(warden, split)
        unknown = 18 * speakers if split == "test" else round(0.5 * 10 * speakers)  # the test split stays as published
        assert counts["_unknown_"] == unknown and counts["_silence_"] == round(0.1 * (10 * speakers + unknown))
    # prepared again in another cache: the seed alone decides which `_unknown_` clips stay
    again = run_ks(cli, tmp_path / "again", "--stop", "0", *data_args(corpus), "prepare_data.unknown_fraction=0.5")
    assert (again / "train.jsonl").read_bytes() == (warden / "train.jsonl").read_bytes()


def test_balanced_accuracy_is_mean_recall_and_its_interval_resamples_utterances(tmp_path):
    truth = ["yes"] * 6 + ["_unknown_"] * 30 + ["_silence_"] * 4
    said = ["yes"] * 3 + ["_unknown_"] * 3 + ["_unknown_"] * 30 + ["_silence_"] * 4  # half of yes is missed
    classes = sorted(set(truth))
    logits = torch.nn.functional.one_hot(torch.tensor([classes.index(s) for s in said]), len(classes)).float()
    labels = torch.tensor([[classes.index(t)] for t in truth])
    metrics = classification_metrics([logits], labels, ["label"], [], balanced=True)
    assert metrics["accuracy"] == pytest.approx(37 / 40) and metrics["balanced_accuracy"] == pytest.approx(2.5 / 3)
    write_tsv(tmp_path / "t.predictions.tsv", [[f"u{k:02d}", t, s] for k, (t, s) in enumerate(zip(truth, said))],
              ["id", "label", "label_predicted"])
    stats = classification_units(tmp_path / "t.predictions.tsv", balanced=True)
    assert stats.metrics(np.ones((1, 40)))["balanced_accuracy"][0] == pytest.approx(2.5 / 3)
    only_missed_yes = np.zeros((1, 40))
    only_missed_yes[0, [3, 10]] = 1  # one missed yes and one `_unknown_`: recalls 0 and 1
    assert stats.metrics(only_missed_yes)["balanced_accuracy"][0] == pytest.approx(0.5)


def test_a_negative_unknown_fraction_is_refused_in_one_line_before_any_work(cli, tmp_path):
    result = cli("run", "ks", "--target-dir", tmp_path / "ks", "prepare_data.unknown_fraction=-0.5")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "prepare_data.unknown_fraction: -0.5 is out of range" in result.stderr
    assert not (tmp_path / "ks" / "records").exists()
