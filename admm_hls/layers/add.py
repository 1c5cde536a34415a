"""Residual add: both inputs rescaled to the output scale with one shared shift,
out = saturate((a * m_a + b * m_b + 2^(shift-1)) >> shift), then the optional fused ReLU."""

from __future__ import annotations

import numpy as np

from ..arith import Multiplier, qrange, quantize_multiplier
from .base import LayerKind


def shared_shift(reals: list[float]) -> list[Multiplier]:
    """Multipliers for several inputs on one shift: the largest gets full int32 precision."""
    top = quantize_multiplier(max(reals))
    return [Multiplier(int(round(r * 2.0**top.shift)), top.shift) for r in reals]


class Add(LayerKind):
    op = "add"

    def infer_shape(self, node, in_shapes):
        if in_shapes[0] != in_shapes[1]:
            raise ValueError(f"{node.where()}: adds shapes {in_shapes[0]} and {in_shapes[1]}")
        return in_shapes[0]

    def quantize(self, node, graph, ctx):
        out_scale = ctx.scale(node)
        reals = [graph[s].quant["scale"] / out_scale for s in graph.inputs(node.name)]
        node.quant = {"scale": out_scale, "bits": ctx.act_bits, "multipliers": shared_shift(reals)}

    def reference(self, node, inputs):
        ms = node.quant["multipliers"]
        shift = ms[0].shift
        acc = sum(x.astype(np.int64) * np.int64(m.m0) for x, m in zip(inputs, ms)) + np.int64(1 << (shift - 1))
        lo, hi = qrange(node.quant["bits"])
        return np.clip(acc >> np.int64(shift), 0 if node.relu else lo, hi)
