"""How a feature map is banked so that every lane of its producer writes its own bank.

A tensor of shape (C, H, W) (a vector is (N, 1, 1)) is stored in G x B banks of equal size: bank
(g, b) holds the channels of group g (``slot_of`` orders them) at the rows of band b:

    element (ch, y, x) -> bank (group_of[ch], band_of[y]),
                          local = slot_of[ch] * band_rows * W + (y - band_lo) * W + x

A conv / linear producer's groups and bands are its lanes (``schedule.Schedule``: the rows of a
slot go to the groups); a pool, element-wise or input producer has one group per channel range
and one band. A consumer lane reads any element through two small tables (per channel: group
and ``slot * band_rows * W``; per row: band and ``(y - band_lo) * W``) and two adders: no
multiplier or divider in its address path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedule import Schedule

__all__ = ["Layout", "weighted_layout", "range_layout", "shape3", "conv_taps"]


@dataclass(frozen=True, eq=False)
class Layout:
    shape: tuple[int, int, int]  # (C, H, W)
    groups: int
    bands: tuple[tuple[int, int], ...]  # row ranges over H
    slots: int  # channels per group (the largest group)
    group_of: np.ndarray  # (C,) int64
    slot_of: np.ndarray  # (C,) int64

    @property
    def band_rows(self) -> int:
        return max(hi - lo for lo, hi in self.bands)

    @property
    def banks(self) -> int:
        return self.groups * len(self.bands)

    @property
    def bank_size(self) -> int:
        return self.slots * self.band_rows * self.shape[2]

    @property
    def size(self) -> int:
        c, h, w = self.shape
        return c * h * w

    @property
    def band_of(self) -> np.ndarray:
        """(H,) band of every row."""
        out = np.zeros(self.shape[1], dtype=np.int64)
        for b, (lo, hi) in enumerate(self.bands):
            out[lo:hi] = b
        return out

    @property
    def row_offset(self) -> np.ndarray:
        """(H,) (y - band_lo) * W of every row."""
        lo = np.asarray([self.bands[b][0] for b in self.band_of], dtype=np.int64)
        return (np.arange(self.shape[1], dtype=np.int64) - lo) * self.shape[2]

    @property
    def channel_base(self) -> np.ndarray:
        """(C,) slot * band_rows * W of every channel."""
        return self.slot_of * self.band_rows * self.shape[2]

    def locate(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(group, band, local) of NCHW flat indices."""
        c, h, w = self.shape
        ch, rest = np.divmod(np.asarray(flat, dtype=np.int64), h * w)
        y, x = np.divmod(rest, w)
        return self.group_of[ch], self.band_of[y], self.channel_base[ch] + self.row_offset[y] + x


def shape3(shape) -> tuple[int, int, int]:
    """A tensor's shape as (C, H, W): a vector of N values is (N, 1, 1)."""
    shape = tuple(int(s) for s in shape)
    return shape if len(shape) == 3 else (int(np.prod(shape)), 1, 1)


def conv_taps(cols: int, kh: int, kw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel, ky, kx) of every column of a conv filter, in PyTorch's (C, KH, KW) order: the
    division the address tables do once so the hardware never does."""
    col = np.arange(cols, dtype=np.int64)
    return col // (kh * kw), (col % (kh * kw)) // kw, col % kw


def weighted_layout(shape, schedule: Schedule) -> Layout:
    """The output banks of a conv / linear layer: lane (g, b) writes bank (g, b)."""
    shape = shape3(shape)
    group_of = np.full(shape[0], -1, dtype=np.int64)
    slot_of = np.full(shape[0], -1, dtype=np.int64)
    s_idx, g_idx = np.nonzero(schedule.slot_rows >= 0)
    rows = schedule.slot_rows[s_idx, g_idx]
    group_of[rows], slot_of[rows] = g_idx, s_idx
    if (group_of < 0).any():
        raise ValueError("the schedule leaves an output channel without a lane")
    bands = schedule.bands if shape[1] > 1 or len(schedule.bands) == 1 else ((0, 1),)
    return Layout(shape, schedule.groups, bands, schedule.slots, group_of, slot_of)


def range_layout(shape, ranges: tuple[tuple[int, int], ...]) -> Layout:
    """One group per channel range (pools, element-wise layers, concat inputs, the input)."""
    shape = shape3(shape)
    group_of = np.zeros(shape[0], dtype=np.int64)
    slot_of = np.zeros(shape[0], dtype=np.int64)
    for k, (lo, hi) in enumerate(ranges):
        group_of[lo:hi] = k
        slot_of[lo:hi] = np.arange(hi - lo)
    return Layout(shape, len(ranges), ((0, shape[1]),), max(hi - lo for lo, hi in ranges), group_of, slot_of)
