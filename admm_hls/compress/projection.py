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


def balanced_slot_sizes(rows: int, groups: int) -> list[int]:
    """Rows per lockstep slot when ``rows`` are dealt to ``groups`` lanes: full slots of
    ``groups`` rows, then one short slot for the remainder."""
    g = max(1, min(int(groups), int(rows)))
    return [g] * (rows // g) + ([rows % g] if rows % g else [])


def _slot_shape(rows: int, groups: int) -> tuple[int, int, int]:
    """(G, full slots, rows of the short last slot or 0) of :func:`balanced_slot_sizes`."""
    sizes = balanced_slot_sizes(rows, groups)
    short = sizes[-1] if sizes[-1] != sizes[0] else 0
    return sizes[0], len(sizes) - (1 if short else 0), short


def _full_steps(k: int, c: int, rows: int, cols: int, groups: int) -> int | None:
    """Per-row steps the full slots share beyond a floor of ``c`` per row when the short slot
    holds ``c`` per row, or None when ``k`` cannot be split that way."""
    g, full, short = _slot_shape(rows, groups)
    left = k - short * c - full * g * c
    if c > cols or left < 0 or left % g or left // g > full * (cols - c):
        return None
    return left // g


def balanced_counts(w: torch.Tensor, k: int, groups: int) -> list[int]:
    """Nonzeros per row of each slot, the slots being rows ``s*G .. s*G+G-1`` of ``w``, that keep
    the most energy sum(w^2) with exactly ``k`` nonzeros, every row of a slot holding the same
    count, and a short last slot (rows % G) holding no more than any full one (so that the
    hardware, dealing rows longest first, finds the same slots).

    A slot's energy as a function of its per-row count c is the sum over its rows of their c
    largest squares: concave in c. So for a given short-slot count c_s the full slots take c_s
    each and then the top remaining steps of all their marginal gains together (equal cost G per
    step); c_s itself is enumerated. Exact; raises ValueError when no split gives k.
    """
    rows, cols = w.shape[0], w[0].numel()
    g, full, short = _slot_shape(rows, groups)
    sq = torch.sort(w.detach().reshape(rows, cols).double().pow(2), dim=1, descending=True, stable=True).values
    # gains[s, j]: energy added by raising full slot s from j to j+1 nonzeros per row.
    gains = sq[: full * g].reshape(full, g, cols).sum(dim=1)
    short_energy = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(sq[full * g:].sum(dim=0), 0)])
    best = None
    for c in range(min(cols, k // rows) + 1 if short else 1):
        steps = _full_steps(k, c, rows, cols, groups)
        if steps is None:
            continue
        rest = gains[:, c:].reshape(-1)
        # Descending with ties in (slot, step) order: equal gains are taken in row-prefix order.
        order = torch.sort(rest, descending=True, stable=True).indices[:steps]
        energy = float(short_energy[c] + gains[:, :c].sum() + rest[order].sum())
        if best is None or energy > best[0]:
            per_slot = (c + torch.bincount(torch.div(order, cols - c, rounding_mode="floor"), minlength=full)).tolist()
            best = (energy, per_slot + ([c] if short else []))
    if best is None:
        raise ValueError(f"{k} nonzeros cannot be split evenly over slots of "
                         f"{balanced_slot_sizes(rows, groups)} rows")
    return best[1]


def feasible_balanced_k(rows: int, cols: int, k: int, groups: int) -> int:
    """The nonzero count nearest ``k`` (ties: fewer) that slots of :func:`balanced_slot_sizes`
    can hold (see :func:`balanced_counts`)."""
    short = _slot_shape(rows, groups)[2]

    def feasible(n: int) -> bool:
        # c per row in the short slot needs at least c per row everywhere (none without one).
        return any(_full_steps(n, c, rows, cols, groups) is not None
                   for c in range(min(cols, n // rows) + 1 if short else 1))

    for delta in range(rows * cols + 1):
        for cand in (k - delta, k + delta):
            if 1 <= cand <= rows * cols and feasible(cand):
                return cand
    raise ValueError(f"no balanced count for {rows}x{cols}")


def balanced_slots(w: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """The order in which rows fill the lockstep slots: by their nonzero count under the plain
    top-k projection, largest first, ties by row index. That is how the hardware deals rows
    (``hw.schedule.deal_rows``), and it puts rows that want similar counts in one slot, so the
    balance constraint costs little. A balanced W keeps its own order, so the projection
    is idempotent."""
    counts = topk_mask(w, k).reshape(w.shape[0], -1).sum(dim=1)
    return torch.sort(-counts, stable=True).indices


def balanced_topk_mask(w: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """Mask of the projection onto {W : exactly k nonzeros, every row of a lockstep slot of
    ``groups`` rows holding the same count}, the slots filled in :func:`balanced_slots` order.
    For that assignment it is exact (:func:`balanced_counts`), and each row keeps its largest."""
    rows = w.shape[0]
    flat = w.detach().reshape(rows, -1).abs()
    order = balanced_slots(w, k, groups)
    counts = balanced_counts(flat[order], k, groups)
    per_row = torch.empty(rows, dtype=torch.int64)
    per_row[order] = torch.repeat_interleave(torch.tensor(counts), torch.tensor(balanced_slot_sizes(rows, groups)))
    ranks = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(ranks)
    rank.scatter_(1, ranks, torch.arange(flat.shape[1]).expand_as(ranks).contiguous())
    return (rank < per_row[:, None]).reshape(w.shape)


def project_balanced(w: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """Euclidean projection onto the balanced set of :func:`balanced_topk_mask`."""
    return torch.where(balanced_topk_mask(w, k, groups), w.detach(), torch.zeros((), dtype=w.dtype))
