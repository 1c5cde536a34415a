"""Fold each eval-mode BatchNorm2d into the convolution that feeds it.

y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta is again a convolution with every
output channel's filter and bias scaled, so the BN disappears exactly (computed in float64).
The conv's output now is the BN's output, so its calibration range is the BN's.
"""

from __future__ import annotations

import numpy as np

from ...errors import UserError
from ..graph import LayerGraph


def run(graph: LayerGraph) -> None:
    for bn in graph.nodes_of("batchnorm"):
        (src,) = graph.inputs(bn.name)
        conv = graph[src]
        # Folding changes the conv's output, so nothing else may read the un-normalized value.
        if conv.op != "conv" or graph.consumers(src) != [bn.name]:
            raise UserError(
                f"{bn.target} at module {bn.module} (node {bn.name}) does not "
                "directly follow a Conv2d with no other consumer: cannot fold")
        p = {k: np.asarray(v, dtype=np.float64) for k, v in bn.params.items()}
        scale = p["gamma"] / np.sqrt(p["var"] + p["eps"])  # per output channel
        weight = np.asarray(conv.params["weight"], dtype=np.float64) * scale[:, None, None, None]
        bias = (np.asarray(conv.params["bias"], dtype=np.float64) - p["mean"]) * scale + p["beta"]
        conv.params["weight"] = weight.astype(np.float32)
        conv.params["bias"] = bias.astype(np.float32)
        conv.calib = bn.name
        graph.bypass(bn.name)
