"""How a conv / linear layer spends its PE budget: G row groups x B position bands, in lockstep.

Every PE (lane) of a layer runs off one set of counters, so the lanes need the same number of
cycles for every row they hold. Rows are therefore dealt in *slots*: sorted by entry count
(fillers included; ties by row index), the G longest rows form slot 0 (one per group), the next
G slot 1, and so on. A slot lasts as long as its longest row (at least one cycle: an empty row
still issues one bubble); shorter rows are padded with zero entries (``streams.lockstep_words``).
Sorting before chunking minimizes the sum of the slot maxima, i.e. the padding.

A conv layer with few rows can also split its output rows into B bands: lane (g, b) computes
group g's rows at the output rows of band b. Per slot, a lane issues the slot's entries once per
output position of its band, so a layer takes

    cycles = sum(slot_count) * band_rows * WO       (band_rows: the tallest band; WO = 1 for linear)

For each layer the (G, B) with the fewest cycles within the budget is kept (ties: fewer bands,
then fewer lanes: fewer copies of ROMs and feature maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Schedule", "band_ranges", "deal_rows", "best_schedule", "range_split"]


def band_ranges(extent: int, parts: int) -> tuple[tuple[int, int], ...]:
    """``parts`` contiguous ranges covering 0..extent, sizes differing by at most one."""
    edges = [b * extent // parts for b in range(parts + 1)]
    return tuple((edges[b], edges[b + 1]) for b in range(parts))


def range_split(extent: int, budget: int) -> tuple[tuple[int, int], ...]:
    """The channel (or element) ranges of a layer without rows: the budget, at most one lane
    per channel."""
    return band_ranges(extent, max(1, min(int(budget), int(extent))))


def deal_rows(entries: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot_rows (S, G) int64 with -1 for no row, slot_count (S,) int64 >= 1)."""
    entries = np.asarray(entries, dtype=np.int64)
    order = np.argsort(-entries, kind="stable")  # longest first, ties by row index
    slots = max(1, -(-entries.size // groups))
    padded = np.full(slots * groups, -1, dtype=np.int64)
    padded[: order.size] = order
    slot_rows = padded.reshape(slots, groups)
    lens = np.where(slot_rows >= 0, entries[np.maximum(slot_rows, 0)], 0)
    return slot_rows, np.maximum(lens.max(axis=1), 1)


@dataclass(frozen=True, eq=False)
class Schedule:
    """The lanes of a conv / linear layer and the rows of each (see the module docstring)."""

    groups: int
    bands: tuple[tuple[int, int], ...]  # output-row ranges (linear: ((0, 1),))
    wo: int  # output columns (1 for linear)
    slot_rows: np.ndarray  # (slots, groups) int64: the row each group computes in each slot, -1: none
    slot_count: np.ndarray  # (slots,) int64: entries every lane issues per position in the slot

    @property
    def slots(self) -> int:
        return int(self.slot_rows.shape[0])

    @property
    def lanes(self) -> int:
        return self.groups * len(self.bands)

    @property
    def band_rows(self) -> int:
        return max(hi - lo for lo, hi in self.bands)

    @property
    def positions(self) -> int:
        """Output positions a lane visits per slot (its band, padded to the tallest)."""
        return self.band_rows * self.wo

    @property
    def slot_start(self) -> np.ndarray:
        """(slots,) int64: the index of each slot's first entry in every group's stream."""
        return np.concatenate([np.zeros(1, np.int64), np.cumsum(self.slot_count)])[:-1]

    @property
    def entries(self) -> int:
        """Entries of every group's lockstep stream."""
        return int(self.slot_count.sum())

    @property
    def iterations(self) -> int:
        """Issue cycles of the layer: every lane, one entry per cycle."""
        return self.entries * self.positions

    def group_rows(self, g: int) -> np.ndarray:
        """The rows group ``g`` computes, in slot order."""
        rows = self.slot_rows[:, g]
        return rows[rows >= 0]


def _cycles(count: np.ndarray, band_rows: int, wo: int) -> int:
    return int(count.sum()) * band_rows * wo


def best_schedule(entries: np.ndarray, ho: int, wo: int, budget: int) -> Schedule:
    """The (G, B) split of ``budget`` lanes with the fewest cycles for rows of ``entries``
    entries each over an ``ho`` x ``wo`` output (linear: 1 x 1)."""
    entries = np.asarray(entries, dtype=np.int64)
    rows = max(1, entries.size)
    dealt: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    best = None
    for b in range(1, min(int(budget), int(ho)) + 1):
        g = max(1, min(int(budget) // b, rows))
        if g not in dealt:
            dealt[g] = deal_rows(entries, g)
        bands = band_ranges(ho, b)
        key = (_cycles(dealt[g][1], max(hi - lo for lo, hi in bands), wo), b, g)
        if best is None or key < best[0]:
            best = (key, g, bands)
    _, g, bands = best
    slot_rows, slot_count = dealt[g]
    return Schedule(g, bands, int(wo), slot_rows, slot_count)
