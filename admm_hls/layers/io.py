"""Graph input and output: the input is quantized outside (in Python, by the caller); the output
passes the last layer's integers through."""

from __future__ import annotations

import numpy as np

from .base import LayerKind


class Input(LayerKind):
    op = "input"

    def infer_shape(self, node, in_shapes):
        return node.shape

    def quantize(self, node, graph, ctx):
        node.quant = {"scale": ctx.scale(node), "bits": ctx.act_bits}

    def reference(self, node, inputs):
        (x,) = inputs
        return np.asarray(x, dtype=np.int64)


class Output(LayerKind):
    op = "output"

    def infer_shape(self, node, in_shapes):
        return in_shapes[0]

    def quantize(self, node, graph, ctx):
        q = graph[graph.inputs(node.name)[0]].quant
        node.quant = {"scale": q["scale"], "bits": q["bits"]}

    def reference(self, node, inputs):
        return inputs[0]
