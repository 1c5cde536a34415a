"""BuildPlan: every decision the HLS backend takes before it renders a file.

The project builder (project.py) makes the plan: processing elements per layer, which output
rows (filters of a conv, neurons of an fc layer) each PE computes, and where each layer's packed
weights live (on-chip ROM or the off-chip weight blob read over m_axi). The renderer (render.py)
turns graph + plan into files and decides nothing of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LayerPlan:
    node: str  # LayerGraph node name
    pe: int  # processing elements
    rows: tuple[np.ndarray, ...]  # per PE: the output rows it computes, ascending
    placement: str  # "rom" (header arrays) or "blob" (m_axi weight blob)
    blob_offset: int = 0  # byte offset of this layer's words in the blob (placement "blob")
    blob_bytes: int = 0


@dataclass(frozen=True)
class BuildPlan:
    top: str = "admm_top"
    part: str = "xczu9eg-ffvb1156-2-e"
    clock_ns: float = 5.0
    onchip_kb: float = 512.0  # layers whose packed weights exceed this go to the blob
    layers: dict[str, LayerPlan] = field(default_factory=dict)
