"""CTC decoding over one utterance's log-probabilities [T, V] (numpy or CPU torch), blank = index 0.

`greedy` takes the best token per frame, then merges repeats and drops blanks. `prefix_beam_search`
keeps the `beam_size` most probable label prefixes, each with two log-probabilities: of the
alignments of frames 1..t that collapse to it and end in a blank, and of those that end in its last
token; a prefix's running score is their log-sum. A prefix pruned at some frame and reached again
later has lost the mass of its pruned alignments, so the running score is a lower bound and can rank
the final prefixes wrongly: they are rescored with the exact CTC forward probability
(`ctc_log_likelihood`) before the best is chosen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEG_INF = -math.inf


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # log-probability of the prefix (sum over its alignments kept by the search)


def _as_array(log_probs) -> np.ndarray:
    if hasattr(log_probs, "detach"):  # a torch tensor, without importing torch here
        log_probs = log_probs.detach().float().cpu().numpy()
    array = np.asarray(log_probs, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected log-probabilities of shape [frames, vocab], got {array.shape}")
    return array


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def greedy(log_probs, blank: int = 0) -> list[int]:
    """Best token per frame; repeats merged, blanks dropped."""
    best = _as_array(log_probs).argmax(axis=1)
    tokens, previous = [], blank
    for token in best.tolist():
        if token != previous and token != blank:
            tokens.append(token)
        previous = token
    return tokens


def ctc_log_likelihood(log_probs, tokens: list[int] | tuple[int, ...], blank: int = 0) -> float:
    """log P(tokens | log_probs): the CTC forward algorithm over the blank-interleaved label sequence."""
    lp = _as_array(log_probs)
    labels = np.full(2 * len(tokens) + 1, blank)
    labels[1::2] = tokens
    # a state may skip the blank before it when it holds a token unlike the one two states back
    skip = np.zeros(labels.size, dtype=bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    emit = lp[:, labels]  # [T, states]
    alpha = np.full(labels.size, NEG_INF)
    alpha[:2] = emit[0, :2]
    from_left, from_skip = np.full(labels.size, NEG_INF), np.full(labels.size, NEG_INF)
    for t in range(1, lp.shape[0]):
        from_left[1:] = alpha[:-1]
        from_skip[2:] = np.where(skip[2:], alpha[:-2], NEG_INF)
        alpha = np.logaddexp(np.logaddexp(alpha, from_left), from_skip) + emit[t]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if len(tokens) else alpha[-1])


def prefix_beam_search(log_probs, beam_size: int = 10, blank: int = 0) -> list[Hypothesis]:
    """CTC prefix beam search; the kept prefixes with their exact log-probabilities, best first.

    Each frame extends the kept prefixes with its `beam_size` most probable non-blank tokens
    (a beam of that size keeps no extension by a less probable token of the same frame).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: use 1 or more")
    lp = _as_array(log_probs)
    frames, vocab = lp.shape
    k = min(beam_size, vocab - 1)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (ends in blank, ends in token)
    for t in range(frames):
        row = lp[t]
        others = np.delete(np.arange(vocab), blank)
        candidates = others[np.argpartition(-row[others], k - 1)[:k]].tolist() if k > 0 else []
        row_list, p_blank = row.tolist(), float(row[blank])
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            slot = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            slot[0] = _logaddexp(slot[0], total + p_blank)
            last = prefix[-1] if prefix else None
            for c in candidates:
                p = row_list[c]
                extended = nxt.setdefault(prefix + (c,), [NEG_INF, NEG_INF])
                if c == last:
                    slot[1] = _logaddexp(slot[1], pnb + p)  # a repeat without a blank between merges
                    extended[1] = _logaddexp(extended[1], pb + p)  # after a blank it is a new token
                else:
                    extended[1] = _logaddexp(extended[1], total + p)
        scored = [(_logaddexp(pb, pnb), prefix, pb, pnb) for prefix, (pb, pnb) in nxt.items()]
        ranked = sorted((s for s in scored if s[0] > NEG_INF), key=lambda s: s[0], reverse=True)[:beam_size]
        beams = {prefix: (pb, pnb) for _, prefix, pb, pnb in ranked}
    hyps = [Hypothesis(prefix, ctc_log_likelihood(lp, prefix, blank)) for prefix in beams]
    return sorted(hyps, key=lambda h: (-h.score, h.tokens))


def beam_best(log_probs, beam_size: int = 10, blank: int = 0) -> list[int]:
    """The best prefix of `prefix_beam_search`, as a token list."""
    return list(prefix_beam_search(log_probs, beam_size, blank)[0].tokens)
