"""Flatten (C, H, W) -> (C*H*W,) in PyTorch's NCHW order: no arithmetic."""

from __future__ import annotations

import math

from .base import LayerKind


class Flatten(LayerKind):
    op = "flatten"

    def infer_shape(self, node, in_shapes):
        return (math.prod(in_shapes[0]),)

    def quantize(self, node, graph, ctx):
        node.quant = {"scale": graph[graph.inputs(node.name)[0]].quant["scale"], "bits": ctx.act_bits}

    def reference(self, node, inputs):
        return inputs[0].reshape(inputs[0].shape[0], -1)
