"""Activation ranges measured on training batches, per torch.fx node.

Lowering re-traces the same architecture with torch.fx, so node names match and each tensor of
the layer graph finds its range here (the input placeholder included).
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn


class _RangeRecorder(torch.fx.Interpreter):
    def __init__(self, module: torch.fx.GraphModule, ranges: dict[str, list[float]]):
        super().__init__(module)
        self.ranges = ranges

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
            lo, hi = float(out.min()), float(out.max())
            if n.name in self.ranges:
                old = self.ranges[n.name]
                lo, hi = min(lo, old[0]), max(hi, old[1])
            self.ranges[n.name] = [lo, hi]
        return out


@torch.no_grad()
def measure_ranges(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, list[float]]:
    """{fx node name: [min, max]} over the given input batches (model in eval mode)."""
    was_training = model.training
    model.eval()
    traced = torch.fx.symbolic_trace(model)
    ranges: dict[str, list[float]] = {}
    recorder = _RangeRecorder(traced, ranges)
    for x in batches:
        recorder.run(x)
    model.train(was_training)
    return ranges
