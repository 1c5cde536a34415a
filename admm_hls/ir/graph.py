"""LayerGraph: the model as a DAG of layers (networkx), the single IR every stage reads.

Nodes are layers (``Node``), edges are tensors from producer to consumer; an edge's ``index``
is the argument position at the consumer (residual add and concat care about order). Node
names are the torch.fx node names, so calibration ranges recorded by fx tracing line up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import networkx as nx


@dataclass
class Node:
    name: str  # fx node name (unique)
    op: str  # layer kind: input, conv, linear, relu, maxpool, avgpool, add, concat, flatten, output, ...
    module: str = ""  # dotted module path in the torch model ("" for functional ops)
    target: str = ""  # what fx called (module class or function name), for messages
    params: dict[str, Any] = field(default_factory=dict)  # op parameters; weights as numpy float32
    shape: tuple[int, ...] | None = None  # output shape without the batch dimension
    relu: bool = False  # a ReLU fused into this layer's output
    calib: str = ""  # fx node whose calibration range describes this node's output
    order: int = 0  # position in the traced program: deterministic tie-break for topo order
    quant: dict[str, Any] = field(default_factory=dict)  # integer parameters (quantize pass)
    packed: Any = None  # packed weights (pack pass)

    def where(self) -> str:
        """'node conv1 (module features.0, Conv2d)' for error messages."""
        parts = [f"module {self.module}" if self.module else "", self.target]
        return f"node {self.name} ({', '.join(p for p in parts if p)})"


class LayerGraph:
    def __init__(self, name: str = "model"):
        self.name = name
        self.g = nx.DiGraph()
        self.meta: dict[str, Any] = {}  # model-level facts: arch, activation bits, calibration, ...

    # -- building -------------------------------------------------------------------------------
    def add(self, node: Node, inputs: list[str] = ()) -> Node:
        if node.name in self.g:
            raise ValueError(f"duplicate node {node.name}")
        self.g.add_node(node.name, node=node)
        for i, src in enumerate(inputs):
            self.g.add_edge(src, node.name, index=i)
        return node

    def bypass(self, name: str) -> None:
        """Remove a single-input node, wiring its consumers to its input."""
        (src,) = self.inputs(name)
        for dst in list(self.g.successors(name)):
            if self.g.has_edge(src, dst):
                # One edge per node pair: add(x, dropout(x)) would silently lose an input.
                raise ValueError(f"cannot bypass {name}: {src} already feeds {dst}")
            index = self.g.edges[name, dst]["index"]
            self.g.add_edge(src, dst, index=index)
        self.g.remove_node(name)

    # -- queries --------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        return self.g.nodes[name]["node"]

    def __contains__(self, name: str) -> bool:
        return name in self.g

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def inputs(self, name: str) -> list[str]:
        """Producers of ``name`` in argument order."""
        preds = [(self.g.edges[p, name]["index"], p) for p in self.g.predecessors(name)]
        return [p for _, p in sorted(preds)]

    def consumers(self, name: str) -> list[str]:
        return sorted(self.g.successors(name), key=lambda n: self[n].order)

    def topo(self) -> Iterator[Node]:
        """Nodes in a deterministic topological order (traced program order breaks ties)."""
        for name in nx.lexicographical_topological_sort(self.g, key=lambda n: (self[n].order, n)):
            yield self[name]

    def nodes_of(self, *ops: str) -> list[Node]:
        return [n for n in self.topo() if n.op in ops]

    def input_node(self) -> Node:
        (node,) = self.nodes_of("input")
        return node

    def act_bits(self) -> int:
        """Activation width of the quantized graph (the quantize pass records it)."""
        return int(self.meta.get("act_bits", self.input_node().quant.get("bits", 8)))

    def output_node(self) -> Node:
        (node,) = self.nodes_of("output")
        return node

    def edges(self) -> list[tuple[str, str, int]]:
        return sorted((u, v, d["index"]) for u, v, d in self.g.edges(data=True))
