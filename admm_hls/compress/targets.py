"""Hardware-aware per-layer pruning targets (ADMM-NN, section on hardware-aware optimization).

A kept weight stored in the relative-index format costs (value bits + index bits) plus its share
of filler entries and row pointers; a dense weight costs value bits. Below a break-even pruning
ratio the sparse layer is larger than the dense one, so pruning it buys no storage (and, on the
sparse engine, no speed). ``break_even`` computes that ratio from these real bit costs, and
``allocate_keep`` spreads a global pruning ratio over layers, favouring either storage (prune the
big FC layers) or computation (prune the conv layers, where each weight costs many MACs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..sparse.choose import expected_filler_rate

MAX_INDEX_BITS = 16


@dataclass(frozen=True)
class LayerGeometry:
    name: str
    kind: str  # "conv" or "fc"
    shape: tuple[int, ...]
    out_positions: int  # output pixels per filter (1 for fc): MACs per weight

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def macs(self) -> int:
        return self.numel * self.out_positions


@torch.no_grad()
def layer_geometry(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, LayerGeometry]:
    """Shape and MACs-per-weight of every Conv2d/Linear, from one forward pass on zeros."""
    found: dict[str, LayerGeometry] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            def hook(mod, inputs, output, name=name):
                positions = output.shape[2] * output.shape[3] if isinstance(mod, nn.Conv2d) else 1
                kind = "conv" if isinstance(mod, nn.Conv2d) else "fc"
                found[name] = LayerGeometry(name, kind, tuple(mod.weight.shape), int(positions))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return found


def sparse_bits_per_weight(density: float, value_bits: int, rows: int, numel: int) -> tuple[float, int]:
    """Expected stored bits per dense position in relative-index form, and the index width used.

    Entries and fillers at (value_bits + r) each, for the best r, plus the row pointers. Nonzero
    positions are modelled as independent (the filler rate of ``expected_filler_rate``).
    """
    if density <= 0:
        return 0.0, 1
    best = None
    for r in range(1, MAX_INDEX_BITS + 1):
        entries = density * (1 + expected_filler_rate(density, r))
        ptr_bits = max(1, math.ceil(math.log2(entries * numel + 1)))
        bits = entries * (value_bits + r) + (rows + 1) * ptr_bits / numel
        if best is None or bits < best[0]:
            best = (bits, r)
    return best


def break_even(value_bits: int, rows: int, numel: int) -> float:
    """Smallest pruning ratio (dense weights / kept weights) at which relative index beats dense."""
    lo, hi = 1.0, 1e6
    if sparse_bits_per_weight(1 / hi, value_bits, rows, numel)[0] >= value_bits:
        return math.inf
    for _ in range(60):  # bisection on log scale; sparse cost falls monotonically with ratio
        mid = math.sqrt(lo * hi)
        if sparse_bits_per_weight(1 / mid, value_bits, rows, numel)[0] < value_bits:
            hi = mid
        else:
            lo = mid
    return hi


def allocate_keep(
    layers: dict[str, LayerGeometry],
    prune_ratio: float,
    mode: str,
    value_bits: dict[str, int],
    min_keep: float = 0.002,
) -> dict[str, float]:
    """Per-layer keep ratios whose kept weights total numel/prune_ratio.

    keep_i = min(1, s * g_i) with s found by bisection. storage mode: g_i = numel_i^-1/2 (large
    layers are pruned harder); computation mode additionally divides by sqrt(MACs per weight), so
    conv layers, whose weights each cost many MACs, are pruned harder. A layer whose resulting
    ratio is below its break-even stays dense (keep 1): pruning it would cost bits, not save them.
    """
    if mode not in ("storage", "computation"):
        raise ValueError(f"unknown target mode '{mode}': use 'storage' or 'computation'")
    total = sum(g.numel for g in layers.values())
    budget = total / prune_ratio
    mean_mpw = sum(g.macs for g in layers.values()) / total
    weight = {}
    for n, g in layers.items():
        weight[n] = g.numel ** -0.5
        if mode == "computation":
            weight[n] /= math.sqrt(g.out_positions / mean_mpw)
    dense: set[str] = set()
    while True:
        free = [n for n in layers if n not in dense]
        left = budget - sum(layers[n].numel for n in dense)
        if not free or left <= 0:
            raise ValueError(f"pruning ratio {prune_ratio} cannot be met with layers kept dense: {sorted(dense)}")

        def kept(s: float) -> float:
            return sum(layers[n].numel * min(1.0, max(min_keep, s * weight[n])) for n in free)

        lo, hi = 0.0, 1e9
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if kept(mid) < left else (lo, mid)
        keep = {n: min(1.0, max(min_keep, hi * weight[n])) for n in free}
        newly_dense = {
            n for n, k in keep.items()
            if k < 1.0 and 1 / k < break_even(value_bits[n], layers[n].rows, layers[n].numel)
        }
        if not newly_dense:
            return {**{n: 1.0 for n in dense}, **keep}
        dense |= newly_dense
