"""Word and character error rates with the same alignment counts as jiwer."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _shifted_distances(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """E[i, j] = D[i, j] - j for the Levenshtein matrix D between ref[:i] and hyp[:j]."""
    # subtracting j turns the left-neighbour term D[i, j-1] + 1 into E[i, j-1], so each row
    # is two vectorized minimums and one running minimum
    diagonal_step = (ref[:, None] != hyp[None, :]).astype(np.int64) - 1
    e = np.empty((ref.size + 1, hyp.size + 1), dtype=np.int64)
    e[0] = 0
    e[:, 0] = np.arange(ref.size + 1)
    for i in range(1, ref.size + 1):
        row = e[i, 1:]
        np.minimum(e[i - 1, 1:] + 1, e[i - 1, :-1] + diagonal_step[i - 1], out=row)
        np.minimum.accumulate(e[i], out=e[i])
    return e


def edit_operations(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int, int]:
    """(hits, substitutions, deletions, insertions) of a minimum-edit alignment, broken as jiwer breaks ties."""
    # jiwer uses rapidfuzz: a common prefix and suffix are hits, then the matrix is traced back
    # from the end preferring deletion, then insertion, then the diagonal
    start, end = 0, 0
    while start < min(len(ref), len(hyp)) and ref[start] == hyp[start]:
        start += 1
    while end < min(len(ref), len(hyp)) - start and ref[len(ref) - 1 - end] == hyp[len(hyp) - 1 - end]:
        end += 1
    a, b = list(ref[start : len(ref) - end]), list(hyp[start : len(hyp) - end])
    hits = start + end
    if not a or not b:
        return hits, 0, len(a), len(b)
    vocab: dict[Any, int] = {}
    a_ids = np.array([vocab.setdefault(t, len(vocab)) for t in a])
    b_ids = np.array([vocab.setdefault(t, len(vocab)) for t in b])
    # comparisons within one column are the same on E as on D
    e = _shifted_distances(a_ids, b_ids)
    subs = dels = ins = 0
    i, j = len(a), len(b)
    while i and j:
        if e[i, j] == e[i - 1, j] + 1:
            dels, i = dels + 1, i - 1
        elif j > 1 and e[i, j - 1] == e[i - 1, j - 1] - 1:
            ins, j = ins + 1, j - 1
        else:
            if a[i - 1] == b[j - 1]:
                hits += 1
            else:
                subs += 1
            i, j = i - 1, j - 1
    return hits, subs, dels + i, ins + j


def _tokens(text: str, unit: str) -> list[str]:
    """Words split on whitespace, or characters of the stripped text with inner spaces kept (jiwer's cer)."""
    return text.split() if unit == "word" else list(text.strip())


def error_rate(refs: list[str], hyps: list[str], unit: str = "word") -> dict:
    """Corpus-level error rate (S+D+I)/N with its counts, for unit "word" (key "wer") or "char" (key "cer")."""
    if unit not in ("word", "char"):
        raise ValueError(f'unit must be "word" or "char"; got {unit!r}')
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses; they must pair up one to one")
    totals = [0, 0, 0, 0]
    ref_len = 0
    for ref, hyp in zip(refs, hyps):
        ref_tokens = _tokens(ref, unit)
        ref_len += len(ref_tokens)
        for k, count in enumerate(edit_operations(ref_tokens, _tokens(hyp, unit))):
            totals[k] += count
    if ref_len == 0:
        raise ValueError(f"the references contain no {unit}s, so the error rate is undefined")
    hits, subs, dels, ins = totals
    return {
        "wer" if unit == "word" else "cer": (subs + dels + ins) / ref_len,
        "substitutions": subs,
        "deletions": dels,
        "insertions": ins,
        "hits": hits,
        "ref_len": ref_len,
    }


def utterance_errors(refs: list[str], hyps: list[str], unit: str = "word") -> tuple[list[int], list[int]]:
    """Per utterance: (S+D+I, reference length) in `unit`s, the parts `error_rate` sums."""
    errors, lengths = [], []
    for ref, hyp in zip(refs, hyps, strict=True):
        ref_tokens = _tokens(ref, unit)
        _, subs, dels, ins = edit_operations(ref_tokens, _tokens(hyp, unit))
        errors.append(subs + dels + ins)
        lengths.append(len(ref_tokens))
    return errors, lengths
