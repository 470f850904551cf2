"""Issue 22: every number the toolkit prints is right, or it says why there is none.

`assert_headline_is_the_resampled_statistic` is the all-units property: for every metric a results.json
reports, drawing every unit of the test set exactly once gives the reported value (the statistic the
intervals resample is the reported one). Each problem's end-to-end test calls it on its trained run
(test_asv, test_asr, test_classification, test_diarization); diarization's awkward cases are here.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from speechrecipe.config import asset_path
from speechrecipe.data.corpora.mini_diarization import MiniSpec, build_mini_corpus
from speechrecipe.registry import PROBLEMS

TINY_DIARIZATION = Path(__file__).parent / "fixtures" / "tiny_diarization.yaml"


def assert_headline_is_the_resampled_statistic(target: Path, problem: str, cache_dir: Path | None = None) -> int:
    """Every metric of results.json that the test set's units define is reproduced (to 1e-12 relative) by
    resampling each unit exactly once; no result file holds NaN or Infinity; a metric without an interval
    says why. Returns how many metric values were checked."""
    from omegaconf import OmegaConf

    from speechrecipe.engine.runner import experiment_paths
    from speechrecipe.registry import resolve_problem

    klass = resolve_problem(problem)
    conf = OmegaConf.load(target / "config.yaml")
    cache = Path(cache_dir or os.environ["SPEECHRECIPE_CACHE_DIR"])
    solver = klass(conf, experiment_paths(klass, conf, target, cache))
    for path in [target / "results" / "results.json", *(target / "results" / "bootstrap").glob("*.json"),
                 *(target / "evaluation").glob("*/*.json")]:
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path} holds {name}"))
    checked = 0
    for test_set, row in json.loads((target / "results" / "results.json").read_text()).items():
        record = json.loads((target / "evaluation" / row["checkpoint"] / f"{test_set}.json").read_text())
        once = solver.unit_statistics(record).all_once()
        assert set(row["intervals"]) <= set(once), (test_set, set(row["intervals"]) - set(once))
        for metric, value in once.items():
            if metric in row and row[metric] is not None:
                assert value == pytest.approx(row[metric], rel=1e-12, abs=0), (test_set, metric)
                checked += 1
        for metric, found in row["intervals"].items():
            assert found["low"] is not None or found["reason"], (test_set, metric, found)
            if found["low"] is not None:
                assert found["low"] <= found["high"]
    assert checked > 0
    return checked


# ----- diarization: one recording, a recording without reference speech, empty splits ----------------


def data_dir(corpus: Path, split: str) -> Path:
    return corpus / "data" / split


def keep_recordings(folder: Path, keep: set[str], speech: set[str]) -> None:
    """Keep `keep` in wav.scp and the rttm lines of those in `speech`; the optional files go (they would
    only repeat the rttm)."""
    for name in ("segments", "utt2spk", "spk2utt", "reco2dur"):
        (folder / name).unlink(missing_ok=True)
    scp = [line for line in (folder / "wav.scp").read_text().splitlines(keepends=True) if line.split()[0] in keep]
    (folder / "wav.scp").write_text("".join(scp))
    rttm = [line for line in (folder / "rttm").read_text().splitlines(keepends=True) if line.split()[1] in speech & keep]
    (folder / "rttm").write_text("".join(rttm))


@pytest.fixture(scope="module")
def awkward_corpus(tmp_path_factory) -> Path:
    """The tiny mini corpus, whose test split has two recordings, the second without reference speech, a split
    `one` holding only the first test recording, and a split `collared` whose only speech is 0.3 s, all within
    a 0.25 s collar."""
    corpus = build_mini_corpus(asset_path("mini/librispeech/LibriSpeech"), tmp_path_factory.mktemp("awkward") / "mini",
                               MiniSpec(recordings={"train": 16, "dev": 4, "test": 2}))
    test = data_dir(corpus, "test")
    first, second = sorted(line.split()[0] for line in (test / "wav.scp").read_text().splitlines())
    shutil.copytree(test, data_dir(corpus, "one"))
    keep_recordings(test, {first, second}, {first})
    keep_recordings(data_dir(corpus, "one"), {first}, {first})
    shutil.copytree(data_dir(corpus, "one"), data_dir(corpus, "collared"))
    (data_dir(corpus, "collared") / "rttm").write_text(f"SPEAKER {first} 1 1.000 0.300 <NA> <NA> a <NA> <NA>\n")
    return corpus


@pytest.fixture(scope="module")
def awkward_run(awkward_corpus, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from speechrecipe.cli import app

    target = tmp_path_factory.mktemp("awkward-run") / "exp"
    result = CliRunner().invoke(app, ["run", "diarization", "-c", str(TINY_DIARIZATION), "--target-dir", str(target),
                                      f"prepare_data.dataset_root={awkward_corpus}", "prepare_data.test_splits=[test, one, collared]",
                                      "evaluate.test_ckpt_steps=[valid_best]", "evaluate.collar_secs=0.25"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return target


def test_one_recording_reproduces_its_der_and_has_no_interval(awkward_run):
    assert_headline_is_the_resampled_statistic(awkward_run, "diarization")
    one = json.loads((awkward_run / "results" / "results.json").read_text())["one"]
    for metric in ("der", "missed", "false_alarm", "confusion"):
        found = one["intervals"][metric]
        assert found["value"] == one[metric] and found["low"] is None and found["high"] is None
        assert "one recording" in found["reason"]
    readme = (awkward_run / "results" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| one |"))
    assert f"| {100 * one['der']:.2f} |" in row  # the value alone, no bracket that would exclude it
    assert "one, der: no interval: the test set has one recording" in readme


def test_resamples_without_reference_speech_are_left_out_and_counted(awkward_run):
    results = json.loads((awkward_run / "results" / "results.json").read_text())["test"]
    found = results["intervals"]["der"]
    # a resample of two recordings draws the one without reference speech twice 1 time in 4
    assert found["units"] == 2 and 150 < found["undefined"] < 350 and found["resamples"] == 1000
    assert found["low"] <= found["high"]
    saved = json.loads((awkward_run / "results" / "bootstrap" / "test.json").read_text())
    assert saved["values"]["der"].count(None) == found["undefined"]
    assert saved["seed"] == 1337  # report.seed is ${seed} in diarization too, not a fixed 0
    readme = (awkward_run / "results" / "README.md").read_text()
    assert f"test, der: {found['undefined']} of 1000 resamples drew recordings on which it is undefined" in readme


@pytest.mark.parametrize("split, emptied, named", [
    ("test", "rttm", "data/test/rttm: split test has no reference speech"),
    ("dev", "rttm", "data/dev/rttm: split dev has no reference speech"),
    ("dev", "wav.scp", "data/dev/wav.scp: split dev lists no recording"),
    ("test", "wav.scp", "data/test/wav.scp: split test lists no recording"),
])
def test_a_split_that_cannot_define_der_is_refused_in_stage_0(awkward_corpus, tmp_path, cli, split, emptied, named):
    corpus = Path(shutil.copytree(awkward_corpus, tmp_path / "corpus"))
    folder = data_dir(corpus, split)
    keep_recordings(folder, set() if emptied == "wav.scp" else {l.split()[0] for l in (folder / "wav.scp").read_text().splitlines()},
                    set())
    result = cli("run", "diarization", "-c", TINY_DIARIZATION, "--target-dir", tmp_path / "exp", "--cache-dir",
                 tmp_path / "cache", f"prepare_data.dataset_root={corpus}", "--stop", "0")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and named in lines[0] and "undefined" in lines[0], result.stderr
    assert not (tmp_path / "exp" / "records" / "stage-0.json").exists()


def test_an_empty_test_list_is_refused_for_keyword_spotting(tmp_path, cli):
    corpus = Path(shutil.copytree(asset_path("mini/speech_commands"), tmp_path / "speech_commands"))
    (corpus / "testing_list.txt").write_text("")
    result = cli("run", "ks", "--stop", "0", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache",
                 f"prepare_data.dataset_root={corpus}")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "test_test.jsonl" in lines[0] and "accuracy is undefined on an empty split" in lines[0]
    assert "testing_list.txt" in lines[0]


def test_der_with_no_scored_reference_speech_is_null_with_its_reason_in_results(awkward_run):
    collared = json.loads((awkward_run / "results" / "results.json").read_text())["collared"]
    for metric in ("der", "missed", "false_alarm", "confusion"):
        assert collared[metric] is None and "no reference speech is scored" in collared["undefined"][metric]
        assert collared["intervals"][metric]["low"] is None and collared["intervals"][metric]["reason"]
    stage3 = json.loads((awkward_run / "evaluation" / "valid_best" / "collared.json").read_text())
    assert stage3["metrics"]["der"] is None and stage3["undefined"]["der"] == collared["undefined"]["der"]
    row = next(line for line in (awkward_run / "results" / "README.md").read_text().splitlines() if line.startswith("| collared |"))
    assert "| — | — | — | — |" in row
    assert "collared, der: no value: no reference speech is scored" in (awkward_run / "results" / "README.md").read_text()


def test_der_without_scored_reference_speech_is_null_with_a_reason():
    from speechrecipe.engine.pairs import defined
    from speechrecipe.metrics.der import corpus_der

    rates = corpus_der({"r": []}, {"r": [(0.0, 1.5, "x")]}).rates()
    metrics, undefined = defined(rates)
    assert metrics["der"] is None and metrics["false_alarm"] is None and "1.50 s of speech" in undefined["der"]
    metrics, undefined = defined({"accuracy": float("nan")})
    assert metrics["accuracy"] is None and "nan" in undefined["accuracy"]


# ----- the report section ------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", sorted(p for p in PROBLEMS if p != "dump-feature"))
def test_every_problem_with_a_report_takes_the_same_report_keys_seeded_from_seed(problem, cli):
    result = cli("config", problem, "seed=77", "report.select=test", "report.resamples=50")
    assert result.exit_code == 0, result.stderr
    from omegaconf import OmegaConf

    report = OmegaConf.create(result.stdout).report
    assert (report.select, report.resamples, report.seed) == ("test", 50, 77)
    result = cli("config", problem, "report.seed=-1")
    assert result.exit_code == 2 and "report.seed" in result.stderr
