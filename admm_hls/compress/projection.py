"""Exact Euclidean projections used by the ADMM Z-steps.

* ``project_topk``: onto {W : at most k nonzeros}. Keeping the k largest |W| is the exact
  projection; we keep exactly k, ties broken by the lower flat index so results are reproducible.
* ``project_levels``: onto the quantized set {q * l : l in +-1..+-L} for the kept weights, zero
  for the pruned ones (pruned weights stay pruned, kept weights never collapse to zero).
"""

from __future__ import annotations

import torch


def topk_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` entries with the largest magnitude (ties: lower index)."""
    flat = w.detach().reshape(-1).abs()
    k = max(0, min(int(k), flat.numel()))
    # A stable descending sort keeps equal magnitudes in index order: deterministic ties.
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=w.device)
    mask[order] = True
    return mask.reshape(w.shape)


def project_topk(w: torch.Tensor, k: int) -> torch.Tensor:
    """Euclidean projection of ``w`` onto tensors with at most ``k`` nonzeros."""
    return torch.where(topk_mask(w, k), w.detach(), torch.zeros((), dtype=w.dtype, device=w.device))


def max_level(bits: int) -> int:
    """Largest level magnitude for ``bits``-bit weights: levels are +-1 .. +-(2^(bits-1)-1)."""
    if bits < 2:
        raise ValueError(f"quantization needs at least 2 bits (got {bits}): 2 bits gives levels +-1")
    return 2 ** (bits - 1) - 1


def nearest_levels(w: torch.Tensor, scale: float, top: int) -> torch.Tensor:
    """Integer level in +-1..+-top nearest to ``w / scale`` (zero maps to +1, deterministically)."""
    magnitude = torch.clamp(torch.round(w.detach().abs().double() / scale), 1, top)
    sign = torch.where(w.detach() < 0, -1.0, 1.0).double()
    return (sign * magnitude).to(torch.int64)


def _squared_error(mags: torch.Tensor, scales: torch.Tensor, top: int) -> torch.Tensor:
    levels = torch.clamp(torch.round(mags[None, :] / scales[:, None]), 1, top)
    return ((mags[None, :] - scales[:, None] * levels) ** 2).sum(dim=1)


def optimal_scale(values: torch.Tensor, top: int, grid: int = 96, max_iter: int = 100) -> float:
    """Scale q minimizing sum (v - q * nearest_level(v))^2 over the given (nonzero) values.

    The objective is piecewise quadratic in q, so a coarse grid search finds the right basin and
    Lloyd iterations (assign levels, then solve q in closed form) settle it exactly; each Lloyd
    step never increases the error.
    """
    mags = values.detach().reshape(-1).abs().double()
    if mags.numel() == 0 or float(mags.max()) == 0.0:
        return 1.0
    if top == 1:
        return float(mags.mean())
    peak = float(mags.max())
    # A sample keeps the grid search cheap on layers with millions of nonzeros.
    sample = mags[:: max(1, mags.numel() // 200_000)]
    candidates = peak / top * torch.linspace(0.05, 1.25, grid, dtype=torch.float64)
    errors = torch.cat([_squared_error(sample, chunk, top) for chunk in candidates.split(8)])
    scale = float(candidates[int(torch.argmin(errors))])
    previous = None
    for _ in range(max_iter):
        levels = torch.clamp(torch.round(mags / scale), 1, top)
        if previous is not None and torch.equal(levels, previous):
            break
        scale = float((mags * levels).sum() / (levels * levels).sum())
        previous = levels
    return scale


def project_levels(w: torch.Tensor, mask: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Project the kept weights of ``w`` onto their nearest scaled level; pruned stay zero.

    Returns (projected weights, integer levels with 0 where pruned, scale). The scale is the
    squared-error optimum over the kept weights only (pruned zeros do not pull it down).
    """
    top = max_level(bits)
    scale = optimal_scale(w.detach()[mask], top)
    levels = torch.where(mask, nearest_levels(w, scale, top), torch.zeros((), dtype=torch.int64))
    projected = (levels.double() * scale).to(w.dtype)
    return projected, levels, scale
