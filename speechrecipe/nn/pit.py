"""Permutation-invariant binary cross-entropy for speaker-activity outputs (EEND, SUPERB SD).

The model's speaker channels have no fixed meaning, so each recording is scored under the
order of its reference speakers that fits best. BCE is a sum over (output, reference) pairs,
so the best order is a linear assignment on the S × S matrix of pairwise BCE: for S ≤ 3 every
permutation is tried at once on the device; past 3 the Hungarian algorithm solves it per
recording, on the CPU. Both are exact.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from speechrecipe.metrics.assignment import min_cost_assignment
from speechrecipe.nn.pooling import length_mask

EXHAUSTIVE_MAX_SPEAKERS = 3


def pairwise_bce(logits: Tensor, labels: Tensor, lens: Tensor) -> Tensor:
    """[B, S, S]: summed BCE over each recording's valid frames of output i against reference j."""
    mask = length_mask(lens, logits.shape[1]).to(logits.dtype)  # [B, F]
    x = logits.float().unsqueeze(3)  # [B, F, S_out, 1]
    y = labels.float().unsqueeze(2)  # [B, F, 1, S_ref]
    bce = F.binary_cross_entropy_with_logits(x.expand(-1, -1, -1, y.shape[3]), y.expand(-1, -1, x.shape[2], -1),
                                             reduction="none")
    return torch.einsum("bfij,bf->bij", bce, mask.float())


def best_permutations(cost: Tensor) -> Tensor:
    """[B, S] long: perm[b, i] = the reference speaker output i is scored against, minimising cost [B, S, S]."""
    speakers = cost.shape[1]
    if speakers <= EXHAUSTIVE_MAX_SPEAKERS:
        perms = torch.tensor(list(itertools.permutations(range(speakers))), device=cost.device)  # [P, S]
        outputs = torch.arange(speakers, device=cost.device)
        totals = cost[:, outputs, perms].sum(-1)  # [B, P]
        return perms[totals.argmin(dim=1)]
    rows = []
    for matrix in cost.detach().cpu().tolist():
        rows.append([j for _, j in min_cost_assignment(matrix)])
    return torch.tensor(rows, device=cost.device)


def pit_bce(logits: Tensor, labels: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
    """(loss, perm): BCE under each recording's best speaker order, averaged over valid frames and
    speakers (as SUPERB SD), and that order [B, S]. logits, labels [B, F, S]; lens [B] frames."""
    cost = pairwise_bce(logits, labels, lens)
    perm = best_permutations(cost.detach())
    chosen = cost.gather(2, perm.unsqueeze(2)).squeeze(2)  # [B, S]
    frames = lens.clamp(min=1).sum().to(chosen.dtype)
    return chosen.sum() / (frames * logits.shape[2]), perm
