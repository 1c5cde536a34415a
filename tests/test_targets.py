import math

import pytest

from admm_hls.compress.targets import allocate_keep, break_even, layer_geometry, sparse_bits_per_weight
from admm_hls.zoo import build_model, input_shape


def test_break_even_is_where_sparse_and_dense_cost_the_same():
    for bits in (2, 3, 5, 8):
        ratio = break_even(bits, rows=500, numel=400_000)
        assert 1 < ratio < 20
        assert sparse_bits_per_weight(1 / (ratio * 1.01), bits, 500, 400_000)[0] < bits
        assert sparse_bits_per_weight(1 / (ratio * 0.99), bits, 500, 400_000)[0] >= bits
    # Fewer value bits make the index relatively dearer: a higher break-even.
    assert break_even(2, 500, 400_000) > break_even(8, 500, 400_000)


def test_allocation_meets_budget_and_computation_mode_prunes_conv_harder():
    model = build_model("lenet5")
    geo = layer_geometry(model, input_shape("lenet5"))
    assert geo["conv1"].out_positions == 24 * 24 and geo["fc1"].out_positions == 1
    bits = {n: 3 for n in geo}
    total = sum(g.numel for g in geo.values())
    storage = allocate_keep(geo, 50, "storage", bits)
    compute = allocate_keep(geo, 50, "computation", bits)
    for keep in (storage, compute):
        kept = sum(keep[n] * geo[n].numel for n in geo)
        assert math.isclose(kept, total / 50, rel_tol=1e-3)
        # Every pruned layer is pruned beyond its break-even (else it is kept dense).
        for n, k in keep.items():
            assert k == 1.0 or 1 / k >= break_even(3, geo[n].rows, geo[n].numel)
    macs = lambda keep: sum(keep[n] * geo[n].macs for n in geo)  # noqa: E731
    assert macs(compute) < macs(storage)
    with pytest.raises(ValueError, match="unknown target mode"):
        allocate_keep(geo, 50, "speed", bits)
