"""Fully connected layer: an exact integer matrix-vector product per sample."""

from __future__ import annotations

from ..arith import requantize
from .base import LayerKind
from .weights import packed_product, quantize_weighted


class Linear(LayerKind):
    op = "linear"

    def infer_shape(self, node, in_shapes):
        o, i = node.params["weight"].shape
        if in_shapes[0] != (i,):
            raise ValueError(f"{node.where()}: expects input ({i},), got {in_shapes[0]}")
        return (o,)

    def quantize(self, node, graph, ctx):
        quantize_weighted(node, graph, ctx, node.params["weight"], node.params["bias"])

    def reference(self, node, inputs):
        q = node.quant
        acc = packed_product(node, inputs[0]) + q["bias"]
        return requantize(acc, q["multiplier"], q["bits"], node.relu)
