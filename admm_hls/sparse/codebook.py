"""Codebook: maps small integer codes to the quantisation levels of a layer.

Contract:

* Code ``0`` always means "pruned / zero" (and is the filler code of the
  relative index); it is never a codebook entry.
* Codes ``1..n`` are codebook indices: ``levels[c - 1]`` is the integer level for
  code ``c``. ``levels`` are distinct, nonzero, sorted ascending, int64 (e.g.
  the ADMM 3-bit levels ``-3..-1, 1..3``).
* ``value_bits = max(1, ceil(log2(len(levels) + 1)))`` is the width of a code
  field, so code 0 is always representable. A wider ``value_bits`` may be given
  explicitly (e.g. a fixed hardware field width); a narrower one is rejected.
* The codebook itself is stored as ``len(levels)`` signed integers of
  ``level_bits = signed_width(levels)`` bits each (two's complement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Codebook", "signed_width", "code_bits_for", "code_dtype"]


def signed_width(values: np.ndarray | list[int] | tuple[int, ...]) -> int:
    """Smallest two's complement width holding every value (at least 1 bit).

    A width w holds ``-2**(w-1) .. 2**(w-1) - 1``; an empty input gives 1.
    """
    v = np.asarray(values)
    if v.size == 0:
        return 1
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"signed_width needs integer values, got dtype {v.dtype}")
    hi = int(v.max())
    lo = int(v.min())
    width = 1
    if hi >= 0:
        width = max(width, hi.bit_length() + 1)
    if lo < 0:
        width = max(width, (-lo - 1).bit_length() + 1)
    return width


def code_bits_for(n_levels: int) -> int:
    """Code width for ``n_levels`` nonzero levels plus the zero code."""
    if n_levels < 0:
        raise ValueError(f"n_levels must be >= 0, got {n_levels}")
    return max(1, int(n_levels).bit_length())  # == ceil(log2(n_levels + 1))


def code_dtype(value_bits: int) -> type[np.unsignedinteger]:
    """Smallest unsigned dtype holding codes of ``value_bits`` bits."""
    if value_bits <= 8:
        return np.uint8
    if value_bits <= 16:
        return np.uint16
    if value_bits <= 32:
        return np.uint32
    return np.uint64


@dataclass(frozen=True, eq=False)
class Codebook:
    """Levels for codes ``1..len(levels)``; code 0 is zero."""

    levels: np.ndarray
    value_bits: int

    def __post_init__(self) -> None:
        lv = np.asarray(self.levels)
        if lv.ndim != 1:
            raise ValueError(f"levels must be 1-D, got shape {lv.shape}")
        if lv.size and not np.issubdtype(lv.dtype, np.integer):
            raise ValueError(f"levels must be integers, got dtype {lv.dtype}")
        lv = lv.astype(np.int64)
        if np.any(lv == 0):
            raise ValueError("levels must be nonzero: code 0 already means zero")
        if lv.size > 1 and np.any(np.diff(lv) <= 0):
            raise ValueError(f"levels must be distinct and sorted ascending, got {lv.tolist()}")
        need = code_bits_for(lv.size)
        if int(self.value_bits) < need:
            raise ValueError(
                f"value_bits={self.value_bits} cannot address {lv.size} levels plus zero "
                f"(need {need})"
            )
        lv.setflags(write=False)  # frozen means frozen, arrays included
        object.__setattr__(self, "levels", lv)
        object.__setattr__(self, "value_bits", int(self.value_bits))

    @classmethod
    def from_levels(cls, levels: np.ndarray | list[int] | tuple[int, ...]) -> "Codebook":
        """Codebook of the sorted unique nonzero values of ``levels`` (zeros are dropped:
        zero is implicit code 0), with the minimal ``value_bits``."""
        v = np.asarray(levels)
        if v.size and not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"levels must be integers, got dtype {v.dtype}")
        u = np.unique(v.astype(np.int64).ravel())
        u = u[u != 0]
        return cls(levels=u, value_bits=code_bits_for(u.size))

    def __len__(self) -> int:
        return int(self.levels.size)

    @property
    def n_levels(self) -> int:
        return int(self.levels.size)

    @property
    def level_bits(self) -> int:
        """Smallest signed width holding every level."""
        return signed_width(self.levels)

    def encode(self, int_weights: np.ndarray) -> np.ndarray:
        """Integer weights -> codes (same shape, smallest unsigned dtype); 0 -> 0.

        Raises ValueError naming the first nonzero weight that is not a level.
        """
        w = np.asarray(int_weights)
        if w.size and not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"weights must be integers, got dtype {w.dtype}")
        lv = self.levels
        if w.size == 0:
            return np.zeros(w.shape, dtype=code_dtype(self.value_bits))
        lo, hi = min(int(w.min()), 0), max(int(w.max()), 0)
        sentinel = self.levels.size + 1  # marks values that are not levels
        dtype = code_dtype(max(self.value_bits, int(sentinel).bit_length()))
        if hi - lo <= 1 << 16:
            # Levels are small integers: one table lookup per weight (a 38M-weight layer
            # encodes in tens of milliseconds).
            # The table is indexed by the weight itself: numpy's negative indices wrap, so
            # no offset arithmetic (which would overflow a narrow dtype) is needed.
            size = hi - lo + 1
            table = np.full(size, sentinel, dtype=dtype)
            table[0] = 0
            inside = lv[(lv >= lo) & (lv <= hi)]
            table[inside % size] = np.searchsorted(lv, inside) + 1
            codes = table[w]
        else:
            idx = np.minimum(np.searchsorted(lv, w), max(lv.size - 1, 0))
            hit = lv[idx] == w if lv.size else np.zeros(w.shape, dtype=bool)
            codes = np.where(w == 0, 0, np.where(hit, idx + 1, sentinel)).astype(dtype)
        bad = codes == sentinel
        if np.any(bad):
            first = w[bad].ravel()[0]
            raise ValueError(
                f"weight value {int(first)} is not in the codebook levels {lv.tolist()}"
            )
        return codes.astype(code_dtype(self.value_bits), copy=False)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> integer weights (int64, same shape); 0 -> 0."""
        c = np.asarray(codes)
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {c.dtype}")
        if c.size and (int(c.min()) < 0 or int(c.max()) > self.levels.size):
            raise ValueError(
                f"codes must be in 0..{self.levels.size}, got range "
                f"{int(c.min())}..{int(c.max())}"
            )
        table = np.concatenate([np.zeros(1, dtype=np.int64), self.levels])
        return table[c.astype(np.intp, copy=False)]

    def storage_bits(self, level_bits: int | None = None) -> int:
        """Bits to store the codebook: ``len(levels) * level_bits`` (default: minimal width)."""
        lb = self.level_bits if level_bits is None else int(level_bits)
        return self.levels.size * lb
