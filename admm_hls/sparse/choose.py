"""Pick dense or relative-index storage for a layer by exact stored bits.

``choose_format`` really encodes both forms (relative index at the best index
width) and compares ``size_report(...)["overall"]``; ties go to dense (simpler
hardware). The closed forms below only explain the decision.

Break-even: relative index stores nnz * (1 + f) entries of (value_bits + r)
bits, dense stores N codes of value_bits bits, so (ignoring row pointers and
word padding) relative index wins when the pruning ratio N / nnz exceeds
``(value_bits + r) * (1 + f) / value_bits``, with f = fillers per nonzero.

Expected filler rate (i.i.d. model): every weight is nonzero independently
with probability d, so a gap is geometric, P(g >= k) = (1 - d)**k. A gap needs
one filler for each m >= 1 with g >= m * 2**r, hence
E[fillers per nonzero] = sum_{m>=1} (1 - d)**(m * 2**r) = q / (1 - q),
q = (1 - d)**(2**r). Row boundaries and structured pruning are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .codebook import Codebook, signed_width
from .dense import DenseLayer, dense_report, encode_dense
from .relative_index import RelativeIndexLayer, best_index_bits, encode_relative, gaps_of, nonzero_entries

__all__ = ["FormatChoice", "choose_format", "break_even_ratio", "expected_filler_rate"]


def break_even_ratio(value_bits: int, index_bits: int, filler_rate: float) -> float:
    """Pruning ratio (dense weights / kept weights) above which relative index is smaller."""
    if value_bits < 1 or index_bits < 0 or filler_rate < 0:
        raise ValueError("need value_bits >= 1, index_bits >= 0, filler_rate >= 0")
    return (value_bits + index_bits) * (1.0 + filler_rate) / value_bits


def expected_filler_rate(density: float, index_bits: int) -> float:
    """Expected fillers per nonzero for i.i.d. nonzeros at ``density`` (q / (1 - q))."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if density == 0.0:
        return math.inf
    q = (1.0 - density) ** (2 ** int(index_bits))
    return q / (1.0 - q)


def _fmt_pair(a: int, b: int) -> tuple[str, str]:
    """Both bit counts in the unit suited to the larger one."""
    top = max(a, b)
    if top >= 1_000_000:
        return f"{a / 1e6:.2f} Mbit", f"{b / 1e6:.2f} Mbit"
    if top >= 1_000:
        return f"{a / 1e3:.2f} kbit", f"{b / 1e3:.2f} kbit"
    return f"{a} bit", f"{b} bit"


def _fmt_ratio(x: float, other: float) -> str:
    if math.isinf(x):
        return "inf"
    for digits in (1, 2, 3):
        if round(x, digits) != round(other, digits):
            break
    return f"{x:.{digits}f}"


@dataclass(frozen=True, eq=False)
class FormatChoice:
    """The chosen encoding plus both candidates and their size reports."""

    format: str  # "dense" or "relative"
    layer: DenseLayer | RelativeIndexLayer  # only the chosen encoding is built
    dense: DenseLayer | None
    relative: RelativeIndexLayer | None
    dense_report: dict[str, int]
    relative_report: dict[str, int]
    index_bits: int  # the relative index width considered
    pruning_ratio: float  # rows*cols / nnz (inf when nothing is kept)
    filler_rate: float  # fillers per nonzero at index_bits
    break_even: float  # break_even_ratio(value_bits, index_bits, filler_rate)
    reason: str

    @property
    def dense_bits(self) -> int:
        return self.dense_report["overall"]

    @property
    def relative_bits(self) -> int:
        return self.relative_report["overall"]

    @property
    def overall_bits(self) -> int:
        return self.dense_bits if self.format == "dense" else self.relative_bits

    @property
    def report(self) -> dict[str, int]:
        return self.dense_report if self.format == "dense" else self.relative_report


def choose_format(
    codes: np.ndarray,
    codebook: Codebook,
    bias_count: int,
    bias_bits: int,
    word_bits: int = 32,
    max_index_bits: int = 16,
    force: str | None = None,
    max_filler_rate: float | None = None,
) -> FormatChoice:
    """Encode dense and relative index (best width) and keep the smaller by overall bits, or
    the ``force``d format ("dense" or "relative")."""
    if force not in (None, "dense", "relative"):
        raise ValueError(f"unknown weight format {force!r}: choose dense or relative")
    vb = codebook.value_bits
    level_bits = signed_width(codebook.levels)
    n_levels = codebook.n_levels
    c = np.asarray(codes)
    if c.size and int(c.max()) > n_levels:
        raise ValueError(f"code {int(c.max())} exceeds the codebook's {n_levels} levels")
    nonzeros = nonzero_entries(c)
    r = best_index_bits(c, vb, word_bits, max_bits=max_index_bits, gaps=gaps_of(nonzeros),
                        max_filler_rate=max_filler_rate)
    rel = encode_relative(c, vb, r, word_bits, n_levels=n_levels, nonzeros=nonzeros)
    # Dense size follows from the shape: encode densely only if dense wins.
    d_rep = dense_report(c.shape[0], c.shape[1], vb, word_bits, n_levels, level_bits, bias_count, bias_bits)
    r_rep = rel.size_report(bias_count, bias_bits, level_bits)

    nnz = rel.n_real
    total = c.shape[0] * c.shape[1] if c.ndim == 2 else 0
    ratio = total / nnz if nnz else math.inf
    f_rate = rel.n_fillers / nnz if nnz else 0.0
    be = break_even_ratio(vb, r, f_rate)

    dense = None
    if force == "dense":
        fmt = "dense"
        dense = layer = encode_dense(c, vb, word_bits, n_levels=n_levels)
        ds, rs = _fmt_pair(d_rep["overall"], r_rep["overall"])
        reason = f"dense (forced): {ds} vs relative index {rs}"
    elif force == "relative":
        fmt, layer = "relative", rel
        rs, ds = _fmt_pair(r_rep["overall"], d_rep["overall"])
        reason = f"relative index (forced): {rs} vs dense {ds}"
    elif r_rep["overall"] < d_rep["overall"]:
        fmt, layer = "relative", rel
        rs, ds = _fmt_pair(r_rep["overall"], d_rep["overall"])
        reason = f"relative index: {rs} vs dense {ds}"
    else:
        dense = encode_dense(c, vb, word_bits, n_levels=n_levels)
        fmt, layer = "dense", dense
        if ratio < be:
            reason = (
                f"dense: pruning ratio {_fmt_ratio(ratio, be)}x is below the break-even "
                f"{_fmt_ratio(be, ratio)}x"
            )
        else:  # entries alone favour relative, but row pointers / padding / words do not
            ds, rs = _fmt_pair(d_rep["overall"], r_rep["overall"])
            reason = (
                f"dense: {ds} vs relative index {rs} (pruning ratio "
                f"{_fmt_ratio(ratio, be)}x above break-even {_fmt_ratio(be, ratio)}x, "
                f"but row pointers and word padding outweigh it)"
            )
    return FormatChoice(
        format=fmt,
        layer=layer,
        dense=dense,
        relative=rel if fmt == "relative" else None,
        dense_report=d_rep,
        relative_report=r_rep,
        index_bits=r,
        pruning_ratio=ratio,
        filler_rate=f_rate,
        break_even=be,
        reason=reason,
    )
