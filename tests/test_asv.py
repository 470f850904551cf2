"""Speaker verification: scoring back-end, and stages 0-4 through the real CLI on the mini corpus."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speechrecipe.data.manifest import read_jsonl, read_trials
from speechrecipe.metrics.eer import eer
from speechrecipe.tasks.scoring import Trials, as_norm, cosine_scores, read_scores, write_scores
from test_numbers import assert_headline_is_the_resampled_statistic

TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
# the tiny model, trained long enough to generalise to the unseen test speakers
TRAINED = ["-c", str(TINY), "train.total_steps=96", "train.save_step=24", "train.eval_step=24", "train.keep_num_ckpts=2",
           "build_dataset.crop_secs=2.0", "build_batch_sampler.batch_size=16"]


# ----- scoring back-end ----------------------------------------------------------------------


def test_trials_index_each_utterance_once():
    listed = [(1, "a", "b"), (0, "a", "c"), (1, "c", "b")]
    trials = Trials.from_list(listed)
    assert sorted(trials.ids) == ["a", "b", "c"]
    pairs = [(trials.ids[e], trials.ids[t]) for e, t in zip(trials.enroll.tolist(), trials.test.tolist())]
    assert pairs == [(e, t) for _, e, t in listed]
    assert trials.labels.tolist() == [1, 0, 1]


def test_cosine_scores_match_pairwise_cosine_in_any_chunking():
    torch.manual_seed(0)
    table = F.normalize(torch.randn(50, 16), dim=1)
    enroll, test = torch.randint(0, 50, (1000,)), torch.randint(0, 50, (1000,))
    expected = F.cosine_similarity(table[enroll], table[test], dim=1)
    for chunk in (7, 1000, 4096):
        torch.testing.assert_close(cosine_scores(table, enroll, test, chunk=chunk), expected)


def test_as_norm_matches_a_direct_computation():
    torch.manual_seed(1)
    table, cohort = F.normalize(torch.randn(6, 8), dim=1), torch.randn(20, 8)
    enroll, test = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    raw = cosine_scores(table, enroll, test)
    normed = as_norm(raw, table, enroll, test, cohort, top_n=5)
    unit = F.normalize(cohort, dim=1)
    for k, (e, t) in enumerate(zip(enroll.tolist(), test.tolist())):
        side = []
        for u in (e, t):
            top = sorted((table[u] @ unit.T).tolist(), reverse=True)[:5]
            mean = sum(top) / 5
            std = (sum((x - mean) ** 2 for x in top) / 4) ** 0.5
            side.append((raw[k].item() - mean) / std)
        assert normed[k].item() == pytest.approx(0.5 * sum(side), rel=1e-4)


def test_scores_file_round_trips(tmp_path):
    trials = Trials.from_list([(1, "id1/a/1", "id1/b/2"), (0, "id1/a/1", "id2/c/1")])
    write_scores(tmp_path / "s.scores", trials, torch.tensor([0.5, -0.25]))
    assert (tmp_path / "s.scores").read_text().splitlines() == ["id1/a/1\tid1/b/2\t0.500000\t1", "id1/a/1\tid2/c/1\t-0.250000\t0"]
    scores, labels = read_scores(tmp_path / "s.scores")
    assert scores.tolist() == [0.5, -0.25] and labels.tolist() == [1, 0]


# ----- stages 0-4 end to end -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The tiny config trained end to end (stages 0-4) through the real CLI."""
    from typer.testing import CliRunner

    from speechrecipe.cli import app

    target = tmp_path_factory.mktemp("asv") / "exp"
    result = CliRunner().invoke(app, ["run", "asv", "--target-dir", str(target), *TRAINED], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return target


@pytest.mark.e2e
def test_every_output_file_is_written(trained):
    for name in ("config.yaml", "log.txt", "speakers.json", "train_log.jsonl", "training_curve.png",
                 "checkpoints/valid_best.ckpt", "checkpoints/step-96.ckpt", "checkpoints/run.json",
                 "results/results.json", "results/README.md", "results/det_voxceleb1_o.png"):
        assert (trained / name).is_file(), name
    assert sorted(p.name for p in (trained / "records").iterdir()) == [f"stage-{n}.json" for n in range(5)]
    # keep_num_ckpts=2: the two newest step checkpoints, and valid_best whatever its step
    assert sorted(p.name for p in (trained / "checkpoints").glob("step-*.ckpt")) == ["step-72.ckpt", "step-96.ckpt"]
    speakers = json.loads((trained / "speakers.json").read_text())
    assert len(speakers["labels"]) == 24
    events = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "valid"] == [24, 48, 72, 96]
    assert all(e["eer"] <= 0.5 for e in events if e["event"] == "valid")


def test_scores_cover_every_trial_in_order(trained):
    files = json.loads((trained / "records" / "stage-0.json").read_text())["files"]
    (prepared,) = [Path(p) for p in files if p.endswith("trials_voxceleb1_o.tsv")]  # this experiment's cache
    trials = read_trials(prepared)
    assert len(trials) == 600
    for checkpoint in ("valid_best", "step-96"):
        lines = (trained / "evaluation" / checkpoint / "voxceleb1_o.scores").read_text().splitlines()
        assert [(int(l.split()[3]), l.split()[0], l.split()[1]) for l in lines] == [tuple(t) for t in trials]
        scores, labels = read_scores(trained / "evaluation" / checkpoint / "voxceleb1_o.scores")
        saved = json.loads((trained / "evaluation" / checkpoint / "voxceleb1_o.json").read_text())["metrics"]
        assert saved["eer"] == pytest.approx(eer(scores, labels), abs=2e-3)  # scores file rounds to 6 decimals
    test_rows = read_jsonl(prepared.parent / "test_voxceleb1_o.jsonl")
    speakers = json.loads((trained / "speakers.json").read_text())
    assert not {r["speaker"] for r in test_rows} & set(speakers["labels"]), "test speakers must be unseen in training"


def test_results_headline_valid_best_and_show_the_best_on_test_as_an_oracle(trained, cli, tmp_path):
    results = json.loads((trained / "results" / "results.json").read_text())
    best = results["voxceleb1_o"]
    assert set(best) >= {"checkpoint", "step", "eer", "mindcf_0.01", "mindcf_0.05", "intervals", "oracle"}
    per_checkpoint = {c: json.loads((trained / "evaluation" / c / "voxceleb1_o.json").read_text())["metrics"]["eer"]
                      for c in ("valid_best", "step-96")}
    assert (best["checkpoint"], best["selected_by"], best["eer"]) == ("valid_best", "valid_best", per_checkpoint["valid_best"])
    assert best["oracle"]["eer"] == min(per_checkpoint.values())
    interval = best["intervals"]["eer"]
    assert interval["unit"] == "speaker" and interval["resamples"] == 1000 and interval["low"] <= best["eer"] <= interval["high"]
    assert assert_headline_is_the_resampled_statistic(trained, "asv") == 3  # eer, mindcf_0.01, mindcf_0.05 (issue 22)
    readme = (trained / "results" / "README.md").read_text()
    assert "| voxceleb1_o | valid_best (step " in readme and "EER (%)" in readme and "best on test (oracle)" in readme
    assert f"{100 * best['eer']:.2f} ({100 * interval['low']:.2f}–{100 * interval['high']:.2f})" in readme
    # report.select=test reproduces s3prl's report: the best checkpoint on the test set is the headline
    copy = shutil.copytree(trained, tmp_path / "exp")
    result = cli("run", "asv", "--target-dir", copy, *TRAINED, "report.select=test")
    assert result.exit_code == 0, result.stderr
    assert "stage 3 (evaluate) is up to date" in result.stderr  # only the report runs again
    s3prl = json.loads((copy / "results" / "results.json").read_text())["voxceleb1_o"]
    assert s3prl["eer"] == min(per_checkpoint.values()) and s3prl["selected_by"] == "best on test"


@pytest.mark.e2e
def test_trained_model_beats_the_untrained_one_on_the_same_trials(trained, cli, tmp_path):
    untrained = tmp_path / "untrained"
    result = cli("run", "asv", "--target-dir", untrained, *TRAINED, "train.total_steps=1", "build_optimizer.conf.lr=0.0")
    assert result.exit_code == 0, result.stderr
    baseline = json.loads((untrained / "results" / "results.json").read_text())["voxceleb1_o"]["eer"]
    learned = json.loads((trained / "results" / "results.json").read_text())["voxceleb1_o"]["eer"]
    assert learned < baseline - 0.1, (learned, baseline)  # measured: 0.25 against 0.45


@pytest.mark.e2e
def test_as_norm_evaluates_again_with_a_cohort(trained, cli, tmp_path):
    import shutil

    target = tmp_path / "exp"
    shutil.copytree(trained, target)
    result = cli("run", "asv", "--start", "3", "--target-dir", target, *TRAINED,
                 "evaluate.score_norm=asnorm", "evaluate.asnorm_top_n=10")
    assert result.exit_code == 0, result.stderr
    normed = json.loads((target / "evaluation" / "valid_best" / "voxceleb1_o.json").read_text())
    plain = json.loads((trained / "evaluation" / "valid_best" / "voxceleb1_o.json").read_text())
    assert normed["key"]["evaluate"] != plain["key"]["evaluate"]
    assert normed["metrics"]["eer"] != plain["metrics"]["eer"] or normed["metrics"] != plain["metrics"]
    assert 0.0 <= normed["metrics"]["eer"] < 0.5


@pytest.mark.e2e
def test_test_ckpt_dir_evaluates_a_checkpoint_from_elsewhere(trained, cli, tmp_path):
    import shutil

    target = tmp_path / "exp"
    shutil.copytree(trained, target)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(trained / "checkpoints" / "step-72.ckpt", outside / "step-72.ckpt")
    result = cli("run", "asv", "--start", "3", "--target-dir", target, *TRAINED, f"evaluate.test_ckpt_dir={outside}",
                 "evaluate.test_ckpt_steps=[last]")
    assert result.exit_code == 0, result.stderr
    saved = json.loads((target / "evaluation" / "step-72" / "voxceleb1_o.json").read_text())
    assert saved["step"] == 72
    assert json.loads((target / "results" / "results.json").read_text())["voxceleb1_o"]["checkpoint"] == "step-72"


@pytest.mark.e2e
def test_a_list_of_all_speakers_is_evaluated_without_deciding_who_trains(cli, tmp_path, isolated_cache):
    """list_test_all2.txt-style lists cover the training speakers too: exclude_speakers: false."""
    mini = Path(__file__).resolve().parent.parent / "speechrecipe" / "assets" / "mini" / "voxceleb1"
    by_speaker: dict[str, list[str]] = {}
    for path in sorted((mini / "wav").glob("*/*/*.*")):
        by_speaker.setdefault(path.parts[-3], []).append("/".join(path.parts[-3:]))
    speakers = sorted(by_speaker)
    lines = [f"1 {by_speaker[s][0]} {by_speaker[s][1]}" for s in speakers]
    lines += [f"0 {by_speaker[a][2]} {by_speaker[b][2]}" for a, b in zip(speakers, speakers[1:])]
    all_list = tmp_path / "list_test_all2.txt"
    all_list.write_text("\n".join(lines) + "\n")
    test_sets = ("prepare_data.test_sets=[{name: voxceleb1_o, trial_file: veri_test2.txt}, "
                 f"{{name: voxceleb1_e, trial_file: '{all_list}', exclude_speakers: false}}]")
    target = tmp_path / "exp"
    result = cli("run", "asv", "--stop", "1", "--target-dir", target, *TRAINED, test_sets)
    assert result.exit_code == 0, result.stderr
    assert "test set voxceleb1_e: 24 of its 32 speakers are training speakers" in result.stderr
    assert len(json.loads((target / "speakers.json").read_text())["labels"]) == 24  # as with veri_test2.txt alone
    summary = json.loads(next((isolated_cache / "asv").glob("*/trials_voxceleb1_e.tsv")).with_name("summary.json").read_text())
    assert summary["test_sets"]["voxceleb1_e"]["trials"] == len(lines)

    bad = test_sets.replace("exclude_speakers: false", "exclude: false")
    refused = cli("run", "asv", "--stop", "1", "--target-dir", target, *TRAINED, bad)
    assert refused.exit_code == 2
    assert "error: prepare_data.test_sets[1].exclude: unknown key; did you mean exclude_speakers?" in refused.stderr
