"""Channel concat: each input rescaled to the output scale by the multiplier rule."""

from __future__ import annotations

import numpy as np

from ..arith import quantize_multiplier, requantize
from .base import LayerKind


class Concat(LayerKind):
    op = "concat"

    def infer_shape(self, node, in_shapes):
        rest = {s[1:] for s in in_shapes}
        if len(rest) != 1:
            raise ValueError(f"{node.where()}: concatenates mismatched shapes {in_shapes}")
        return (sum(s[0] for s in in_shapes), *in_shapes[0][1:])

    def quantize(self, node, graph, ctx):
        out_scale = ctx.scale(node)
        node.quant = {
            "scale": out_scale,
            "bits": ctx.act_bits,
            "multipliers": [quantize_multiplier(graph[s].quant["scale"] / out_scale) for s in graph.inputs(node.name)],
        }

    def reference(self, node, inputs):
        bits = node.quant["bits"]
        parts = [requantize(x, m, bits) for x, m in zip(inputs, node.quant["multipliers"])]
        return np.concatenate(parts, axis=1)
