"""What the hardware computes from (possibly faulted) memories, exactly: the reference of the
fault study, equal to ``admm_hls.reference`` when nothing is flipped.

A conv / linear layer's lane reads, per slot, ``count`` entries of its stream from the slot's
start (entries past the stream read as zero). Entry k sits at column ``sum_{i<=k}(gap_i + 1) - 1``;
an entry whose column runs past the row (a flipped gap) adds nothing, nor does code 0; code c
weighs ``levels[c - 1]``. Two entries at one column both add. The accumulator is ``acc_bits``
two's complement (it wraps, as the hardware's does, should flipped levels exceed its proof).
With ``--ecc`` every entry is corrected (``sparse.ecc``) before it is decoded.
"""

from __future__ import annotations

import numpy as np

from ..arith import requantize
from ..hw.names import ALIASES
from ..layers.conv import im2col
from ..reference import evaluate as exact
from ..sparse.ecc import ecc_correct
from .flips import flip_signed
from .memories import LayerMemories

__all__ = ["hardware_weights", "wrap", "faulted_evaluator"]


def wrap(acc: np.ndarray, bits: int) -> np.ndarray:
    """Two's complement ``bits``-bit wrap of int64 values."""
    half = np.int64(1) << np.int64(bits - 1)
    return ((np.asarray(acc, dtype=np.int64) + half) & ((half << 1) - 1)) - half


def hardware_weights(mem: LayerMemories) -> np.ndarray:
    """(rows, cols) int64: the weight each row's lane applies to each column, decoded from ``mem``
    the way the hardware decodes it (module docstring)."""
    layer = mem.layer
    s, st = layer.schedule, layer.stream
    valid = mem.rows_valid
    g_of, slot_of = np.nonzero(valid)
    rows = s.slot_rows[slot_of, g_of]
    count = mem.counts[g_of, slot_of]
    total = int(count.sum())
    seg_first = np.cumsum(count) - count
    within = np.arange(total, dtype=np.int64) - np.repeat(seg_first, count)
    entry = np.repeat(s.slot_start[slot_of], count) + within
    lane = np.repeat(g_of, count)
    n = mem.fields.shape[1]
    field = np.zeros(total, dtype=np.int64)
    inside = entry < n
    field[inside] = mem.fields[lane[inside], entry[inside]]
    if st.ecc_bits:
        field = ecc_correct(field, st.data_bits)
    code = field & ((1 << st.value_bits) - 1)
    step = (field >> st.value_bits) + 1 if st.format == "relative" else np.ones_like(field)
    run = np.cumsum(step)
    before = np.concatenate([np.zeros(1, np.int64), run])[seg_first]
    col = run - np.repeat(before, count) - 1
    out = np.zeros((st.rows, st.cols), dtype=np.int64)
    keep = (code != 0) & (col < st.cols)
    row_of = np.repeat(rows, count)
    np.add.at(out, (row_of[keep], col[keep]), mem.levels[code[keep] - 1])
    return out


def _weighted(node, x: np.ndarray, weights: np.ndarray, mem: LayerMemories) -> np.ndarray:
    st, q = mem.layer.stream, node.quant
    # float32 products and sums are exact while every |partial sum| < 2^24; else float64 (< 2^53)
    peak = int(np.abs(weights).sum(axis=1).max(initial=0)) * (1 << (q["bits"] - 1))
    dtype = np.float32 if peak < 1 << 24 else np.float64
    x = np.asarray(x).astype(dtype)
    if node.op == "conv":
        p = node.params
        x = im2col(x, p["weight"].shape[2:], p["stride"], p["padding"])
    acc = np.rint(x.reshape(-1, st.cols) @ weights.T.astype(dtype)).astype(np.int64)
    out = requantize(wrap(acc + st.bias, st.acc_bits), q["multiplier"], q["bits"], node.relu)
    out = out.reshape(*x.shape[:-1], st.rows)
    return out.transpose(0, 3, 1, 2) if node.op == "conv" else out


def faulted_evaluator(mems: dict[str, LayerMemories], *, weights: dict[str, np.ndarray] | None = None,
                      act_bits: int = 8, act_ber: float = 0.0, rng: np.random.Generator | None = None):
    """An ``evaluate`` for ``reference.run``: weighted layers from ``mems`` as the hardware decodes
    them (``weights``: their ``hardware_weights``, when already decoded); with ``act_ber``, every
    value a layer stores in its feature-map buffer (the input image's included) flips bits at
    that rate before its readers see it."""
    if weights is None:
        weights = {name: hardware_weights(m) for name, m in mems.items()}

    def evaluate(node, inputs):
        out = _weighted(node, inputs[0], weights[node.name], mems[node.name]) if node.name in weights \
            else exact(node, inputs)
        if act_ber > 0 and node.op not in ALIASES and node.op != "output":
            out = flip_signed(out, act_bits, act_ber, rng)
        return out

    return evaluate
