import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import itertools

import pytest

from admm_hls.compress.projection import (
    balanced_counts,
    balanced_slot_sizes,
    balanced_slots,
    balanced_topk_mask,
    feasible_balanced_k,
    max_level,
    nearest_levels,
    optimal_scale,
    project_balanced,
    project_levels,
    project_topk,
    topk_mask,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), frac=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_topk_keeps_exactly_k_largest(n, frac, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g)
    k = int(frac * n)
    z = project_topk(w, k)
    assert int((z != 0).sum()) == k
    kept = w[z != 0].abs()
    dropped = w[z == 0].abs()
    if k and k < n:
        assert kept.min() >= dropped.max()
    # Kept entries are unchanged: it is a projection, not a shrinkage.
    assert torch.equal(z[z != 0], w[z != 0])


def test_topk_ties_are_broken_by_lower_index_and_exact_count():
    w = torch.tensor([0.5, -1.0, 1.0, 1.0, 0.2, -1.0])
    m = topk_mask(w, 2)
    assert m.tolist() == [False, True, True, False, False, False]
    assert int(topk_mask(w, 4).sum()) == 4
    assert topk_mask(w, 4).tolist() == [False, True, True, True, False, True]


def test_topk_is_idempotent_and_euclidean():
    torch.manual_seed(0)
    w = torch.randn(8, 9)
    z = project_topk(w, 17)
    assert torch.equal(project_topk(z, 17), z)
    # No other 17-sparse tensor is closer: compare with random supports.
    best = float((w - z).norm())
    for _ in range(200):
        support = torch.randperm(w.numel())[:17]
        other = torch.zeros(w.numel())
        other[support] = w.reshape(-1)[support]
        assert float((w.reshape(-1) - other).norm()) >= best - 1e-6


def test_nearest_level_projection():
    scale, top = 0.5, max_level(3)
    w = torch.tensor([0.1, -0.1, 0.74, 0.76, -5.0, 1.2, 0.0])
    assert nearest_levels(w, scale, top).tolist() == [1, -1, 1, 2, -3, 2, 1]
    # Idempotent on the level set.
    levels = torch.tensor([-3, -2, -1, 1, 2, 3])
    assert torch.equal(nearest_levels(levels * scale, scale, top), levels)


def test_optimal_scale_beats_every_grid_point():
    torch.manual_seed(1)
    v = torch.randn(5000) * 0.1
    for bits in (2, 3, 4, 5):
        top = max_level(bits)
        q = optimal_scale(v, top)
        err = lambda s: float(((v.double() - s * nearest_levels(v, s, top)) ** 2).sum())  # noqa: E731
        grid = torch.linspace(0.2 * q, 2 * q, 400)
        assert err(q) <= min(err(float(s)) for s in grid) * (1 + 1e-3)


def test_project_levels_ignores_pruned_zeros_and_keeps_them_zero():
    torch.manual_seed(2)
    w = torch.randn(50, 40)
    mask = topk_mask(w, 300)
    w = w * mask
    z, levels, scale = project_levels(w, mask, bits=3)
    assert torch.equal(z == 0, ~mask)
    assert set(levels[mask].tolist()) <= {-3, -2, -1, 1, 2, 3}
    assert torch.equal(z, (levels.double() * scale).float())
    # The scale is fit on the nonzeros only: the same as fitting the kept values alone.
    assert scale == optimal_scale(w[mask], 3)


def _best_balanced_energy(w: torch.Tensor, k: int, groups: int) -> float:
    """Brute force over every per-slot count: the most energy a balanced k-sparse W keeps."""
    sizes = balanced_slot_sizes(w.shape[0], groups)
    sq = torch.sort(w.reshape(w.shape[0], -1).pow(2), dim=1, descending=True).values
    best = -1.0
    for counts in itertools.product(range(sq.shape[1] + 1), repeat=len(sizes)):
        short_ok = sizes[-1] == sizes[0] or counts[-1] <= min(counts[:-1], default=counts[-1])
        if short_ok and sum(c * s for c, s in zip(counts, sizes)) == k:
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            best = max(best, sum(float(sq[r:r + s, :c].sum()) for r, s, c in zip(starts, sizes, counts)))
    return best


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 5), groups=st.integers(1, 9), frac=st.floats(0, 1),
       seed=st.integers(0, 10_000))
def test_balanced_projection_is_exact_equal_per_slot_and_idempotent(rows, cols, groups, frac, seed):
    if len(balanced_slot_sizes(rows, groups)) > 4:
        groups = -(-rows // 3)  # keep the brute force small: at most 4 slots
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    k = feasible_balanced_k(rows, cols, max(1, round(frac * rows * cols)), groups)
    mask = balanced_topk_mask(w, k, groups)
    assert int(mask.sum()) == k
    # Every row of a slot (slots filled in the dealing order) holds its slot's count...
    order = balanced_slots(w, k, groups)
    per_row = mask.sum(dim=1)[order]
    start = 0
    for size, count in zip(balanced_slot_sizes(rows, groups), balanced_counts(w[order], k, groups)):
        assert per_row[start:start + size].tolist() == [count] * size
        start += size
    # ...each row keeps its largest magnitudes, and no balanced split keeps more energy.
    for r in range(rows):
        kept, dropped = w[r][mask[r]].abs(), w[r][~mask[r]].abs()
        assert kept.numel() == 0 or dropped.numel() == 0 or kept.min() >= dropped.max()
    assert float((w.pow(2) * mask).sum()) == pytest.approx(_best_balanced_energy(w[order], k, groups), rel=1e-12)
    projected = project_balanced(w, k, groups)
    assert torch.equal(project_balanced(projected, k, groups), projected)
    # The hardware deals rows longest first in slots of `groups`: no lane is padded.
    from admm_hls.hw.schedule import deal_rows

    slot_rows, _ = deal_rows(mask.sum(dim=1).numpy(), min(groups, rows))
    lens = [[int(mask[r].sum()) for r in slot if r >= 0] for slot in slot_rows]
    assert all(len(set(slot)) == 1 for slot in lens)


def test_balanced_counts_follow_the_energy_and_refuse_impossible_counts():
    w = torch.zeros(4, 6)
    w[:2] = 10.0  # slot 0 (rows 0-1) carries the energy
    w[2:] = torch.arange(1, 7, dtype=torch.float32)
    assert balanced_counts(w, 14, 2) == [6, 1]
    assert balanced_slot_sizes(10, 4) == [4, 4, 2] and balanced_slot_sizes(3, 8) == [3]
    assert feasible_balanced_k(20, 25, 300, 5) == 300
    # 10 rows in slots of 4, 4, 2: 23 is odd, and 22 = 4a + 2c needs c <= every full count.
    assert feasible_balanced_k(10, 7, 23, 4) == 22
    assert balanced_counts(torch.ones(10, 7), 22, 4) == [4, 1, 1]  # ties: earlier slot first
    with pytest.raises(ValueError, match="cannot be split evenly"):
        balanced_counts(w, 3, 2)
