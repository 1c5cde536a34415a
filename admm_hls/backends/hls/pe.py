"""Processing-element assignment: which output rows (conv filters, fc neurons) each PE computes.

A PE walks its rows one after the other, so its time is the sum of its rows' costs; a layer
takes as long as its slowest PE. The cost of a row in hardware is its ENTRY count (nonzeros plus
relative-index fillers; a dense row's entry count is its length) plus a small fixed per-row
overhead (bias load, requantization, pointer fetch): ``row_costs`` computes it from the packed
layer's row pointers.

Two methods, both deterministic:

* ``round_robin`` (the baseline): row i goes to PE i % P.
* ``balanced``: LPT greedy (Graham's longest processing time first): rows sorted by cost
  descending (ties: lower row index first), each given to the least-loaded PE (ties: lower PE
  index). LPT guarantees max load <= mean load + largest row and <= 4/3 of the optimum. Greedy
  can still lose to round-robin on a lucky row order (costs 2,3,2,3,2 on 2 PEs: LPT 7, round-robin
  6), so when round-robin's max load is strictly smaller its assignment is returned instead: the
  balanced result is never worse than the baseline, and keeps the LPT bound.

Each PE's rows are returned ascending (the order its stream stores them).
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["METHODS", "ROW_OVERHEAD", "assign_rows", "imbalance", "pe_loads", "row_costs", "row_entries",
           "row_nonzeros"]

METHODS = ("balanced", "round_robin")
ROW_OVERHEAD = 1  # cycles per row beyond its entries: bias, requantize, write (a modelling constant)


def _round_robin(n: int, pe: int) -> tuple[np.ndarray, ...]:
    rows = np.arange(n, dtype=np.int64)
    return tuple(rows[k::pe] for k in range(pe))


def _lpt(cost: np.ndarray, pe: int) -> tuple[np.ndarray, ...]:
    order = np.argsort(-cost, kind="stable")  # descending cost, ties by row index
    heap = [(0, k) for k in range(pe)]  # (load, PE index): the heap breaks load ties by PE index
    owner = np.empty(cost.size, dtype=np.int64)
    for row in order.tolist():
        load, k = heapq.heappop(heap)
        owner[row] = k
        heapq.heappush(heap, (load + int(cost[row]), k))
    rows = np.arange(cost.size, dtype=np.int64)
    return tuple(rows[owner == k] for k in range(pe))  # ascending within each PE


def pe_loads(cost_per_row: np.ndarray, assignment: tuple[np.ndarray, ...]) -> np.ndarray:
    """Total cost per PE (int64)."""
    cost = np.asarray(cost_per_row, dtype=np.int64)
    return np.array([int(cost[r].sum()) for r in assignment], dtype=np.int64)


def assign_rows(nnz_per_row: np.ndarray, pe: int, method: str = "balanced") -> tuple[np.ndarray, ...]:
    """Split a layer's rows over ``pe`` processing elements.

    ``nnz_per_row``: the cost of each row (use ``row_costs``: entries + per-row overhead; plain
    nonzero counts work too). Returns ``pe`` ascending int64 arrays of row indices; every row
    is in exactly one of them; a PE gets no rows only when there are fewer rows than PEs.
    """
    cost = np.asarray(nnz_per_row)
    if cost.ndim != 1:
        raise ValueError(f"nnz_per_row must be 1-D, got shape {cost.shape}")
    if cost.size and (not np.issubdtype(cost.dtype, np.integer) or int(cost.min()) < 0):
        raise ValueError("row costs must be non-negative integers")
    cost = cost.astype(np.int64)
    pe = int(pe)
    if pe < 1:
        raise ValueError(f"pe must be >= 1, got {pe}")
    if method == "round_robin":
        return _round_robin(cost.size, pe)
    if method != "balanced":
        raise ValueError(f"unknown PE assignment method {method!r}: choose one of {', '.join(METHODS)}")
    lpt = _lpt(cost, pe)
    rr = _round_robin(cost.size, pe)
    if cost.size and pe_loads(cost, rr).max() < pe_loads(cost, lpt).max():
        return rr
    return lpt


def imbalance(costs_per_pe) -> float:
    """max / mean of the per-PE loads: 1.0 is perfect balance (and the value for no work)."""
    c = np.asarray(costs_per_pe, dtype=np.float64)
    if c.size == 0 or c.sum() == 0:
        return 1.0
    return float(c.max() / c.mean())


# -- per-row figures of a packed layer ------------------------------------------------------------
def row_entries(packed) -> np.ndarray:
    """Stream entries per row (fillers included) of a PackedWeights; dense: the row length."""
    layer = packed.layer
    if packed.format == "relative":
        return np.diff(np.asarray(layer.row_ptr, dtype=np.int64))
    return np.full(layer.rows, layer.cols, dtype=np.int64)


def row_nonzeros(packed) -> np.ndarray:
    """Nonzero weights per row, read from the packed codes."""
    layer = packed.layer
    if packed.format == "relative":
        real = (np.asarray(layer.entry_codes) != 0).astype(np.int64)
        ends = np.concatenate([[0], np.cumsum(real)])
        ptr = np.asarray(layer.row_ptr, dtype=np.int64)
        return ends[ptr[1:]] - ends[ptr[:-1]]
    from ...sparse import decode_dense

    return np.count_nonzero(decode_dense(layer), axis=1).astype(np.int64)


def row_costs(packed, overhead: int = ROW_OVERHEAD) -> np.ndarray:
    """Hardware cost per row: entries (fillers included) plus the per-row overhead."""
    return row_entries(packed) + int(overhead)
