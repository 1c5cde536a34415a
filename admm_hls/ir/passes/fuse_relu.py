"""Fuse a ReLU into the layer that produces its input (conv, linear, add, avgpool), when that
layer has no other reader: the kernel clamps at its output instead of a separate pass. The
fused layer's output is the ReLU's, so its calibration range is the ReLU's."""

from __future__ import annotations

from ..graph import LayerGraph

FUSIBLE = ("conv", "linear", "add", "avgpool")


def run(graph: LayerGraph) -> None:
    for relu in graph.nodes_of("relu"):
        (src,) = graph.inputs(relu.name)
        producer = graph[src]
        # Another consumer would need the pre-ReLU value: keep the ReLU standalone then. A
        # producer that already has a ReLU absorbs another one too (relu is idempotent).
        if producer.op in FUSIBLE and graph.consumers(src) == [relu.name]:
            producer.relu = True
            producer.calib = relu.name
            graph.bypass(relu.name)
