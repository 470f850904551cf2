"""Minimum-cost assignment (the Hungarian algorithm), so that scipy is not a dependency.

Used for the optimal speaker mapping of DER, permutation-invariant training past three
speakers, and aligning speaker order between overlapping inference chunks.
"""
from __future__ import annotations

from typing import Sequence

INF = float("inf")


def min_cost_assignment(cost: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """(row, column) pairs of a minimum-total-cost matching that covers every row or every column,
    whichever are fewer; sorted by row. Exact, O(n² m) for n ≤ m (Kuhn-Munkres with potentials)."""
    rows = [list(map(float, r)) for r in cost]
    if not rows or not rows[0]:
        return []
    transposed = len(rows) > len(rows[0])
    matrix = [list(c) for c in zip(*rows)] if transposed else rows
    pairs = _assign(matrix)
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


def _assign(a: list[list[float]]) -> list[tuple[int, int]]:
    """Rows ≤ columns. u, v: row and column potentials; p[j]: the row matched to column j (1-based)."""
    n, m = len(a), len(a[0])
    u, v, p, way = [0.0] * (n + 1), [0.0] * (m + 1), [0] * (m + 1), [0] * (m + 1)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [INF] * (m + 1), [False] * (m + 1)
        while p[j0] != 0:  # grow an alternating tree from row i until it reaches a free column
            used[j0] = True
            i0, delta, j1 = p[j0], INF, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = a[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < minv[j]:
                        minv[j], way[j] = reduced, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
        while j0:  # flip the augmenting path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    return [(p[j] - 1, j - 1) for j in range(1, m + 1) if p[j]]
