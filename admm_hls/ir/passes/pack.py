"""Pack pass: the chosen encoding becomes the layer's stored weights (``node.packed``).
From here on every consumer (reference, backends) reads weights only from these bits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...sparse import Codebook
from ..graph import LayerGraph


@dataclass(frozen=True)
class PackedWeights:
    format: str  # "dense" or "relative"
    layer: Any  # DenseLayer or RelativeIndexLayer: packed words + row pointers
    codebook: Codebook
    report: dict[str, int]  # stored bits by part (entries, fillers, row_ptr, codebook, bias, ...)
    reason: str
    break_even: float  # pruning ratio above which relative index stores fewer bits than dense


def run(graph: LayerGraph) -> None:
    for node in graph.nodes_of("conv", "linear"):
        choice = node.quant.pop("choice")
        node.packed = PackedWeights(choice.format, choice.layer, node.quant["codebook"], choice.report,
                                   choice.reason, choice.break_even)
        # The float-derived level matrix is no longer needed: the packed bits are the weights.
        node.quant.pop("levels")
