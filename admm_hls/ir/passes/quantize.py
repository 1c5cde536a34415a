"""Quantize pass: every node gets its integer parameters (``node.quant``) per the arithmetic
contract in ``admm_hls.arith``; conv/linear layers prove their accumulator bound here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...arith import ScaleError, activation_scale
from ...errors import UserError
from ...layers import kind
from ..graph import LayerGraph, Node


@dataclass
class QuantContext:
    ranges: dict[str, list[float]]  # fx node name -> [min, max] measured on real data
    levels: dict[str, tuple[np.ndarray, float, int]] = field(default_factory=dict)  # module -> ADMM codebook
    act_bits: int = 8
    weight_bits: int = 8  # post-training quantization where a layer has no ADMM levels
    acc_bits: int = 32

    def __post_init__(self) -> None:
        # acc * m0 (m0 < 2^31) must fit int64, and float64 matmuls stay exact below 2^53.
        if not 2 <= self.acc_bits <= 32:
            raise UserError(f"accumulator width {self.acc_bits} is not supported: use 2..32 bits")
        if not 2 <= self.act_bits <= 16 or not 2 <= self.weight_bits <= 8:
            raise UserError(f"activation bits {self.act_bits} / weight bits {self.weight_bits} out of range: "
                            "use 2..16 activation bits and 2..8 weight bits")

    def scale(self, node: Node) -> float:
        if node.calib not in self.ranges:
            raise UserError(
                f"no activation range for {node.where()}: the checkpoint holds no calibration for it; "
                "recompress with this version or pass --calibrate"
            )
        lo, hi = self.ranges[node.calib]
        return activation_scale(lo, hi, self.act_bits)

    def levels_for(self, node: Node):
        return self.levels.get(node.module)


def run(graph: LayerGraph, ctx: QuantContext) -> None:
    for node in graph.topo():
        try:
            kind(node.op).quantize(node, graph, ctx)
        except ScaleError as exc:
            raise UserError(f"{node.where()}: its activation or weight scales are out of proportion, {exc}: "
                            "recompress the model, or re-measure the ranges with --calibrate DATASET") from None
    graph.meta.update(act_bits=ctx.act_bits, acc_bits=ctx.acc_bits)
