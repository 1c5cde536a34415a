"""Independent bit flips at a bit-error rate: every bit of a set of fields flips with probability
``ber``, independently (the usual soft-error model of a memory)."""

from __future__ import annotations

import numpy as np

__all__ = ["flip_bits", "flip_signed"]


def flip_bits(values: np.ndarray, lo: int, hi: int, ber: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of non-negative int64 ``values`` with each of bits lo..hi-1 of every value flipped
    with probability ``ber``. The number of flips is drawn once (binomial) and their places
    without replacement, so a run costs O(flips), not O(bits): a low rate over a large memory is
    cheap."""
    out = np.array(values, dtype=np.int64, copy=True)
    k = int(hi) - int(lo)
    bits = out.size * k
    if k <= 0 or bits == 0 or ber <= 0:
        return out
    n = int(rng.binomial(bits, min(1.0, float(ber))))
    if not n:
        return out
    where = rng.choice(bits, size=n, replace=False)
    flat = out.reshape(-1)
    np.bitwise_xor.at(flat, where // k, np.left_shift(np.int64(1), lo + where % k))
    return out


def flip_signed(values: np.ndarray, bits: int, ber: float, rng: np.random.Generator) -> np.ndarray:
    """``flip_bits`` on signed values stored as ``bits``-bit two's complement (feature maps,
    codebook levels): flipped in that encoding and read back signed."""
    mask = (1 << bits) - 1
    raw = flip_bits(np.asarray(values, dtype=np.int64) & mask, 0, bits, ber, rng)
    return np.where(raw >> (bits - 1) & 1, raw - (1 << bits), raw)
