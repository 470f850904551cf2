"""What stage 4 resamples, read from the files stage 3 leaves in evaluation/<checkpoint>/: each test set's
evidence as independent units (metrics/bootstrap.py).

- asv: `<set>.scores` trials (tab-separated, tasks/scoring.py); units = speakers (the test manifest's `speaker` of each utterance).
- asr: `<set>.ref` and `<set>.<decoder>.hyp`; units = utterances (errors and reference length of each).
- classification: `<set>.predictions.tsv`; units = utterances (right or wrong, per field and all together;
  balanced accuracy: each class's recall over the drawn utterances of that class, averaged over the classes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speechrecipe.metrics.bootstrap import UnitStatistics, contents_digest, ratio_statistics, verification_statistics

BALANCED = "balanced_accuracy"


def verification_units(scores_file: Path, speaker_of: dict[str, str]) -> UnitStatistics:
    """EER and minDCF of a scores file (`enroll test score label` lines), resampled by speaker."""
    from speechrecipe.tasks.scoring import read_score_table

    pairs, scores, labels = read_score_table(scores_file)
    # trials reuse utterances: look each one's speaker up once
    utterances = {u for pair in pairs for u in pair}
    speakers = sorted({speaker_of[u] for u in utterances})
    number = {s: k for k, s in enumerate(speakers)}
    speaker_number = {u: number[speaker_of[u]] for u in utterances}
    sides = np.array([(speaker_number[e], speaker_number[t]) for e, t in pairs], dtype=np.int32).reshape(-1, 2)
    # what the trials are, not what the system scored: the same list of the same speakers' utterances
    trials = "\n".join(f"{e}\t{t}\t{label}\t{speaker_of[e]}\t{speaker_of[t]}" for (e, t), label in zip(pairs, labels.tolist()))
    return verification_statistics(scores, labels == 1, sides[:, 0], sides[:, 1], speakers, "speaker",
                                   contents=contents_digest(trials))


def recognition_units(prefix: Path, decoders: list[str]) -> UnitStatistics:
    """`<decoder>_wer` and `<decoder>_cer` of each decoder with a hypothesis file, resampled by utterance."""
    from speechrecipe.metrics.wer import utterance_errors

    refs = _texts(prefix.with_name(f"{prefix.name}.ref"))
    ids = sorted(refs)
    parts = {}
    for decoder in decoders:
        hyp_file = prefix.with_name(f"{prefix.name}.{decoder}.hyp")
        if hyp_file.is_file():
            hyps = _texts(hyp_file)
            for unit, key in (("word", "wer"), ("char", "cer")):
                errors, lengths = utterance_errors([refs[u] for u in ids], [hyps.get(u, "") for u in ids], unit)
                parts[f"{decoder}_{key}"] = (np.array(errors), np.array(lengths))
    return ratio_statistics("utterance", ids, parts, contents_digest([[u, refs[u]] for u in ids]))


def classification_units(predictions_file: Path, balanced: bool = False) -> UnitStatistics:
    """"accuracy" (every field right) and, with several fields, "accuracy_<field>", resampled by utterance;
    with `balanced` also "balanced_accuracy[_<field>]", the mean per-class recall of each resample."""
    from speechrecipe.data.tsv import read_tsv

    table = [fields for _, fields in read_tsv(predictions_file)]
    fields, rows = table[0][1::2], sorted(table[1:])
    right = np.array([[row[1 + 2 * k] == row[2 + 2 * k] for k in range(len(fields))] for row in rows]).reshape(len(rows), -1)
    ones = np.ones(len(rows))
    parts = {"accuracy": (right.all(axis=1), ones)}
    if len(fields) > 1:
        parts |= {f"accuracy_{f}": (right[:, k], ones) for k, f in enumerate(fields)}
    references = [[row[0], *row[1::2]] for row in rows]  # each utterance and its true label of each field
    stats = ratio_statistics("utterance", [row[0] for row in rows], parts, contents_digest([fields, references]))
    if not balanced:
        return stats
    recalls = {}  # metric name → (right and of class c [U, C], of class c [U, C])
    for k, field in enumerate(fields):
        truth = np.array([row[1 + 2 * k] for row in rows])
        member = (truth[:, None] == np.unique(truth)[None, :]).astype(np.float64)
        recalls[BALANCED + (f"_{field}" if len(fields) > 1 else "")] = (member * right[:, k:k + 1], member)

    def metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
        found = stats.metrics(counts)
        with np.errstate(invalid="ignore", divide="ignore"):  # a class no utterance of the resample has: left out
            for name, (hits, member) in recalls.items():
                found[name] = np.nanmean((counts @ hits) / (counts @ member), axis=1)
        return found

    return UnitStatistics(stats.unit, stats.units, metrics, stats.contents)


def _texts(path: Path) -> dict[str, str]:
    """`<id> <text>` lines → {id: text} (an empty hypothesis is a bare id)."""
    found = {}
    for line in path.read_text().splitlines():
        utt, _, text = line.partition(" ")
        found[utt] = text
    return found
