"""A ReLU that could not be fused into its producer: a clamp at zero, same scale."""

from __future__ import annotations

import numpy as np

from .base import LayerKind


class ReLU(LayerKind):
    op = "relu"

    def infer_shape(self, node, in_shapes):
        return in_shapes[0]

    def quantize(self, node, graph, ctx):
        node.quant = {"scale": graph[graph.inputs(node.name)[0]].quant["scale"], "bits": ctx.act_bits}

    def reference(self, node, inputs):
        return np.maximum(inputs[0], 0)
