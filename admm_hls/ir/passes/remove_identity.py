"""Remove layers that compute the identity at inference: dropout (eval), nn.Identity, and
average pools with a 1x1 window and stride (e.g. AlexNet/VGG's adaptive pool when the features
are already 6x6/7x7)."""

from __future__ import annotations

from ..graph import LayerGraph, Node

_ONE = (1, 1)


def _is_identity(node: Node) -> bool:
    if node.op in ("dropout", "identity"):
        return True
    p = node.params
    return node.op == "avgpool" and (p["kernel"], p["stride"], p["padding"]) == (_ONE, _ONE, (0, 0))


def run(graph: LayerGraph) -> None:
    for node in list(graph.topo()):
        if _is_identity(node):
            graph.bypass(node.name)
