"""Relative-index sparse format (EIE / Deep Compression).

Stream contract (hardware decoders rely on it exactly):

* Each row of the (rows, cols) code matrix becomes a stream of entries
  ``(code, gap)``. ``gap`` is the number of zeros skipped since the previous
  entry of the same row (or since the row start) before this entry's position.
* The index width is ``r = index_bits``, so ``0 <= gap <= 2**r - 1``. A real
  gap ``g`` larger than that is split with filler entries: a filler is
  ``(code=0, gap=2**r - 1)``; it stands for ``2**r - 1`` skipped zeros plus an
  explicit zero, so it advances the position by ``2**r``. A nonzero preceded
  by ``g`` zeros is encoded as ``g // 2**r`` fillers followed by the real entry
  with gap ``g % 2**r``.
  Example (r = 2): row ``[0]*20 + [c]`` -> 5 fillers ``(0, 3)`` then ``(c, 0)``.
* Decoding: within a row, entry k sits at column
  ``position_k = sum_{i<=k}(gap_i + 1) - 1``; entries with code 0 are fillers.
* Trailing zeros after a row's last nonzero are not encoded (the row length
  ``cols`` is known); a row without nonzeros has no entries.
* Entry word: ``entry = code | (gap << value_bits)``,
  ``entry_bits = value_bits + index_bits`` (must be <= word_bits).
* Layer: all rows' entries concatenated in row order, packed with ``bitpack``
  (``entry_bits`` fields, LSB first, no straddling, zero padded);
  ``row_ptr`` (int64, rows + 1) gives entry offsets: row i owns entries
  ``row_ptr[i]:row_ptr[i+1]``; ``row_ptr[-1]`` is the total entry count
  (fillers included).

To split rows over processing elements, encode the sub-matrix
``codes[row_idx]`` again: encoding is a few vectorised passes, cheap.

Size accounting: see ``dense`` module docstring. For this format ``index`` is
0 because the gap bits are interleaved into every entry and counted in
``entries`` (real entries) and ``fillers`` (filler entries), each at
``entry_bits``; ``row_ptr`` uses ``ptr_bits(n_entries)`` with fillers counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitpack import n_words, pack, unpack, word_dtype
from .dense import make_report, max_code, ptr_bits, validate_codes

__all__ = [
    "RelativeIndexLayer",
    "encode_relative",
    "decode_relative",
    "relative_nonzeros",
    "count_entries",
    "best_index_bits",
    "relative_stored_bits",
    "row_gaps",
]


@dataclass(frozen=True, eq=False)
class RelativeIndexLayer:
    """A layer in relative-index form; ``words`` is the authoritative packed stream."""

    rows: int
    cols: int
    value_bits: int
    index_bits: int
    word_bits: int
    entry_codes: np.ndarray  # code per entry (0 = filler)
    entry_gaps: np.ndarray  # gap per entry
    row_ptr: np.ndarray  # int64, rows + 1 entry offsets
    words: np.ndarray  # bitpack.pack(entries, entry_bits, word_bits)
    n_fillers: int
    n_levels: int  # codebook size for the report (default: largest code present)

    @property
    def format(self) -> str:
        return "relative"

    @property
    def entry_bits(self) -> int:
        return self.value_bits + self.index_bits

    @property
    def n_entries(self) -> int:
        """All stream entries, fillers included."""
        return int(self.row_ptr[-1])

    @property
    def n_real(self) -> int:
        return self.n_entries - self.n_fillers

    @property
    def entries(self) -> np.ndarray:
        """The unpacked entry fields ``code | gap << value_bits`` (int64)."""
        return self.entry_codes.astype(np.int64) | (
            self.entry_gaps.astype(np.int64) << self.value_bits
        )

    def size_report(
        self, bias_count: int, bias_bits: int, level_bits: int, n_levels: int | None = None
    ) -> dict[str, int]:
        """Bit counts (see ``dense`` module docstring); index is 0 (gaps live in entries)."""
        eb = self.entry_bits
        return make_report(
            entries=self.n_real * eb,
            fillers=self.n_fillers * eb,
            index=0,
            row_ptr=(self.rows + 1) * ptr_bits(self.n_entries),
            n_levels=self.n_levels if n_levels is None else n_levels,
            level_bits=level_bits,
            bias_count=bias_count,
            bias_bits=bias_bits,
            stored_bits=int(self.words.size) * self.word_bits,
        )


def flat_nonzero(a: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of an integer or bool array, faster on large sparse ones: runs of eight
    zero bytes are skipped a word at a time first (AlexNet's fc6: 38M codes, 3% nonzero)."""
    a = np.ascontiguousarray(a).reshape(-1)
    if a.size < 1 << 16 or a.dtype.kind not in "iub" or a.dtype.itemsize > 8:
        return np.flatnonzero(a)
    per = 8 // a.dtype.itemsize
    n = a.size // per * per
    words = np.flatnonzero(a[:n].view(np.uint64))  # words holding a nonzero
    cand = (words[:, None] * per + np.arange(per)).reshape(-1)
    return np.concatenate([cand[a[cand] != 0], n + np.flatnonzero(a[n:])])


def _nonzeros(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and code of every nonzero, row-major order."""
    rows, cols = c.shape
    flat = flat_nonzero(c)
    if cols == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    r, col = np.divmod(flat, cols)
    return r, col, c.ravel()[flat].astype(np.int64)


def nonzero_entries(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, code) of every nonzero in row-major order: one pass, shared by the width
    search and the encoder."""
    return _nonzeros(np.asarray(codes))


def gaps_of(nonzeros: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    return _gaps_from(nonzeros[0], nonzeros[1])


def _gaps_from(r: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Zeros before each nonzero since the previous nonzero of its row (or row start)."""
    g = col.copy()
    if g.size > 1:
        same_row = r[1:] == r[:-1]
        g[1:][same_row] = col[1:][same_row] - col[:-1][same_row] - 1
    return g


def row_gaps(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, gap) of every nonzero of ``codes`` in row-major order, vectorised."""
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"codes must be a 2-D (rows, cols) matrix, got shape {c.shape}")
    r, col, _ = _nonzeros(c)
    return r, _gaps_from(r, col)


def _check_index_bits(index_bits: int) -> int:
    r = int(index_bits)
    if not 1 <= r <= 32:
        raise ValueError(f"index_bits must be in 1..32, got {index_bits}")
    return r


def _fillers_from_gaps(gaps: np.ndarray, index_bits: int) -> int:
    return int(np.sum(gaps >> index_bits, dtype=np.int64)) if gaps.size else 0


def count_entries(codes: np.ndarray, index_bits: int) -> tuple[int, int]:
    """(n_entries incl. fillers, n_fillers) without building the stream."""
    r = _check_index_bits(index_bits)
    _, g = row_gaps(codes)
    nf = _fillers_from_gaps(g, r)
    return int(g.size) + nf, nf


def relative_stored_bits(
    rows: int, n_entries: int, value_bits: int, index_bits: int, word_bits: int = 32
) -> int:
    """Index-width-dependent stored bits: packed stream words plus row pointers."""
    return n_words(n_entries, value_bits + index_bits, word_bits) * word_bits + (
        rows + 1
    ) * ptr_bits(n_entries)


def best_index_bits(
    codes: np.ndarray, value_bits: int, word_bits: int = 32, max_bits: int = 16,
    gaps: np.ndarray | None = None, max_filler_rate: float | None = None,
) -> int:
    """Index width r in 1..max_bits (and value_bits + r <= word_bits) minimising the
    layer's overall stored bits; ties go to the smaller r. ``max_filler_rate``: only widths
    whose fillers are at most that fraction of the entries qualify (a filler costs an engine
    cycle); when none does, the width with the fewest fillers.

    Codebook and bias bits do not depend on r, so only the packed stream and the
    row pointers are compared. ``gaps`` (from ``row_gaps``) saves a pass over a large layer.
    """
    word_dtype(word_bits)
    c = validate_codes(codes, value_bits)
    top = min(int(max_bits), int(word_bits) - int(value_bits))
    if top < 1:
        raise ValueError(
            f"no index width fits: value_bits={value_bits}, word_bits={word_bits}, "
            f"max_bits={max_bits}"
        )
    g = row_gaps(c)[1] if gaps is None else gaps
    best_r, best_key = 1, None
    for r in range(1, top + 1):  # <= 32 vectorised passes over the gaps
        fillers = _fillers_from_gaps(g, r)
        n = int(g.size) + fillers
        if max_filler_rate is not None and fillers > max_filler_rate * n:
            key = (1, fillers)  # over the cap: after every width within it, fewest fillers first
        else:
            key = (0, relative_stored_bits(c.shape[0], n, int(value_bits), r, int(word_bits)))
        if best_key is None or key < best_key:
            best_r, best_key = r, key
    return best_r


def _uint_for(bits: int) -> type[np.unsignedinteger]:
    return np.uint16 if bits <= 16 else np.uint32


def encode_relative(
    codes: np.ndarray,
    value_bits: int,
    index_bits: int,
    word_bits: int = 32,
    n_levels: int | None = None,
    nonzeros: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> RelativeIndexLayer:
    """Encode a (rows, cols) code matrix; ``n_levels`` is only used for size reports.
    ``nonzeros`` (from ``nonzero_entries``) saves a pass over a large layer."""
    word_dtype(word_bits)
    c = validate_codes(codes, value_bits)
    r = _check_index_bits(index_bits)
    vb = int(value_bits)
    if vb + r > int(word_bits):
        raise ValueError(
            f"entry of {vb}+{r} bits does not fit a {word_bits}-bit word"
        )
    rows, cols = c.shape
    nz_row, nz_col, nz_code = _nonzeros(c) if nonzeros is None else nonzeros
    g = _gaps_from(nz_row, nz_col)

    # Each nonzero emits (g >> r) fillers and then itself; its entry lands at the
    # end of its block, so cumsum of block sizes gives every real entry's slot.
    per_nz = (g >> r) + 1
    ends = np.cumsum(per_nz)  # exclusive end of each block
    total = int(ends[-1]) if ends.size else 0
    n_fillers = total - int(g.size)

    full = (1 << r) - 1
    entry_codes = np.zeros(total, dtype=_uint_for(vb))
    entry_gaps = np.full(total, full, dtype=_uint_for(r))  # fillers by default
    real = ends - 1
    entry_codes[real] = nz_code
    entry_gaps[real] = g & full

    # row_ptr[i] = entries emitted before row i's first nonzero.
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends])
    first_nz = np.searchsorted(nz_row, np.arange(rows + 1), side="left")
    row_ptr = starts[first_nz].astype(np.int64)

    entries = entry_codes.astype(np.int64) | (entry_gaps.astype(np.int64) << vb)
    words = pack(entries, vb + r, int(word_bits))
    entry_codes.setflags(write=False)
    entry_gaps.setflags(write=False)
    row_ptr.setflags(write=False)
    return RelativeIndexLayer(
        rows=int(rows),
        cols=int(cols),
        value_bits=vb,
        index_bits=r,
        word_bits=int(word_bits),
        entry_codes=entry_codes,
        entry_gaps=entry_gaps,
        row_ptr=row_ptr,
        words=words,
        n_fillers=n_fillers,
        n_levels=max_code(c) if n_levels is None else int(n_levels),
    )


def relative_nonzeros(layer: RelativeIndexLayer, start: int = 0,
                      stop: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, code) of every nonzero of rows start..stop-1 (rows counted from ``start``),
    in stream order (row-major), decoded from the PACKED words and row_ptr."""
    vb, r = layer.value_bits, layer.index_bits
    rows, cols = layer.rows, layer.cols
    row_ptr = np.asarray(layer.row_ptr, dtype=np.int64)
    if row_ptr.shape != (rows + 1,) or row_ptr[0] != 0 or np.any(np.diff(row_ptr) < 0):
        raise ValueError("row_ptr must be non-decreasing, start at 0 and have rows + 1 items")
    stop = rows if stop is None else int(stop)
    if not 0 <= start <= stop <= rows:
        raise ValueError(f"rows {start}..{stop} outside 0..{rows}")
    ptr = row_ptr[start:stop + 1]
    e0, n = int(ptr[0]), int(ptr[-1] - ptr[0])
    k = layer.word_bits // (vb + r)
    skip = e0 % k  # the block's first entry sits mid-word
    e = unpack(np.asarray(layer.words)[e0 // k:], vb + r, skip + n, layer.word_bits)[skip:]
    codes = e & ((1 << vb) - 1)
    gaps = e >> vb

    # position = per-row cumsum(gap + 1) - 1: global cumsum minus the row's base.
    ptr = ptr - e0
    step_sum = np.cumsum(gaps + 1)
    base = np.concatenate([np.zeros(1, dtype=np.int64), step_sum])[ptr[:-1]]
    counts = np.diff(ptr)
    entry_row = np.repeat(np.arange(stop - start, dtype=np.int64), counts)
    pos = step_sum - np.repeat(base, counts) - 1
    if pos.size and int(pos.max()) >= cols:
        raise ValueError(f"corrupt stream: an entry lands at column {int(pos.max())} >= {cols}")
    keep = codes != 0  # fillers carry code 0
    return entry_row[keep], pos[keep], codes[keep]


def decode_relative(layer: RelativeIndexLayer, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rebuild the (rows, cols) int64 code matrix from the PACKED words and row_ptr; ``start``,
    ``stop``: only rows start..stop-1 (only their words are unpacked)."""
    stop = layer.rows if stop is None else int(stop)
    row, col, code = relative_nonzeros(layer, start, stop)
    out = np.zeros((stop - start, layer.cols), dtype=np.int64)
    out[row, col] = code
    return out
