import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from admm_hls.compress.projection import (
    max_level,
    nearest_levels,
    optimal_scale,
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
