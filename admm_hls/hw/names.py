"""Names every backend gives a layer: one C / Verilog identifier per node, and which node's
buffer holds each node's output (alias ops such as flatten own no buffer)."""

from __future__ import annotations

import re

from ..ir.graph import LayerGraph

# Ops that own no buffer and no process: their tensor is their input's tensor.
ALIASES = ("flatten",)

__all__ = ["ALIASES", "identifier", "layer_names", "tensor_of", "file_stem"]


def identifier(name: str) -> str:
    """A readable C / Verilog identifier: no leading or double underscores (reserved in C++)."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    if not s or s[0].isdigit():
        s = "l" + s
    return s


def layer_names(graph: LayerGraph) -> dict[str, str]:
    """Node name -> unique identifier (case-insensitively unique: also a file stem)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for node in graph.topo():
        base = identifier(node.name)
        ident, k = base, 1
        while ident.lower() in taken:
            k += 1
            ident = f"{base}_{k}"
        taken.add(ident.lower())
        out[node.name] = ident
    return out


def tensor_of(graph: LayerGraph) -> dict[str, str]:
    """Node name -> the node whose buffer holds its output: alias ops and the output node share
    their input's buffer, every other node has its own."""
    tensor: dict[str, str] = {}
    for node in graph.topo():
        if node.op in ALIASES or node.op == "output":
            (src,) = graph.inputs(node.name)
            tensor[node.name] = tensor[src]
        else:
            tensor[node.name] = node.name
    return tensor


def file_stem(name: str) -> str:
    """A node name as a data file stem (fx names already are safe)."""
    return name if re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not name.startswith(".") else identifier(name)
