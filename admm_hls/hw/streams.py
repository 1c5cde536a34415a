"""A weighted layer's packed weights, decoded once per build, and the lockstep streams its PEs read.

``weight_stream`` unpacks a conv / linear layer's packed words into one entry per field (relative
index: ``code | gap << value_bits``; dense: the code) with row pointers, and proves the
accumulator width from the bits the hardware reads. ``lockstep_words`` lays the rows of a
``Schedule`` out as one stream per row group: slot by slot, each group's row (or nothing) padded
with zero entries (code 0, gap 0: no weight, no read) to the slot's entry count, so every group's
stream has the same length and the same word / bit offset at every entry. The PEs then share one
set of counters, and one wide word (a word of every group) per cycle feeds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..arith import bits_for
from ..errors import UserError
from ..ir.graph import Node
from ..layers.weights import accumulator_bound
from ..sparse import pack, unpack
from ..sparse.ecc import check_bits, ecc_encode
from .schedule import Schedule

WORD_BITS = 32

__all__ = ["WORD_BITS", "WeightStream", "weight_stream", "lockstep_fields", "lockstep_words", "pack_lockstep",
           "with_ecc"]


@dataclass(frozen=True, eq=False)
class WeightStream:
    """A weighted layer's entries as the hardware reads them."""

    format: str  # "relative" or "dense"
    fields: np.ndarray  # int64 per entry: code | gap << value_bits (dense: code)
    ptr: np.ndarray  # int64 (rows + 1): row i owns fields ptr[i]:ptr[i + 1]
    width: int  # bits per entry
    value_bits: int
    index_bits: int  # 0 for dense
    rows: int
    cols: int
    levels: np.ndarray  # int64 codebook: code c > 0 is levels[c - 1]
    bias: np.ndarray  # int64 per row (accumulator units)
    acc_bound: int  # the largest |accumulator| of any row, from these entries
    acc_bits: int  # signed accumulator width the hardware uses (>= bits_for(acc_bound))
    ecc_bits: int = 0  # Hamming check bits above each entry's data (``sparse.ecc``; 0: none)

    @property
    def data_bits(self) -> int:
        """Bits of an entry's data, code | gap << value_bits (the width without check bits)."""
        return self.width - self.ecc_bits

    @property
    def entries(self) -> np.ndarray:
        """Entries per row, fillers included (dense: the row length)."""
        return np.diff(self.ptr)

    @property
    def codes(self) -> np.ndarray:
        return self.fields & ((1 << self.value_bits) - 1)

    @cached_property
    def nonzeros(self) -> np.ndarray:
        """Nonzero weights per row."""
        row_of = np.repeat(np.arange(self.rows), self.entries)
        return np.bincount(row_of[self.codes != 0], minlength=self.rows).astype(np.int64)

    @property
    def per_word(self) -> int:
        return WORD_BITS // self.width

    @property
    def codebook(self) -> np.ndarray:
        """The codebook the hardware holds: one level per code 1 .. 2^value_bits - 1, zero past the
        stored levels, so a code that a bit flip pushes past them weighs nothing (the same in
        every backend) instead of reading past the table."""
        out = np.zeros((1 << self.value_bits) - 1, dtype=np.int64)
        n = min(out.size, self.levels.size)  # levels past the last code are never read
        out[:n] = self.levels[:n]
        return out


def weight_stream(node: Node, act_bits: int) -> WeightStream:
    """Unpack ``node``'s packed words once and prove its accumulator bound from them (the same
    rule as the quantize pass, ``layers.weights.accumulator_bound``, on the stored bits)."""
    packed = node.packed
    if packed is None:
        raise ValueError(f"{node.where()} has no packed weights: run the pack pass first")
    layer = packed.layer
    if int(layer.word_bits) != WORD_BITS:
        raise ValueError(f"{node.where()}: the hardware reads {WORD_BITS}-bit words, got {layer.word_bits}")
    vb = int(layer.value_bits)
    if packed.format == "relative":
        width, ib = vb + int(layer.index_bits), int(layer.index_bits)
        ptr = np.asarray(layer.row_ptr, dtype=np.int64)
    elif packed.format == "dense":
        width, ib = vb, 0
        ptr = np.arange(layer.rows + 1, dtype=np.int64) * layer.cols
    else:
        raise ValueError(f"{node.where()}: no hardware reads weight format '{packed.format}'")
    fields = unpack(layer.words, width, int(ptr[-1]), WORD_BITS)
    levels = np.asarray(packed.codebook.levels, dtype=np.int64)
    codes = fields & ((1 << vb) - 1)
    if int(codes.max(initial=0)) > levels.size:
        raise ValueError(f"{node.where()}: a code exceeds the codebook's {levels.size} levels")
    bias = np.asarray(node.quant["bias"], dtype=np.int64).reshape(-1)
    if bias.size != layer.rows:
        raise ValueError(f"{node.where()}: {bias.size} biases for {layer.rows} rows")
    table = np.concatenate([np.zeros(1, np.int64), np.abs(levels)])
    row_of = np.repeat(np.arange(layer.rows), np.diff(ptr))
    # float64 sums are exact: every row sum is far below 2^53
    sums = np.bincount(row_of, weights=table[codes], minlength=layer.rows).astype(np.int64)
    bound = accumulator_bound(sums, bias, act_bits)
    acc_bits = max(2, bits_for(bound), int(node.quant.get("acc_bits", 2)))
    if acc_bits > 32:
        raise ValueError(f"{node.where()}: the accumulator needs {acc_bits} bits, more than 32")
    return WeightStream(packed.format, fields, ptr, width, vb, ib, int(layer.rows), int(layer.cols), levels, bias,
                        bound, acc_bits)


def with_ecc(stream: WeightStream, where: str) -> WeightStream:
    """``stream`` with a single-error-correcting check code on every entry (``sparse.ecc``)."""
    k = stream.data_bits
    p = check_bits(k)
    if k + p > WORD_BITS:
        raise UserError(f"{where}: an entry of {k} bits with its {p} check bits does not fit a {WORD_BITS}-bit word: "
                        "build without --ecc, or lower with fewer weight bits or a narrower index (--max-fillers)")
    return replace(stream, fields=ecc_encode(stream.fields, k), width=k + p, ecc_bits=p)


def lockstep_fields(stream: WeightStream, schedule: Schedule) -> np.ndarray:
    """(groups, entries) int64: each group's fields, slot by slot, padded with zero entries to
    the slot's count (``schedule.slot_count``)."""
    starts = schedule.slot_start
    total = schedule.entries
    out = np.zeros((schedule.groups, total), dtype=np.int64)
    lens_all = stream.entries
    for g in range(schedule.groups):
        rows = schedule.slot_rows[:, g]
        valid = rows >= 0
        lens = np.where(valid, lens_all[np.where(valid, rows, 0)], 0)
        n = int(lens.sum())
        if not n:
            continue
        within = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        dst = np.repeat(starts, lens) + within
        src = np.repeat(stream.ptr[np.where(valid, rows, 0)], lens) + within
        out[g, dst] = stream.fields[src]
    return out


def lockstep_words(stream: WeightStream, schedule: Schedule) -> np.ndarray:
    """(groups, steps) uint32: each group's lockstep fields packed LSB first into 32-bit words
    (``sparse.bitpack``: no field straddles a word). Word t of every group is read in the same
    cycle: one step."""
    return pack_lockstep(lockstep_fields(stream, schedule), stream.width)


def pack_lockstep(fields: np.ndarray, width: int) -> np.ndarray:
    """(groups, steps) uint32 words of (groups, entries) lockstep fields of ``width`` bits."""
    words = [np.asarray(pack(f, width, WORD_BITS), dtype=np.uint32) for f in fields]
    steps = max((w.size for w in words), default=0)
    return np.stack(words) if words else np.zeros((0, steps), np.uint32)

