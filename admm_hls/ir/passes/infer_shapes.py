"""Recompute every node's shape from its layer kind's shape rule and check it against the
shape torch traced: a disagreement means a layer kind and torch differ in semantics."""

from __future__ import annotations

from ..graph import LayerGraph


def run(graph: LayerGraph) -> None:
    from ...layers import kind  # imported here: the layer kinds import the IR

    for node in graph.topo():
        if node.op == "input":
            continue  # the given input shape is the ground truth
        in_shapes = [graph[src].shape for src in graph.inputs(node.name)]
        shape = tuple(int(s) for s in kind(node.op).infer_shape(node, in_shapes))
        if node.shape is not None and shape != tuple(node.shape):
            raise ValueError(f"{node.where()}: layer kind '{node.op}' infers shape {shape} "
                             f"from inputs {in_shapes}, torch traced {node.shape}")
        node.shape = shape
