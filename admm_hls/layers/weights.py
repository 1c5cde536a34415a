"""What conv and linear layers share: integer weights from a codebook, int32 bias, the
accumulator bound proof, the requantization multiplier, and reading weights back from the
packed representation (the reference computes from the packed bits, not from float weights)."""

from __future__ import annotations

import numpy as np

from ..arith import bits_for, qrange, quantize_multiplier
from ..errors import UserError
from ..sparse import Codebook, decode_dense, decode_relative
from ..sparse.relative_index import flat_nonzero, relative_nonzeros


def codebook_for(bits: int) -> Codebook:
    """All levels +-1..+-(2^(bits-1)-1): the ADMM level set; code 0 is the pruned zero."""
    top = 2 ** (bits - 1) - 1
    return Codebook.from_levels([v for v in range(-top, top + 1) if v])


def on_levels(weight: np.ndarray, levels: np.ndarray, scale: float) -> bool:
    """Whether float32 ``weight`` is exactly scale * levels, checked at the nonzeros only (the
    rest must be zero in both): cheap on layers with tens of millions of mostly-zero weights."""
    w, lv = weight.reshape(-1), levels.reshape(-1)
    nz = flat_nonzero(lv)
    if np.count_nonzero(w) != nz.size:
        return False
    return bool(np.array_equal((lv[nz].astype(np.float64) * scale).astype(np.float32), w[nz]))


def integer_weights(node, ctx, weight: np.ndarray) -> tuple[np.ndarray, float, int]:
    """(levels (rows, fan_in), small signed integers, weight scale, bits).

    ADMM levels from the checkpoint are used when the layer's float weights are exactly
    scale * levels; otherwise the weights are quantized post-training to ``ctx.weight_bits``
    with a symmetric max-abs scale, zeros staying zero. Loading already refused a checkpoint
    whose stored weights are off their levels (``compress.validate``), so this happens only
    where BatchNorm folding moved them, or where the user asked for ``requantize``.
    """
    rows = weight.shape[0]
    admm = ctx.levels_for(node)
    if admm is not None:
        levels, scale, bits = admm
        if levels.shape == weight.shape and on_levels(weight, levels, scale):
            return levels.reshape(rows, -1), float(scale), int(bits)
    bits = ctx.weight_bits
    top = 2 ** (bits - 1) - 1
    peak = float(np.abs(weight).max()) if weight.size else 0.0
    scale = peak / top if peak > 0 else 1.0
    levels = np.clip(np.floor(np.abs(weight.astype(np.float64)) / scale + 0.5), 0, top) * np.sign(weight)
    return levels.reshape(rows, -1).astype(np.int8), scale, bits


def accumulator_bound(abs_row_sums: np.ndarray, bias: np.ndarray, act_bits: int) -> int:
    """The largest |accumulator| any row can reach: every input at its largest magnitude with
    the sign of its weight, plus the bias. ``abs_row_sums``: sum of |weight level| per row."""
    if not np.size(abs_row_sums):
        return 0
    x_peak = -qrange(act_bits)[0]
    sums = np.asarray(abs_row_sums, dtype=np.int64)
    return int((sums * x_peak + np.abs(np.asarray(bias, dtype=np.int64))).max())


def quantize_weighted(node, graph, ctx, weight: np.ndarray, bias: np.ndarray) -> None:
    """Integer parameters of a conv/linear layer, with the accumulator overflow proof."""
    (src,) = graph.inputs(node.name)
    in_scale = graph[src].quant["scale"]
    levels, w_scale, bits = integer_weights(node, ctx, weight)
    out_scale = ctx.scale(node)
    acc_scale = in_scale * w_scale
    bias_f = np.floor(bias.astype(np.float64) / acc_scale + 0.5)
    # Checked before the int64 cast, which would wrap a huge bias into a small or negative one.
    peak = float(np.abs(bias_f).max()) if bias_f.size else 0.0
    if not peak < 2.0 ** (ctx.acc_bits - 1):
        raise UserError(
            f"layer {node.name}: a bias is {peak:.3g} accumulator units, more than the {ctx.acc_bits}-bit "
            "accumulator holds: check the checkpoint's biases and scales, or recompress the model"
        )
    bias_q = bias_f.astype(np.int64)
    row_sums = np.abs(levels).sum(axis=1, dtype=np.int64)  # levels fit int8: abs cannot overflow
    bound = accumulator_bound(row_sums, bias_q, ctx.act_bits) if levels.size else 0
    need = bits_for(bound)
    if need > ctx.acc_bits:
        raise UserError(
            f"layer {node.name}: the accumulator can reach {bound:,} and needs {need} bits, more than the "
            f"{ctx.acc_bits}-bit accumulator: use fewer weight or activation bits, or prune this layer harder"
        )
    node.quant = {
        "scale": out_scale,
        "bits": ctx.act_bits,
        "in_scale": in_scale,
        "w_scale": w_scale,
        "weight_bits": bits,
        "levels": levels,
        "bias": bias_q,
        "acc_bound": bound,
        "acc_bits": need,
        "multiplier": quantize_multiplier(acc_scale / out_scale),
    }


def packed_levels(node, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Integer weights (rows, fan_in) decoded from the packed words: exercises the format.
    ``start``, ``stop``: only those rows."""
    layer = node.packed.layer
    decode = decode_relative if node.packed.format == "relative" else decode_dense
    codes = decode(layer, start, stop)
    return node.packed.codebook.decode(codes).astype(np.int64)


PRODUCT_BLOCK_BYTES = 32 << 20  # decoded weights (or gathered inputs) held at once


def packed_product(node, x: np.ndarray) -> np.ndarray:
    """x @ W.T exactly, W the integer weights decoded from the packed words, for x of shape
    (..., fan_in) -> (..., rows) int64. Float64 arithmetic is exact here: the accumulator bound
    (proved < 2^31 by quantize) keeps every partial sum far below 2^53.

    Two ways, the cheaper for the shapes at hand: the weights decoded a block of rows at a time
    (a 4096 x 9216 layer never exists as one dense matrix) and multiplied with BLAS, or, for a
    relative-index layer and few input rows, only its nonzeros (gather the inputs they read,
    scale, sum per row)."""
    rows, cols = node.packed.layer.rows, node.packed.layer.cols
    flat = np.asarray(x).reshape(-1, cols).astype(np.float64)
    m = flat.shape[0]
    if node.packed.format == "relative":
        nnz = node.packed.layer.n_real
        # element costs: gather + scale + sum ~4 ns; dense decode ~4 ns; BLAS multiply-add ~0.05 ns
        if m * nnz * 4 < rows * cols * (4 + m * 0.05):
            return _sparse_product(node, flat, m).reshape(*np.shape(x)[:-1], rows)
    out = np.empty((m, rows), dtype=np.int64)
    block = max(1, PRODUCT_BLOCK_BYTES // (16 * max(1, cols)))
    for r0 in range(0, rows, block):
        r1 = min(rows, r0 + block)
        out[:, r0:r1] = np.rint(flat @ packed_levels(node, r0, r1).T.astype(np.float64))
    return out.reshape(*np.shape(x)[:-1], rows)


def _sparse_product(node, flat: np.ndarray, m: int) -> np.ndarray:
    row, col, code = relative_nonzeros(node.packed.layer)
    level = node.packed.codebook.decode(code).astype(np.float64)
    rows = node.packed.layer.rows
    out = np.zeros((m, rows), dtype=np.int64)
    if not row.size:
        return out
    starts = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]]))  # first nonzero of each row
    chunk = max(1, PRODUCT_BLOCK_BYTES // (8 * row.size))
    for i0 in range(0, m, chunk):
        sums = np.add.reduceat(flat[i0:i0 + chunk, col] * level, starts, axis=1)
        out[i0:i0 + chunk, row[starts]] = np.rint(sums).astype(np.int64)
    return out
