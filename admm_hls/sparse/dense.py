"""Dense weight format, plus the size-accounting helpers every format shares.

Dense layout: every code of the (rows, cols) code matrix, zeros included, at
``value_bits`` each, row-major, as ONE packed stream (see ``bitpack``: LSB
first, no straddling). A row does not start at a new word.

Size accounting (``size_report``, identical keys for all formats; all values
are integer bit counts of what is actually stored):

``entries``     real entries (dense: every code, ``rows*cols*value_bits``;
                relative: nonzero entries x (value_bits + index_bits), gap bits
                included; CSR: nonzero codes x value_bits)
``fillers``     relative-index filler entries x entry_bits (others: 0)
``index``       separately stored index bits (CSR: nonzeros x col_bits; dense: 0;
                relative: 0 because the gaps are interleaved in each entry and
                already counted in ``entries``/``fillers``)
``row_ptr``     (rows + 1) x ptr_bits, ptr_bits = max(1, ceil(log2(n_entries + 1)))
                with n_entries the length of the indexed stream (dense: 0)
``codebook``    n_levels x level_bits
``bias``        bias_count x bias_bits
``padding``     unused bits of the packed words (high bits of each word plus
                the zero tail of the last word), all packed streams together;
                NOT apportioned to ``entries``
``weight_data`` bits of the packed weight stream(s) = entries + fillers + index
                + padding = sum of words x word_bits (index is 0 except for CSR,
                whose column stream is part of its weight data)
``overall``     entries + fillers + index + padding + row_ptr + codebook + bias
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitpack import n_words, pack, unpack, word_dtype

__all__ = [
    "DenseLayer",
    "encode_dense",
    "decode_dense",
    "validate_codes",
    "ptr_bits",
    "make_report",
    "REPORT_KEYS",
]

REPORT_KEYS: tuple[str, ...] = (
    "entries",
    "fillers",
    "index",
    "row_ptr",
    "codebook",
    "bias",
    "padding",
    "weight_data",
    "overall",
)


def validate_codes(codes: np.ndarray, value_bits: int) -> np.ndarray:
    """Check a 2-D integer code matrix fits ``value_bits`` and return it as an array."""
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"codes must be a 2-D (rows, cols) matrix, got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.integer) and not (c.size == 0 or c.dtype == np.bool_):
        raise ValueError(f"codes must be integers, got dtype {c.dtype}")
    if not 1 <= int(value_bits) <= 32:
        raise ValueError(f"value_bits must be in 1..32, got {value_bits}")
    if c.size:
        lo, hi = int(c.min()), int(c.max())
        if lo < 0 or hi >= (1 << int(value_bits)):
            raise ValueError(
                f"codes must be in 0..{(1 << int(value_bits)) - 1} for value_bits={value_bits}, "
                f"got range {lo}..{hi}"
            )
    return c


def ptr_bits(n_entries: int) -> int:
    """Row-pointer width: max(1, ceil(log2(n_entries + 1)))."""
    return max(1, int(n_entries).bit_length())


def make_report(
    *,
    entries: int,
    fillers: int,
    index: int,
    row_ptr: int,
    n_levels: int,
    level_bits: int,
    bias_count: int,
    bias_bits: int,
    stored_bits: int,
) -> dict[str, int]:
    """Assemble the report; ``stored_bits`` = total bits of all packed weight words."""
    if bias_count < 0 or bias_bits < 0 or level_bits < 0:
        raise ValueError("bias_count, bias_bits and level_bits must be >= 0")
    padding = stored_bits - entries - fillers - index
    if padding < 0:  # would mean the packing or the accounting is wrong
        raise AssertionError("packed words hold fewer bits than the entries they store")
    rep = {
        "entries": int(entries),
        "fillers": int(fillers),
        "index": int(index),
        "row_ptr": int(row_ptr),
        "codebook": int(n_levels) * int(level_bits),
        "bias": int(bias_count) * int(bias_bits),
        "padding": int(padding),
        "weight_data": int(stored_bits),
    }
    rep["overall"] = (
        rep["entries"] + rep["fillers"] + rep["index"] + rep["padding"]
        + rep["row_ptr"] + rep["codebook"] + rep["bias"]
    )
    return rep


def max_code(c: np.ndarray) -> int:
    return int(c.max()) if c.size else 0


@dataclass(frozen=True, eq=False)
class DenseLayer:
    """All codes, row-major, one packed stream of ``value_bits`` fields."""

    rows: int
    cols: int
    value_bits: int
    word_bits: int
    words: np.ndarray
    n_levels: int  # codebook size for the report (default: largest code present)

    @property
    def format(self) -> str:
        return "dense"

    @property
    def n_codes(self) -> int:
        return self.rows * self.cols

    def size_report(
        self, bias_count: int, bias_bits: int, level_bits: int, n_levels: int | None = None
    ) -> dict[str, int]:
        """Bit counts (see module docstring); ``n_levels`` overrides the stored codebook size."""
        return dense_report(self.rows, self.cols, self.value_bits, self.word_bits,
                            self.n_levels if n_levels is None else n_levels, level_bits, bias_count, bias_bits)


def dense_report(rows: int, cols: int, value_bits: int, word_bits: int, n_levels: int, level_bits: int,
                 bias_count: int, bias_bits: int) -> dict[str, int]:
    """The dense size report from the shape alone: dense storage does not depend on the values,
    so a layer need not be encoded densely to know what that would cost."""
    return make_report(
        entries=rows * cols * value_bits,
        fillers=0,
        index=0,
        row_ptr=0,
        n_levels=n_levels,
        level_bits=level_bits,
        bias_count=bias_count,
        bias_bits=bias_bits,
        stored_bits=n_words(rows * cols, value_bits, word_bits) * word_bits,
    )


def encode_dense(
    codes: np.ndarray, value_bits: int, word_bits: int = 32, n_levels: int | None = None
) -> DenseLayer:
    """Pack every code at ``value_bits``; ``n_levels`` is only used for size reports."""
    word_dtype(word_bits)
    c = validate_codes(codes, value_bits)
    rows, cols = c.shape
    words = pack(c, int(value_bits), int(word_bits))
    return DenseLayer(
        rows=int(rows),
        cols=int(cols),
        value_bits=int(value_bits),
        word_bits=int(word_bits),
        words=words,
        n_levels=max_code(c) if n_levels is None else int(n_levels),
    )


def decode_dense(layer: DenseLayer, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Unpack the stream back to the (rows, cols) int64 code matrix; ``start``, ``stop``: only
    rows start..stop-1 (only their words are unpacked)."""
    stop = layer.rows if stop is None else int(stop)
    if not 0 <= start <= stop <= layer.rows:
        raise ValueError(f"rows {start}..{stop} outside 0..{layer.rows}")
    e0, n = start * layer.cols, (stop - start) * layer.cols
    k = layer.word_bits // layer.value_bits
    skip = e0 % k
    flat = unpack(np.asarray(layer.words)[e0 // k:], layer.value_bits, skip + n, layer.word_bits)[skip:]
    return flat.reshape(stop - start, layer.cols)
