"""Verification back-end: cosine scoring of trials and adaptive s-norm (AS-norm)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from speechrecipe.errors import DataError


@dataclass
class Trials:
    """A trial list as index tensors into an embedding table."""

    labels: torch.Tensor  # [N] long, 1 target / 0 non-target
    enroll: torch.Tensor  # [N] long
    test: torch.Tensor  # [N] long
    ids: list[str]  # embedding table order

    @classmethod
    def from_list(cls, trials: list[tuple[int, str, str]]) -> "Trials":
        index: dict[str, int] = {}
        enroll = [index.setdefault(e, len(index)) for _, e, _ in trials]
        test = [index.setdefault(t, len(index)) for _, _, t in trials]
        labels = torch.tensor([label for label, _, _ in trials], dtype=torch.long)
        return cls(labels, torch.tensor(enroll), torch.tensor(test), list(index))


def embedding_table(outputs: list[dict], ids: list[str]) -> torch.Tensor:
    """Stack collected {"ids", "embeddings"} into rows ordered as `ids`, L2-normalised."""
    found = {}
    for out in outputs:
        for i, utt in enumerate(out["ids"]):
            found[utt] = out["embeddings"][i]
    missing = [u for u in ids if u not in found]
    if missing:
        raise DataError(f"{len(missing)} trial utterances have no embedding (first: {missing[0]})")
    return F.normalize(torch.stack([found[u] for u in ids]).float(), dim=1)


def cosine_scores(table: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Cosine score of each (enroll, test) pair of a normalised table.

    Chunks of rows are gathered with index_select into two reused buffers that stay in cache
    (advanced indexing and fresh allocations per chunk are 4-10x slower here; bench_scoring.py).
    """
    count, dim = enroll.numel(), table.shape[1]
    scores = torch.empty(count, dtype=table.dtype)
    left, right = torch.empty(min(chunk, count), dim, dtype=table.dtype), torch.empty(min(chunk, count), dim, dtype=table.dtype)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        torch.index_select(table, 0, enroll[start : start + n], out=left[:n])
        torch.index_select(table, 0, test[start : start + n], out=right[:n])
        torch.sum(left[:n].mul_(right[:n]), dim=1, out=scores[start : start + n])
    return scores


def as_norm(scores: torch.Tensor, table: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor,
            cohort: torch.Tensor, top_n: int) -> torch.Tensor:
    """Adaptive s-norm: normalise by the mean/std of each side's top-N cohort scores."""
    cohort = F.normalize(cohort.float(), dim=1)
    top = torch.topk(table @ cohort.T, min(top_n, cohort.shape[0]), dim=1).values
    mean, std = top.mean(dim=1), top.std(dim=1).clamp_min(1e-6)
    return 0.5 * ((scores - mean[enroll]) / std[enroll] + (scores - mean[test]) / std[test])


def write_scores(path: Path, trials: Trials, scores: torch.Tensor) -> None:
    """Tab-separated `enroll test score label` lines, one per trial."""
    from speechrecipe.data.tsv import write_tsv

    write_tsv(path, ((trials.ids[e], trials.ids[t], f"{s:.6f}", label) for e, t, s, label in
                     zip(trials.enroll.tolist(), trials.test.tolist(), scores.tolist(), trials.labels.tolist())))


def read_scores(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, labels) from a file written by write_scores."""
    from speechrecipe.data.tsv import internal_file_error, read_tsv

    scores, labels = [], []
    for number, fields in read_tsv(path):
        if len(fields) == 1:  # written before scores were tab-separated: ids held no spaces then
            fields = fields[0].split()
        if len(fields) != 4:
            raise internal_file_error(path, number, f"expected 'enroll test score label', got {fields!r}")
        scores.append(float(fields[2]))
        labels.append(int(fields[3]))
    return torch.tensor(scores), torch.tensor(labels)
