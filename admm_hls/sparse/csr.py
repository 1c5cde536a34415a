"""Compressed sparse row (CSR) format with absolute column indices.

Layout:

* ``code_words``: the nonzero codes in row-major order, packed at
  ``value_bits`` (``bitpack``: LSB first, no straddling, zero padded).
* ``col_words``: their absolute column indices, packed at
  ``col_bits = max(1, ceil(log2(cols)))`` in the same order, a separate stream.
* ``row_ptr`` (int64, rows + 1): row i owns nonzeros ``row_ptr[i]:row_ptr[i+1]``.

Size accounting: see ``dense`` module docstring. ``entries`` = nnz x value_bits,
``index`` = nnz x col_bits, ``padding`` = unused bits of both streams,
``weight_data`` = bits of both packed streams (= entries + index + padding),
``row_ptr`` = (rows + 1) x ptr_bits(nnz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitpack import pack, unpack, word_dtype
from .dense import make_report, max_code, ptr_bits, validate_codes

__all__ = ["CSRLayer", "encode_csr", "decode_csr", "col_bits_for"]


def col_bits_for(cols: int) -> int:
    """max(1, ceil(log2(cols))): enough bits for column indices 0..cols-1."""
    return max(1, (int(cols) - 1).bit_length()) if cols > 0 else 1


@dataclass(frozen=True, eq=False)
class CSRLayer:
    rows: int
    cols: int
    value_bits: int
    col_bits: int
    word_bits: int
    nnz: int
    code_words: np.ndarray
    col_words: np.ndarray
    row_ptr: np.ndarray
    n_levels: int  # codebook size for the report (default: largest code present)

    @property
    def format(self) -> str:
        return "csr"

    def size_report(
        self, bias_count: int, bias_bits: int, level_bits: int, n_levels: int | None = None
    ) -> dict[str, int]:
        """Bit counts (see ``dense`` module docstring)."""
        return make_report(
            entries=self.nnz * self.value_bits,
            fillers=0,
            index=self.nnz * self.col_bits,
            row_ptr=(self.rows + 1) * ptr_bits(self.nnz),
            n_levels=self.n_levels if n_levels is None else n_levels,
            level_bits=level_bits,
            bias_count=bias_count,
            bias_bits=bias_bits,
            stored_bits=(int(self.code_words.size) + int(self.col_words.size)) * self.word_bits,
        )


def encode_csr(
    codes: np.ndarray, value_bits: int, word_bits: int = 32, n_levels: int | None = None
) -> CSRLayer:
    """Encode nonzero codes + absolute columns; ``n_levels`` only feeds size reports."""
    word_dtype(word_bits)
    c = validate_codes(codes, value_bits)
    rows, cols = c.shape
    cb = col_bits_for(cols)
    if cb > int(word_bits):
        raise ValueError(f"{cb}-bit column indices do not fit a {word_bits}-bit word")
    flat = np.flatnonzero(c)
    if cols:
        nz_row, nz_col = np.divmod(flat, cols)
    else:
        nz_row = nz_col = np.zeros(0, dtype=np.int64)
    row_ptr = np.searchsorted(nz_row, np.arange(rows + 1), side="left").astype(np.int64)
    row_ptr.setflags(write=False)
    return CSRLayer(
        rows=int(rows),
        cols=int(cols),
        value_bits=int(value_bits),
        col_bits=cb,
        word_bits=int(word_bits),
        nnz=int(flat.size),
        code_words=pack(c.ravel()[flat], int(value_bits), int(word_bits)),
        col_words=pack(nz_col, cb, int(word_bits)),
        row_ptr=row_ptr,
        n_levels=max_code(c) if n_levels is None else int(n_levels),
    )


def decode_csr(layer: CSRLayer) -> np.ndarray:
    """Rebuild the (rows, cols) int64 code matrix from the packed streams."""
    row_ptr = np.asarray(layer.row_ptr, dtype=np.int64)
    if row_ptr.shape != (layer.rows + 1,) or row_ptr[0] != 0 or np.any(np.diff(row_ptr) < 0):
        raise ValueError("row_ptr must be non-decreasing, start at 0 and have rows + 1 items")
    n = int(row_ptr[-1])
    codes = unpack(layer.code_words, layer.value_bits, n, layer.word_bits)
    cols = unpack(layer.col_words, layer.col_bits, n, layer.word_bits)
    if cols.size and int(cols.max()) >= layer.cols:
        raise ValueError(f"corrupt stream: column {int(cols.max())} >= {layer.cols}")
    rows = np.repeat(np.arange(layer.rows, dtype=np.int64), np.diff(row_ptr))
    out = np.zeros((layer.rows, layer.cols), dtype=np.int64)
    out[rows, cols] = codes
    return out
