"""Metrics against reference implementations (scikit-learn, jiwer, brute force) and hand-computed cases."""
from __future__ import annotations

from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from speechrecipe.metrics.accuracy import (
    accuracy,
    confusion_matrix,
    plot_confusion,
    top_k_accuracy,
    write_confusion_csv,
)
from speechrecipe.metrics.det_plot import plot_det
from speechrecipe.metrics.eer import eer, eer_threshold, error_curves
from speechrecipe.metrics.mindcf import min_dcf
from speechrecipe.metrics.wer import edit_operations, error_rate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trials(seed: int, n: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping target (label 1) and non-target scores, optionally rounded to create ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]  # both classes present
    scores = rng.normal(size=n) + 1.5 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, labels


def _sklearn_voxceleb_eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """voxceleb_trainer's tuneThresholdfromScore: max(fpr, fnr) at argmin |fnr - fpr| of sklearn's ROC."""
    fpr, tpr, thresholds = roc_curve(labels, scores, pos_label=1)
    fnr = 1 - tpr
    idx = np.nanargmin(np.absolute(fnr - fpr))
    return max(fpr[idx], fnr[idx]), thresholds[idx]


def _brute_force_min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float, c_fa: float) -> float:
    """Sweep every distinct score and +inf as an accept-if-score>=threshold rule."""
    target, nontarget = scores[labels == 1], scores[labels == 0]
    best = np.inf
    for threshold in [*np.unique(scores), np.inf]:
        fnr = np.mean(target < threshold)
        fpr = np.mean(nontarget >= threshold)
        best = min(best, c_miss * fnr * p_target + c_fa * fpr * (1 - p_target))
    return best / min(c_miss * p_target, c_fa * (1 - p_target))


# --- EER ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [10, 101, 1000, 20000])
def test_eer_matches_sklearn_voxceleb_definition_on_random_scores(seed: int, n: int) -> None:
    scores, labels = _trials(seed, n)
    assert eer(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        _sklearn_voxceleb_eer(scores, labels)[0], abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [50, 2000])
def test_eer_matches_sklearn_on_heavily_tied_scores(seed: int, n: int) -> None:
    scores, labels = _trials(seed, n, decimals=1)
    assert eer(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        _sklearn_voxceleb_eer(scores, labels)[0], abs=1e-12
    )


def test_eer_threshold_matches_sklearn_threshold() -> None:
    scores, labels = _trials(7, 5000)
    assert eer_threshold(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        _sklearn_voxceleb_eer(scores, labels)
    )


def test_eer_accepts_float32_scores() -> None:
    scores, labels = _trials(4, 3000)
    scores = scores.astype(np.float32)
    assert eer(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        _sklearn_voxceleb_eer(scores, labels)[0], abs=1e-12
    )


def test_eer_is_zero_for_separable_scores() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert eer(torch.tensor([0.1, 0.2, 0.3, 0.8, 0.9]), labels) == 0.0


def test_eer_is_one_for_inverted_scores() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert eer(torch.tensor([0.8, 0.9, 0.7, 0.1, 0.2]), labels) == 1.0


def test_error_curves_move_tied_scores_together() -> None:
    fpr, fnr, thresholds = error_curves(
        torch.tensor([0.5, 0.5, 0.2, 0.9], dtype=torch.float64), torch.tensor([1, 0, 0, 1])
    )
    assert thresholds.tolist() == [0.2, 0.5, 0.9, float("inf")]
    assert fpr.tolist() == [1.0, 0.5, 0.0, 0.0]
    assert fnr.tolist() == [0.0, 0.0, 0.5, 1.0]


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_eer_rejects_trials_of_one_class(labels: list[int]) -> None:
    with pytest.raises(ValueError, match="no (non-)?target trials"):
        eer(torch.tensor([0.1, 0.2, 0.3]), torch.tensor(labels))


def test_eer_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        eer(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_eer_rejects_non_finite_scores(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        eer(torch.tensor([0.1, bad, 0.3]), torch.tensor([0, 1, 1]))


def test_eer_rejects_labels_other_than_zero_and_one() -> None:
    with pytest.raises(ValueError, match="labels must be 1"):
        eer(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1, 2]))


# --- minDCF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p_target", [0.01, 0.05])
@pytest.mark.parametrize("decimals", [None, 1], ids=["random", "tied"])
def test_min_dcf_matches_brute_force_sweep(p_target: float, decimals: int | None) -> None:
    scores, labels = _trials(3, 1500, decimals)
    expected = _brute_force_min_dcf(scores, labels, p_target, 1.0, 1.0)
    assert min_dcf(torch.from_numpy(scores), torch.from_numpy(labels), p_target) == pytest.approx(expected, abs=1e-12)


def test_min_dcf_with_unequal_costs_matches_brute_force_sweep() -> None:
    scores, labels = _trials(5, 800)
    expected = _brute_force_min_dcf(scores, labels, 0.05, 10.0, 1.0)
    assert min_dcf(torch.from_numpy(scores), torch.from_numpy(labels), 0.05, c_miss=10.0) == pytest.approx(expected)


def test_min_dcf_is_zero_for_separable_scores() -> None:
    assert min_dcf(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1]), 0.01) == 0.0


# --- DET plot ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_plot_det_writes_png(tmp_path: Path) -> None:
    curves = {}
    for name, seed in (("system a", 0), ("system b", 1)):
        scores, labels = _trials(seed, 50_000)
        fpr, fnr, _ = error_curves(torch.from_numpy(scores), torch.from_numpy(labels))
        curves[name] = (fpr, fnr)
    path = tmp_path / "det.png"
    plot_det(curves, path, title="test")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


# --- WER / CER ---------------------------------------------------------------------------------

VOCAB = ["the", "cat", "sat", "on", "a", "mat", "dog"]


def _sentence_pairs(seed: int, count: int) -> list[tuple[list[str], list[str]]]:
    """References from a small vocabulary and hypotheses with random edits, some empty."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        ref = [str(w) for w in rng.choice(VOCAB, int(rng.integers(1, 15)))]
        hyp = list(ref)
        for _ in range(int(rng.integers(0, 6))):
            op, pos = int(rng.integers(0, 3)), int(rng.integers(0, len(hyp) + 1))
            if op == 0:
                hyp.insert(pos, str(rng.choice(VOCAB)))
            elif hyp and op == 1:
                del hyp[min(pos, len(hyp) - 1)]
            elif hyp:
                hyp[min(pos, len(hyp) - 1)] = str(rng.choice(VOCAB))
        if rng.random() < 0.1:
            hyp = []
        pairs.append((ref, hyp))
    return pairs


def test_edit_operations_match_jiwer_on_random_sentence_pairs() -> None:
    for ref, hyp in _sentence_pairs(0, 300):
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        assert edit_operations(ref, hyp) == (out.hits, out.substitutions, out.deletions, out.insertions), (ref, hyp)


def test_edit_operations_break_ties_like_jiwer() -> None:
    # one deletion plus one insertion would also cost 2 (and keep "b" as a hit); jiwer substitutes both
    assert edit_operations(["a", "b"], ["b", "c"]) == (0, 2, 0, 0)


def test_word_error_rate_matches_jiwer_on_a_random_corpus() -> None:
    pairs = _sentence_pairs(1, 200)
    refs, hyps = [" ".join(r) for r, _ in pairs], [" ".join(h) for _, h in pairs]
    out = jiwer.process_words(refs, hyps)
    assert error_rate(refs, hyps) == {
        "wer": pytest.approx(out.wer),
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "ref_len": out.hits + out.substitutions + out.deletions,
    }


def test_char_error_rate_matches_jiwer_on_a_random_corpus() -> None:
    pairs = _sentence_pairs(2, 200)
    refs, hyps = [" ".join(r) for r, _ in pairs], [" ".join(h) for _, h in pairs]
    out = jiwer.process_characters(refs, hyps)
    assert error_rate(refs, hyps, unit="char") == {
        "cer": pytest.approx(out.cer),
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "ref_len": out.hits + out.substitutions + out.deletions,
    }


def test_char_error_rate_keeps_inner_spaces_and_strips_outer_ones() -> None:
    result = error_rate(["  a  b "], ["ab"], unit="char")
    assert (result["ref_len"], result["deletions"], result["cer"]) == (4, 2, 0.5)


def test_empty_hypothesis_counts_every_reference_word_as_deleted() -> None:
    result = error_rate(["the cat sat"], [""])
    assert (result["wer"], result["deletions"], result["hits"]) == (1.0, 3, 0)


def test_error_rate_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="pair up"):
        error_rate(["a b"], ["a b", "c"])


@pytest.mark.parametrize("refs", [[], ["", "  "]], ids=["no-utterances", "blank-utterances"])
def test_error_rate_rejects_empty_references(refs: list[str]) -> None:
    with pytest.raises(ValueError, match="no words"):
        error_rate(refs, ["x"] * len(refs))


# --- accuracy ----------------------------------------------------------------------------------


def test_accuracy_on_hand_computed_case() -> None:
    assert accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75


def test_top_k_accuracy_on_hand_computed_case() -> None:
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    targets = torch.tensor([2, 1, 0])
    assert top_k_accuracy(logits, targets, k=1) == 0.0
    assert top_k_accuracy(logits, targets, k=2) == pytest.approx(2 / 3)
    assert top_k_accuracy(logits, targets, k=3) == 1.0


def test_top_k_accuracy_rejects_k_above_class_count() -> None:
    with pytest.raises(ValueError, match="k must be between 1 and"):
        top_k_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), k=4)


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix(torch.tensor([0, 2, 2, 1, 0]), torch.tensor([0, 1, 2, 1, 2]), num_classes=3)
    assert matrix.dtype == torch.long
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]


def test_confusion_matrix_rejects_out_of_range_classes() -> None:
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), num_classes=3)


def test_write_confusion_csv_has_header_and_one_row_per_true_class(tmp_path: Path) -> None:
    path = tmp_path / "confusion.csv"
    write_confusion_csv(torch.tensor([[3, 1], [0, 2]]), ["yes", "no"], path)
    assert path.read_text().splitlines() == ["true\\predicted,yes,no", "yes,3,1", "no,0,2"]


def test_plot_confusion_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "confusion.png"
    plot_confusion(torch.tensor([[3, 1], [0, 2]]), ["yes", "no"], path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000
