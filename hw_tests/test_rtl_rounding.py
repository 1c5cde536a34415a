"""cocotb tests of the requantization rule's edge cases in every RTL engine that applies it: the
weighted engine (conv), the average pool and the element-wise engine (residual add), each as one
instance that reaches exact rounding ties and saturates at both bounds, and one with a fused ReLU
that reaches a product one below a tie and clamps at zero. Random data almost never lands on a
tie (one chance in 2^SHIFT per product), so the multipliers are set by hand and the inputs chosen
so that it does; the fixture asserts that every case is reached, so the test cannot quietly stop
covering them. Changing any engine's rounding constant 2^(SHIFT-1) by one fails these tests: one
less rounds a tie down, one more rounds the product below a tie up.

Run: python -m pytest hw_tests/test_rtl_rounding.py   (needs what hw_tests/test_rtl.py needs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rtl_designs import check, reference, run_rtlsim, write_design

from admm_hls.arith import Multiplier, qrange
from admm_hls.calibration import measure_ranges
from admm_hls.ir.lower import lower_model

TIE = Multiplier(3 << 29, 30)  # 1.5 exactly: an odd accumulator lands on a tie
BELOW = Multiplier((3 << 29) - 1, 30)  # 1.5 - 2^-30: an accumulator of 1 lands one below a tie
HALF = Multiplier(1 << 30, 31)  # 0.5 exactly: an odd window sum lands on a tie
IDENTITY = Multiplier(1 << 30, 30)  # 1.0 exactly: the concat passes values through unchanged


class Rounding(nn.Module):
    """x (2x5x5) -> conv, conv+ReLU, add, add+ReLU, avgpool, avgpool+ReLU, all concatenated, so
    every engine instance's outputs reach the output stream. The convs copy their input channel
    (one weight of level 1 at tap (0, 0), 2-bit weights): their accumulator is x itself."""

    def __init__(self):
        super().__init__()
        self.conv_t = nn.Conv2d(2, 2, 2, bias=False)
        self.conv_b = nn.Conv2d(2, 2, 2, bias=False)
        self.pool_t = nn.AvgPool2d(2, stride=1)
        self.pool_b = nn.AvgPool2d(2, stride=1)
        with torch.no_grad():
            for conv in (self.conv_t, self.conv_b):
                conv.weight.zero_()
                conv.weight[[0, 1], [0, 1], 0, 0] = 1.0

    def forward(self, x):
        a = self.conv_t(x)
        b = torch.relu(self.conv_b(x))
        return torch.cat([a, b, a + b, torch.relu(a + b), self.pool_t(x), torch.relu(self.pool_b(x))], 1)


def edge_cases(prod: np.ndarray, shift: int, bits: int, relu: bool) -> tuple[np.ndarray, set[str]]:
    """The rule applied to products ``prod`` (acc * m0, summed over an add's inputs), and which
    edge cases they reach: a tie (product = k * 2^shift + 2^(shift-1)) with a positive or a
    negative result, one below a tie, and results beyond each bound. A tie counts only where
    rounding it down would change the saturated output, one below a tie only where rounding it up
    would: only those are visible at the output."""
    half = 1 << (shift - 1)
    frac = prod & ((1 << shift) - 1)  # prod mod 2^shift (int64 two's complement)
    out = (prod + half) >> shift
    lo, hi = qrange(bits)
    lo = 0 if relu else lo
    reached = set()
    tie = (frac == half) & (out > lo) & (out <= hi)
    if (tie & (out > 0)).any():
        reached.add("tie > 0")
    if (tie & (out <= 0)).any():  # half up and half away from zero part ways here
        reached.add("tie <= 0")
    if ((frac == half - 1) & (out >= lo) & (out < hi)).any():
        reached.add("below tie")
    if (out > hi).any():
        reached.add("max")
    if (out < lo).any():
        reached.add("min")
    return np.clip(out, lo, hi), reached


def set_multipliers(graph) -> None:
    graph["conv_t"].quant["multiplier"] = TIE
    graph["conv_b"].quant["multiplier"] = BELOW
    # Adds share one shift: 1.5 a + 0.5 b, a tie when a + b is odd; with b's m0 one less, the
    # product (3a + b) * 2^29 - b is one below a tie where b = 1 and a is even.
    graph["add"].quant["multipliers"] = [TIE, Multiplier(1 << 29, 30)]
    graph["add_1"].quant["multipliers"] = [TIE, Multiplier((1 << 29) - 1, 30)]
    graph["pool_t"].quant["multiplier"] = HALF
    graph["pool_b"].quant["multiplier"] = BELOW
    graph["cat"].quant["multipliers"] = [IDENTITY] * 6


def inputs() -> np.ndarray:
    """Two random images; the first with patches that reach the cases random values rarely do:
    all-127 and all--128 windows (pools saturate) and a window summing to 1 (a product of 1)."""
    x = np.random.default_rng(21).integers(-128, 128, size=(2, 2, 5, 5))
    x[0, 0, 0:2, 0:2] = 127
    x[0, 0, 3:5, 3:5] = -128
    x[0, 1, 0:2, 0:2] = [[1, 0], [0, 0]]
    return x


def assert_edge_cases(graph, x: np.ndarray) -> None:
    """Each engine's products, recomputed from the reference's inputs to it, reproduce the
    reference's outputs, and reach their edge cases."""
    v = reference.run(graph, x, all_outputs=True)
    x64 = x.astype(np.int64)
    acc = x64[:, :, :4, :4]  # the convs copy their input (tap (0, 0))
    windows = x64[:, :, :4, :4] + x64[:, :, 1:, :4] + x64[:, :, :4, 1:] + x64[:, :, 1:, 1:]
    m0 = {name: graph[name].quant["multiplier"].m0 for name in ("conv_t", "conv_b", "pool_t", "pool_b")}
    products = {
        "conv_t": acc * m0["conv_t"],
        "conv_b": acc * m0["conv_b"],
        **{name: sum(t * m.m0 for t, m in zip((v["conv_t"], v["conv_b"]), graph[name].quant["multipliers"]))
           for name in ("add", "add_1")},
        "pool_t": windows * m0["pool_t"],
        "pool_b": windows * m0["pool_b"],
    }
    for name, prod in products.items():
        node = graph[name]
        shift = (node.quant.get("multiplier") or node.quant["multipliers"][0]).shift
        out, reached = edge_cases(prod, shift, node.quant["bits"], node.relu)
        assert np.array_equal(out, v[name]), name
        want = {"below tie", "max", "min"} if node.relu else {"tie > 0", "tie <= 0", "max", "min"}
        assert want <= reached, f"{name} reaches {sorted(reached)}, not {sorted(want)}"
    # The concat is the identity: every instance's output is in the output stream as is.
    assert np.array_equal(v["output"], np.concatenate([v[n] for n in products], axis=1))


@pytest.fixture(scope="module")
def rounding_design(tmp_path_factory):
    model = Rounding().eval()
    calib = torch.randn(16, 2, 5, 5, generator=torch.Generator().manual_seed(21))  # scales only: multipliers are set
    graph = lower_model(model, (2, 5, 5), measure_ranges(model, [calib]), weight_bits=2)
    assert [n.relu for n in graph.nodes_of("conv", "add", "avgpool")] == [False, True, False, True, False, True]
    set_multipliers(graph)
    x_int = inputs()
    assert_edge_cases(graph, x_int)
    folder = write_design(tmp_path_factory.mktemp("rounding"), graph, x_int)
    return folder, graph, x_int


def test_ties_and_saturation_bit_exact(rounding_design, sim):
    folder, graph, x_int = rounding_design
    result = run_rtlsim(folder, sim)
    check(result, reference.run(graph, x_int))
    assert result.n == len(x_int)
