"""Max-pool (exact on integers, same scale) and average-pool (window sum, then the multiplier
rule with M = in_scale / (out_scale * window))."""

from __future__ import annotations

from ..arith import qrange, quantize_multiplier, requantize
from .base import LayerKind
from .conv import conv_out, im2col


def _pool_shape(node, in_shapes):
    (c, h, w), p = in_shapes[0], node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    return (c, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))


def _windows(node, x, pad_value):
    """(N, C, Ho, Wo, Kh*Kw) windows of each channel."""
    p = node.params
    n, c = x.shape[:2]
    cols = im2col(x.reshape(n * c, 1, *x.shape[2:]), p["kernel"], p["stride"], p["padding"], pad_value)
    return cols.reshape(n, c, *cols.shape[1:])


class MaxPool(LayerKind):
    op = "maxpool"

    def infer_shape(self, node, in_shapes):
        return _pool_shape(node, in_shapes)

    def quantize(self, node, graph, ctx):
        node.quant = {"scale": graph[graph.inputs(node.name)[0]].quant["scale"], "bits": ctx.act_bits}

    def reference(self, node, inputs):
        # Padding never wins: it is below every representable activation.
        return _windows(node, inputs[0], qrange(node.quant["bits"])[0] - 1).max(axis=-1)


class AvgPool(LayerKind):
    op = "avgpool"

    def infer_shape(self, node, in_shapes):
        return _pool_shape(node, in_shapes)

    def quantize(self, node, graph, ctx):
        in_scale = graph[graph.inputs(node.name)[0]].quant["scale"]
        out_scale = ctx.scale(node)
        node.quant = {
            "scale": out_scale,
            "bits": ctx.act_bits,
            "multiplier": quantize_multiplier(in_scale / (out_scale * node.params["divisor"])),
        }

    def reference(self, node, inputs):
        total = _windows(node, inputs[0], 0).sum(axis=-1)
        return requantize(total, node.quant["multiplier"], node.quant["bits"], node.relu)
