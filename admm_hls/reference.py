"""The exact integer reference: the definition every backend must match bit for bit.

It reads each layer's weights from the PACKED representation (so the formats are exercised)
and computes with numpy integers under the contract of ``admm_hls.arith``.
"""

from __future__ import annotations

import numpy as np

from .arith import quantize_input
from .ir.graph import LayerGraph
from .layers import kind


def quantize_images(graph: LayerGraph, x: np.ndarray) -> np.ndarray:
    """Float model inputs (as the torch model takes them) to the graph's input integers."""
    q = graph.input_node().quant
    return quantize_input(np.asarray(x), q["scale"], q["bits"])


def evaluate(node, inputs: list[np.ndarray]) -> np.ndarray:
    """One node's integers from its inputs' (the layer kind's exact semantics)."""
    return kind(node.op).reference(node, inputs)


def run(graph: LayerGraph, x, *, all_outputs: bool = False, batch: int = 500, evaluate=evaluate):
    """Integer outputs of the graph for input ``x`` (N, *input_shape).

    A float array is quantized with the input scale first; an integer array is taken as is.
    Returns the output node's integers, or {node name: integers} for every node. ``evaluate``
    (node, inputs) -> integers computes each node (the fault model swaps in the hardware's
    faulted memories there).
    """
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = quantize_images(graph, x)
    x = x.astype(np.int64)
    chunks = [_run_batch(graph, x[i:i + batch], all_outputs, evaluate) for i in range(0, len(x), batch)]
    if not all_outputs:
        return np.concatenate(chunks) if chunks else np.zeros((0,), np.int64)
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _run_batch(graph: LayerGraph, x: np.ndarray, keep_all: bool, evaluate):
    values: dict[str, np.ndarray] = {}
    remaining = {n.name: len(graph.consumers(n.name)) for n in graph.topo()}
    for node in graph.topo():
        inputs = [values[s] for s in graph.inputs(node.name)] if node.op != "input" else [x]
        values[node.name] = evaluate(node, inputs)
        if not keep_all:  # free tensors nobody needs any more
            for s in graph.inputs(node.name):
                remaining[s] -= 1
                if remaining[s] == 0:
                    del values[s]
    return values if keep_all else values[graph.output_node().name]
