"""What conv and linear layers share: integer weights from a codebook, int32 bias, the
accumulator bound proof, the requantization multiplier, and reading weights back from the
packed representation (the reference computes from the packed bits, not from float weights)."""

from __future__ import annotations

import numpy as np

from ..arith import bits_for, qrange, quantize_multiplier
from ..errors import UserError
from ..sparse import Codebook, decode_dense, decode_relative


def codebook_for(bits: int) -> Codebook:
    """All levels +-1..+-(2^(bits-1)-1): the ADMM level set; code 0 is the pruned zero."""
    top = 2 ** (bits - 1) - 1
    return Codebook.from_levels([v for v in range(-top, top + 1) if v])


def on_levels(weight: np.ndarray, levels: np.ndarray, scale: float) -> bool:
    """Whether float32 ``weight`` is exactly scale * levels, checked at the nonzeros only (the
    rest must be zero in both): cheap on layers with tens of millions of mostly-zero weights."""
    w, lv = weight.reshape(-1), levels.reshape(-1)
    nz = np.flatnonzero(lv)
    if np.count_nonzero(w) != nz.size:
        return False
    return bool(np.array_equal((lv[nz].astype(np.float64) * scale).astype(np.float32), w[nz]))


def integer_weights(node, ctx, weight: np.ndarray) -> tuple[np.ndarray, float, int]:
    """(levels (rows, fan_in), small signed integers, weight scale, bits).

    ADMM levels from the checkpoint are used when the layer's float weights are exactly
    scale * levels (BatchNorm folding, for one, moves weights off their levels); otherwise the
    weights are quantized post-training to ``ctx.weight_bits`` with a symmetric max-abs scale,
    zeros staying zero.
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


def quantize_weighted(node, graph, ctx, weight: np.ndarray, bias: np.ndarray) -> None:
    """Integer parameters of a conv/linear layer, with the accumulator overflow proof."""
    (src,) = graph.inputs(node.name)
    in_scale = graph[src].quant["scale"]
    levels, w_scale, bits = integer_weights(node, ctx, weight)
    out_scale = ctx.scale(node)
    acc_scale = in_scale * w_scale
    bias_q = np.floor(bias.astype(np.float64) / acc_scale + 0.5).astype(np.int64)
    # Bound: every input at its largest magnitude with the sign of its weight, plus the bias.
    x_peak = -qrange(ctx.act_bits)[0]
    row_sums = np.abs(levels).sum(axis=1, dtype=np.int64)  # levels fit int8: abs cannot overflow
    bound = int((row_sums * x_peak + np.abs(bias_q)).max()) if levels.size else 0
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


def packed_levels(node) -> np.ndarray:
    """Integer weights (rows, fan_in) decoded from the packed words: exercises the format."""
    layer = node.packed.layer
    codes = decode_relative(layer) if node.packed.format == "relative" else decode_dense(layer)
    return node.packed.codebook.decode(codes).astype(np.int64)
