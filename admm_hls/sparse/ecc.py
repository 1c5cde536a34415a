"""Single-error-correcting Hamming code per weight-stream entry (the optional ``--ecc``).

A flipped gap bit shifts every later weight of its row, so the index stream is the memory a bit
flip hurts most. With the code, each entry ``data = code | gap << value_bits`` (``k`` bits)
carries ``p`` check bits, the fewest with ``2^p >= k + p + 1``, stored above it:
``field = data | check << k``. Codeword positions follow Hamming: check bit j sits at position
2^j, the data bits, LSB first, at the other positions 3, 5, 6, 7, 9, ... The check bits make
the XOR of the positions of all set bits zero; a decoder XORs them again (the syndrome) and,
when it names a data bit's position, flips that bit. One flipped bit in an entry is always
corrected; two are not (the decoder may flip a third): the code is SEC, not SECDED, so
the hardware needs no extra state and keeps one entry per cycle. A zero entry (lockstep padding)
is a codeword, with zero check bits.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["check_bits", "data_positions", "syndrome_masks", "ecc_encode", "ecc_correct", "ecc_cost"]


def check_bits(data_bits: int) -> int:
    """The fewest check bits ``p`` with 2^p >= data_bits + p + 1."""
    p = 0
    while (1 << p) < data_bits + p + 1:
        p += 1
    return p


@lru_cache(maxsize=None)
def data_positions(data_bits: int) -> tuple[int, ...]:
    """Codeword position of each data bit, LSB first: the positions that are not powers of two."""
    out, pos = [], 1
    while len(out) < data_bits:
        if pos & (pos - 1):
            out.append(pos)
        pos += 1
    return tuple(out)


@lru_cache(maxsize=None)
def syndrome_masks(data_bits: int) -> tuple[int, ...]:
    """Per check bit j: the mask of the data bits whose position has bit j set (what the
    hardware XORs, with check bit j, into syndrome bit j)."""
    pos = data_positions(data_bits)
    return tuple(sum(1 << i for i, q in enumerate(pos) if q >> j & 1) for j in range(check_bits(data_bits)))


def _parity(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).copy()
    for s in (32, 16, 8, 4, 2, 1):
        x ^= x >> s
    return x & 1


def ecc_encode(data: np.ndarray, data_bits: int) -> np.ndarray:
    """Fields ``data | check << data_bits`` of int64 entries of ``data_bits`` bits."""
    d = np.asarray(data, dtype=np.int64)
    check = np.zeros_like(d)
    for j, mask in enumerate(syndrome_masks(data_bits)):
        check |= _parity(d & mask) << j
    return d | (check << data_bits)


def ecc_correct(fields: np.ndarray, data_bits: int) -> np.ndarray:
    """The data bits of (possibly flipped) fields after single-error correction."""
    f = np.asarray(fields, dtype=np.int64)
    data = f & ((1 << data_bits) - 1)
    check = f >> data_bits
    syndrome = np.zeros_like(f)
    for j, mask in enumerate(syndrome_masks(data_bits)):
        syndrome |= (_parity(data & mask) ^ (check >> j & 1)) << j
    lookup = np.zeros(1 << check_bits(data_bits), dtype=np.int64)  # syndrome -> data bit to flip
    for i, q in enumerate(data_positions(data_bits)):
        lookup[q] = 1 << i
    return data ^ lookup[syndrome]


def ecc_cost(n_entries: int, data_bits: int, word_bits: int = 32) -> dict[str, int]:
    """What the code adds to a stream of ``n_entries`` entries of ``data_bits`` bits: its check
    bits, and the packed words with and without it (fewer entries fit a word)."""
    from .bitpack import n_words

    p = check_bits(data_bits)
    return {"check_bits_per_entry": p, "check_bits": int(n_entries) * p,
            "stream_bits": n_words(n_entries, data_bits, word_bits) * word_bits,
            "stream_bits_ecc": n_words(n_entries, data_bits + p, word_bits) * word_bits}
