"""RTL processing-element plan: row groups x position bands.

A conv/linear PE of the RTL issues each of its rows' entries once per output position, so a
layer takes as long as its slowest PE. Splitting only rows (the HLS plan) cannot balance a layer
with few rows over many PEs (LeNet-5's conv1 has 20 filters: at 16 PEs, four PEs get two). The
RTL therefore spends a layer's PE budget P as G row groups x B position bands (G * B <= P): the
rows go to G groups by the packer's balanced assignment (``hls.pe.assign_rows``, exactly the HLS
plan with G PEs: same per-group streams, word for word), and each group's output rows (oy) are
split into B contiguous bands, one PE per (group, band). B = 1 is the plain row plan; linear
layers (one output position) always have B = 1. For each layer the (G, B) with the fewest cycles
is kept (ties: fewer bands, i.e. fewer ROM copies).

    plan, bands = rtl_plan(graph, pe=16)   # BuildPlan (G per layer), {layer: [(lo, hi), ...]}

Pools, residual adds and standalone ReLUs have no rows: the same budget (``pe``) splits a pool's
channels, or an add's / ReLU's elements, into contiguous ranges, one engine instance each.
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import LayerGraph
from ..hls.pe import ROW_OVERHEAD, assign_rows, row_entries
from ..hls.plan import BuildPlan

__all__ = ["rtl_plan", "band_ranges", "row_cycles"]


def band_ranges(ho: int, bands: int) -> list[tuple[int, int]]:
    """``bands`` contiguous output-row ranges covering 0..ho, sizes differing by at most one."""
    edges = [b * ho // bands for b in range(bands + 1)]
    return [(edges[b], edges[b + 1]) for b in range(bands)]


def row_cycles(packed) -> np.ndarray:
    """Issue slots of each row at one output position: its entries, fillers included (an empty
    row still issues one bubble)."""
    return np.maximum(row_entries(packed), 1)


def _best_split(node, budget: int) -> tuple[int, int]:
    rows = node.packed.layer.rows
    ho, wo = (node.shape[1], node.shape[2]) if node.op == "conv" else (1, 1)
    cost = row_cycles(node.packed)
    planned = row_entries(node.packed) + ROW_OVERHEAD  # what make_plan balances: same groups
    best = None
    for b in range(1, min(budget, ho) + 1):
        g = max(1, min(budget // b, rows))
        groups = assign_rows(planned, g, "balanced")
        slowest = max(int(cost[np.asarray(r, dtype=np.int64)].sum()) for r in groups)
        cycles = slowest * -(-ho // b) * wo
        if best is None or cycles < best[0]:
            best = (cycles, g, b)
    return best[1], best[2]


def rtl_plan(graph: LayerGraph, *, pe: int = 1, pe_layers: dict[str, int] | None = None,
             **options) -> tuple[BuildPlan, dict[str, list[tuple[int, int]]]]:
    """The RTL's plan for a PE budget (``pe`` per layer, ``pe_layers`` overrides by node name or
    module path, as ``hls.project.make_plan``): a BuildPlan whose per-layer PE count is the row
    group count G, and the position bands of each weighted layer. ``options``: the other
    ``make_plan`` options (top, part, clock_ns, onchip_kb)."""
    from ..hls.project import _check_pe, _resolve_pe_layers, make_plan

    budget = _check_pe(pe, "--pe")
    per_layer = _resolve_pe_layers(graph, pe_layers)
    groups, bands = {}, {}
    for node in graph.nodes_of("conv", "linear"):
        g, b = _best_split(node, int(per_layer.get(node.name, budget)))
        groups[node.name] = g
        bands[node.name] = band_ranges(node.shape[1] if node.op == "conv" else 1, b)
    # Pools, adds and ReLUs have no rows: the budget splits their channels / elements evenly.
    for node in graph.nodes_of("maxpool", "avgpool", "add", "relu"):
        extent = node.shape[0] if node.op.endswith("pool") else int(np.prod(node.shape))
        bands[node.name] = band_ranges(extent, max(1, min(budget, extent)))
    plan = make_plan(graph, pe=1, pe_layers=groups, progress=False, **options)
    return plan, bands
