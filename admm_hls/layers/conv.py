"""2-D convolution (groups 1): im2col, then an exact integer matrix product with the packed weights."""

from __future__ import annotations

import numpy as np

from ..arith import requantize
from .base import LayerKind
from .weights import packed_product, quantize_weighted


def conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def im2col(x: np.ndarray, kernel, stride, padding, pad_value: int = 0) -> np.ndarray:
    """(N, C, H, W) -> (N, Ho, Wo, C*Kh*Kw) windows, flattened in PyTorch's weight order."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * kh * kw)


class Conv(LayerKind):
    op = "conv"

    def infer_shape(self, node, in_shapes):
        (c, h, w), p = in_shapes[0], node.params
        o, ci, kh, kw = p["weight"].shape
        if ci != c:
            raise ValueError(f"{node.where()}: weight expects {ci} input channels, input has {c}")
        return (o, conv_out(h, kh, p["stride"][0], p["padding"][0]), conv_out(w, kw, p["stride"][1], p["padding"][1]))

    def quantize(self, node, graph, ctx):
        quantize_weighted(node, graph, ctx, node.params["weight"], node.params["bias"])

    def reference(self, node, inputs):
        p, q = node.params, node.quant
        kernel = p["weight"].shape[2:]
        cols = im2col(inputs[0], kernel, p["stride"], p["padding"])
        acc = packed_product(node, cols) + q["bias"]
        out = requantize(acc, q["multiplier"], q["bits"], node.relu)
        return out.transpose(0, 3, 1, 2)
