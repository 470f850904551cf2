"""Issue 14: bootstrap intervals (metrics/bootstrap.py, tasks/unit_statistics.py) on synthetic test sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechrecipe.metrics.bootstrap import (draw_counts, interval, paired_difference, ratio_statistics, resample,
                                            verification_statistics)
from speechrecipe.metrics.eer import eer
from speechrecipe.metrics.mindcf import min_dcf
from speechrecipe.metrics.wer import error_rate
from speechrecipe.tasks.unit_statistics import classification_units, recognition_units



def trials(speakers: int, per_speaker: int, seed: int, speaker_sd: float = 1.0):
    """Synthetic verification trials with a per-speaker score offset (trials of a speaker are correlated)."""
    rng = np.random.default_rng(seed)
    enroll = np.repeat(np.arange(speakers), per_speaker)
    target = rng.random(enroll.size) < 0.5
    test = np.where(target, enroll, (enroll + rng.integers(1, speakers, enroll.size)) % speakers)
    offset = rng.normal(0, speaker_sd, speakers)
    scores = rng.normal(0, 1, enroll.size) + 2.0 * target + np.where(target, offset[enroll], 0.5 * (offset[enroll] + offset[test]))
    return scores, target, enroll, test


def accuracy_units(n: int, seed: int):
    right = np.random.default_rng(seed).random(n) < 0.8
    return right.mean(), ratio_statistics("utterance", [f"u{k:06d}" for k in range(n)], {"accuracy": (right, np.ones(n))})


def test_the_test_set_itself_gives_the_metrics_of_stage_3():
    scores, target, enroll, test = trials(40, 100, seed=0)
    stats = verification_statistics(scores, target, enroll, test, [f"s{k}" for k in range(40)])
    once = stats.metrics(np.ones((1, 40), dtype=np.int32))
    s, y = torch.tensor(scores), torch.tensor(target.astype(int))
    assert once["eer"][0] == pytest.approx(eer(s, y), rel=1e-12)  # the same curves and EER point (issue 22)
    assert once["mindcf_0.01"][0] == pytest.approx(min_dcf(s, y, 0.01), rel=1e-12)
    value, stats = accuracy_units(500, seed=0)
    assert stats.metrics(np.ones((1, 500), dtype=np.int32))["accuracy"][0] == pytest.approx(value)


@pytest.mark.parametrize("kind", ["accuracy", "eer"])
def test_intervals_contain_the_point_estimate_and_shrink_as_the_test_set_grows(kind):
    widths = []
    for size in (20, 80, 320):
        if kind == "accuracy":
            value, stats = accuracy_units(25 * size, seed=size)
        else:
            scores, target, enroll, test = trials(size, 50, seed=size)
            stats = verification_statistics(scores, target, enroll, test, [f"s{k}" for k in range(size)])
            value = float(stats.metrics(np.ones((1, size), dtype=np.int32))["eer"][0])
        found = interval(value, resample(stats, 400, seed=7)[kind], stats)
        assert found["low"] < value < found["high"], (size, found)
        widths.append(found["high"] - found["low"])
    assert widths[0] > widths[1] > widths[2], widths
    assert widths[0] / widths[2] > 2.5, widths  # about sqrt(16) = 4 for 16 times the units


def test_speaker_resampling_is_wider_than_trial_resampling_on_correlated_scores():
    scores, target, enroll, test = trials(40, 250, seed=3, speaker_sd=1.0)
    by_speaker = verification_statistics(scores, target, enroll, test, [f"s{k}" for k in range(40)])
    by_trial = verification_statistics(scores, target, np.arange(scores.size), None,
                                       [f"t{k}" for k in range(scores.size)], unit="trial")
    value = float(by_speaker.metrics(np.ones((1, 40), dtype=np.int32))["eer"][0])
    speaker = interval(value, resample(by_speaker, 300, seed=1)["eer"], by_speaker)
    trial = interval(value, resample(by_trial, 300, seed=1)["eer"], by_trial)
    assert speaker["unit"] == "speaker" and trial["unit"] == "trial"
    assert speaker["high"] - speaker["low"] > 2 * (trial["high"] - trial["low"]), (speaker, trial)


def test_resamples_depend_only_on_the_seed_and_the_unit_count():
    first = np.concatenate(list(draw_counts(50, 300, seed=5)))
    assert np.array_equal(first, np.concatenate(list(draw_counts(50, 300, seed=5))))
    assert not np.array_equal(first, np.concatenate(list(draw_counts(50, 300, seed=6))))
    assert first.shape == (300, 50) and (first.sum(axis=1) == 50).all()


def test_paired_difference_tells_a_real_gap_from_noise():
    rng = np.random.default_rng(0)
    units = [f"u{k}" for k in range(2000)]
    base = rng.random(2000) < 0.80
    better = base | (rng.random(2000) < 0.10)  # the same utterances plus some fixed: +2 points
    shuffled = base.copy()
    flip = rng.choice(2000, 20, replace=False)
    shuffled[flip] = ~shuffled[flip]  # as good, other utterances right
    ones = np.ones(2000)

    def values(right):
        stats = ratio_statistics("utterance", units, {"accuracy": (right, ones)})
        return right.mean(), resample(stats, 500, seed=11)["accuracy"]

    (a, va), (b, vb), (c, vc) = values(base), values(better), values(shuffled)
    gap = paired_difference(a, b, va, vb)
    assert gap["beyond_noise"] and gap["low"] > 0 and gap["difference"] == pytest.approx(b - a)
    assert not paired_difference(a, c, va, vc)["beyond_noise"]


def test_recognition_units_sum_to_the_corpus_error_rates(tmp_path):
    refs = {"a": "the cat sat", "b": "on the mat", "c": "hello world"}
    hyps = {"a": "the cat sat", "b": "on a mat today", "c": ""}
    (tmp_path / "t.ref").write_text("".join(f"{u} {t}\n" for u, t in refs.items()))
    (tmp_path / "t.beam.hyp").write_text("".join(f"{u} {t}".rstrip() + "\n" for u, t in hyps.items()))
    stats = recognition_units(tmp_path / "t", ["greedy", "beam"])
    assert stats.unit == "utterance" and stats.units == ["a", "b", "c"]
    once = stats.metrics(np.ones((1, 3), dtype=np.int32))
    assert set(once) == {"beam_wer", "beam_cer"}  # no greedy hypotheses written
    ids = sorted(refs)
    for unit, key in (("word", "wer"), ("char", "cer")):
        expected = error_rate([refs[u] for u in ids], [hyps[u] for u in ids], unit)[key]
        assert once[f"beam_{key}"][0] == pytest.approx(expected)
    twice_b = stats.metrics(np.array([[0, 2, 0]], dtype=np.int32))["beam_wer"][0]
    assert twice_b == pytest.approx(error_rate([refs["b"]], [hyps["b"]])["wer"])  # a resample of b alone


def test_classification_units_need_every_field_right(tmp_path):
    path = tmp_path / "test.predictions.tsv"
    path.write_text("id\taction\taction_predicted\tobject\tobject_predicted\n"
                    "u1\ton\ton\tlights\tlights\nu2\toff\ton\tlights\tlights\nu3\ton\ton\tmusic\tlights\n")
    once = classification_units(path).metrics(np.ones((1, 3), dtype=np.int32))
    assert once["accuracy"][0] == pytest.approx(1 / 3)
    assert once["accuracy_action"][0] == pytest.approx(2 / 3) and once["accuracy_object"][0] == pytest.approx(2 / 3)


def test_all_speakers_once_give_eer_and_mindcf_exactly_with_more_distinct_scores_than_any_grid():
    """Issue 22: every distinct score is a threshold (no quantile grid), ties and straight stretches of the curve
    handled as metrics/eer.py does, so the test set itself resamples to the reported value."""
    scores, target, enroll, test = trials(60, 500, seed=4)  # 30,000 distinct scores
    for rounded in (scores, np.round(scores, 1)):  # and heavy ties: 1 decimal
        stats = verification_statistics(rounded, target, enroll, test, [f"s{k}" for k in range(60)])
        once = stats.all_once()
        s, y = torch.tensor(rounded), torch.tensor(target.astype(int))
        assert once["eer"] == pytest.approx(eer(s, y), rel=1e-12, abs=0)
        for p in (0.01, 0.05):
            assert once[f"mindcf_{p}"] == pytest.approx(min_dcf(s, y, p), rel=1e-12, abs=0)


def test_the_eer_point_is_eer_index_on_weighted_curves_with_plateaus():
    from speechrecipe.metrics.bootstrap import eer_point
    from speechrecipe.metrics.eer import eer_index

    rng = np.random.default_rng(0)
    for _ in range(3000):  # integer weights with zeros: repeated points, ties, straight stretches
        size = int(rng.integers(2, 80))
        accepted_targets = np.append(np.sort(rng.integers(0, 6, size))[::-1], 0).astype(float)
        accepted_nontargets = np.append(np.sort(rng.integers(0, 6, size))[::-1], 0).astype(float)
        if accepted_targets[0] == 0 or accepted_nontargets[0] == 0:
            continue
        fnr, fpr = 1.0 - accepted_targets / accepted_targets[0], accepted_nontargets / accepted_nontargets[0]
        assert eer_point(fpr, fnr) == eer_index(torch.tensor(fpr), torch.tensor(fnr)), (fpr, fnr)


def test_a_resample_with_nothing_to_divide_by_is_undefined_and_counted():
    stats = ratio_statistics("recording", ["a", "b"], {"der": (np.array([1.0, 2.0]), np.array([4.0, 0.0]))})
    values = resample(stats, 400, seed=3)["der"]
    found = interval(0.75, values, stats)
    drew_b_only = int(np.isnan(values).sum())
    assert found["undefined"] == drew_b_only and 60 < drew_b_only < 140  # 1 in 4 draws are b twice
    assert found["low"] == pytest.approx(0.25) and found["high"] == pytest.approx(0.75)  # (a,b): 3/4; (a,a): 2/8
