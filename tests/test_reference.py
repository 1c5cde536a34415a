"""The exact integer reference against float PyTorch, layer by layer, with tolerances derived from
the scales; exactness where the contract promises it; sparse and ADMM weights; the accumulator
overflow proof; saturation against an independent Python-int recomputation; LeNet-5 end to end.

Every per-layer check feeds the layer the reference's own (quantized) input, so the only errors
left are the layer's own: the one requantization rounding (<= 0.5 LSB, round half up), the
multiplier's m0 * 2^-shift approximation (|acc| * |M - m0 2^-shift| LSB) and, against the original
float weights, the weight and bias quantization error computed exactly for the given inputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from admm_hls import reference, zoo
from admm_hls.calibration import measure_ranges
from admm_hls.errors import UserError
from admm_hls.ir.lower import lower_model
from admm_hls.layers.weights import codebook_for, packed_levels
from admm_hls.sparse import pack, unpack
from small_models import ACT_HI, ACT_LO, Cat, Residual, extremes, randn, seeded

SLACK = 1e-6  # LSB: float64 rounding of the float side, nothing else


# -- helpers ---------------------------------------------------------------------------------------
def lowered(model: nn.Module, x: torch.Tensor, ranges=None, **kw):
    """(graph, {node: integers}) for ``model`` calibrated on ``x`` and run on ``x``."""
    model.eval()
    if ranges is None:
        ranges = measure_ranges(model, [x])
    graph = lower_model(model, tuple(x.shape[1:]), ranges, **kw)
    return graph, reference.run(graph, x.numpy(), all_outputs=True)


def ptq_levels(w: np.ndarray, bits: int = 8) -> tuple[np.ndarray, float]:
    """Independent post-training quantization: symmetric max-abs scale, round half away from 0."""
    w = np.asarray(w, dtype=np.float64)
    top = 2 ** (bits - 1) - 1
    peak = float(np.abs(w).max())
    scale = peak / top if peak > 0 else 1.0
    return (np.sign(w) * np.floor(np.abs(w) / scale + 0.5)).astype(np.int64), scale


def t64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def py_requant(acc: int, m0: int, shift: int, relu: bool) -> int:
    """The contract's rule with unbounded Python integers (>> floors, as an arithmetic shift)."""
    out = (acc * m0 + (1 << (shift - 1))) >> shift
    return max(0 if relu else ACT_LO, min(ACT_HI, out))


def assert_within(got_int: np.ndarray, want_lsb: torch.Tensor, tol_lsb, what: str) -> None:
    """|got - clip(want)| <= tol, all in output LSBs (clipping is the contract's saturation)."""
    want = want_lsb.numpy()
    err = np.abs(got_int - want)
    tol = np.broadcast_to(np.asarray(tol_lsb, dtype=np.float64), err.shape)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), f"{what}: error {err[worst]:.4f} LSB > {tol[worst]:.4f} LSB at {worst}"


def mult_error(m, real: float, peak_acc: float) -> float:
    """Worst deviation (LSB) of acc * m0 2^-shift from acc * real for |acc| <= peak_acc, after
    checking the multiplier really is ``real`` to int32 precision (so the term stays tiny)."""
    assert 2**30 <= m.m0 < 2**31 or m.shift == 62, m
    assert abs(m.m0 / 2.0**m.shift - real) <= real * 2.0**-30 + 2.0**-62, (m, real)
    return peak_acc * abs(m.m0 / 2.0**m.shift - real)


def scale_from(ranges, name: str) -> float:
    lo, hi = ranges[name]
    peak = max(abs(lo), abs(hi))
    return (peak if peak > 0 else 1.0) / 127


def check_graph(model: nn.Module, graph, outs: dict, x: torch.Tensor, ranges: dict,
                levels: dict | None = None, weight_bits: int = 8) -> dict[str, float]:
    """Check every node of a lowered graph against float PyTorch fed the node's quantized inputs.

    ``levels``: {module: (levels, scale, bits)} the weighted layers must have used (else PTQ).
    Returns the worst error in LSB per node against the float model (for diagnostics).
    """
    levels = levels or {}
    worst = {}
    for node in graph.topo():
        q, name = node.quant, node.name
        if node.op == "output":
            (src,) = graph.inputs(name)
            np.testing.assert_array_equal(outs[name], outs[src])
            assert q["scale"] == graph[src].quant["scale"]
            continue
        got = outs[name]
        assert got.dtype == np.int64 and got.shape[1:] == tuple(node.shape), name
        assert got.min() >= ACT_LO and got.max() <= ACT_HI, name
        s_out = q["scale"]
        if node.op == "input":
            assert s_out == scale_from(ranges, node.calib)
            assert_within(got, t64(x) / s_out, 0.5 + SLACK, "input")
            continue
        srcs = graph.inputs(name)
        ints = [outs[s] for s in srcs]
        scales = [graph[s].quant["scale"] for s in srcs]
        xs = [t64(i) * s for i, s in zip(ints, scales)]
        lo = 0 if node.relu else ACT_LO

        def clip(v):
            return v.clamp(lo, ACT_HI)

        if node.op in ("conv", "linear"):
            worst[name] = check_weighted(model, node, got, ints[0], xs[0], scales[0], ranges, levels, weight_bits)
        elif node.op == "maxpool":
            assert s_out == scales[0]
            p = node.params
            if node.module:  # the torch module's own semantics, not the lowered params
                pool = model.get_submodule(node.module)
                assert isinstance(pool, nn.MaxPool2d)
                want = pool(t64(ints[0]))
            else:
                want = F.max_pool2d(t64(ints[0]), p["kernel"], p["stride"], p["padding"])
            np.testing.assert_array_equal(got, want.numpy().astype(np.int64), err_msg=name)  # exact
        elif node.op == "relu":
            assert s_out == scales[0]
            np.testing.assert_array_equal(got, np.maximum(ints[0], 0), err_msg=name)
        elif node.op == "flatten":
            assert s_out == scales[0]
            np.testing.assert_array_equal(got, torch.from_numpy(ints[0]).flatten(1).numpy(), err_msg=name)
        elif node.op == "avgpool":
            assert s_out == scale_from(ranges, node.calib)
            pool = model.get_submodule(node.module) if node.module else None
            want = pool(xs[0]) if pool is not None else F.avg_pool2d(
                xs[0], node.params["kernel"], node.params["stride"], node.params["padding"])
            if node.relu:
                want = want.clamp_min(0)
            div = node.params["divisor"]
            real = scales[0] / (s_out * div)
            tol = 0.5 + mult_error(q["multiplier"], real, 128 * div) + SLACK
            assert_within(got, clip(want / s_out), tol, name)
            worst[name] = float(np.abs(got - clip(want / s_out).numpy()).max())
        elif node.op == "add":
            assert s_out == scale_from(ranges, node.calib)
            want = xs[0] + xs[1]
            if node.relu:
                want = want.clamp_min(0)
            ms = q["multipliers"]
            assert ms[0].shift == ms[1].shift  # one shared shift: m0 < 2^31, the largest normalized
            assert max(m.m0 for m in ms) >= 2**30 and all(m.m0 < 2**31 for m in ms)
            err = [m.m0 / 2.0**m.shift - s / s_out for m, s in zip(ms, scales)]
            assert all(abs(e) <= 2.0**-m.shift for e, m in zip(err, ms)), (ms, scales, s_out)
            tol = 0.5 + 128 * sum(abs(e) for e in err) + SLACK
            assert_within(got, clip(want / s_out), tol, name)
            worst[name] = float(np.abs(got - clip(want / s_out).numpy()).max())
        elif node.op == "concat":
            assert s_out == scale_from(ranges, node.calib)
            start = 0
            for part, m, s, xf in zip(ints, q["multipliers"], scales, xs):
                c = part.shape[1]
                tol = 0.5 + mult_error(m, s / s_out, 128) + SLACK
                assert_within(got[:, start:start + c], clip(xf / s_out), tol, f"{name}[{start}:{start + c}]")
                start += c
            assert start == got.shape[1]
        else:
            raise AssertionError(f"no check for op {node.op}")
    return worst


def check_weighted(model, node, got, x_int, xin, s_in, ranges, levels, weight_bits) -> float:
    """A conv/linear node: integer parameters recomputed independently, then the output against
    float with the dequantized weights (activation rounding only) and with the float weights."""
    q = node.quant
    mod = model.get_submodule(node.module)
    w = mod.weight.detach().double().numpy()
    b = mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(w.shape[0])
    if node.module in levels:
        lv, w_scale, bits = levels[node.module]
        lv = np.asarray(lv, dtype=np.int64)
    else:
        bits = weight_bits
        lv, w_scale = ptq_levels(w, bits)
        assert np.all(np.abs(w - lv * w_scale) <= 0.5 * w_scale * (1 + 1e-12))  # the PTQ bound
    assert q["weight_bits"] == bits and q["w_scale"] == w_scale and q["in_scale"] == s_in
    # The reference's weights are exactly these levels, decoded from the packed bits.
    np.testing.assert_array_equal(packed_levels(node), lv.reshape(lv.shape[0], -1))
    acc_scale = s_in * w_scale
    bias_q = np.floor(b / acc_scale + 0.5).astype(np.int64)
    np.testing.assert_array_equal(q["bias"], bias_q)
    s_out = q["scale"]
    assert s_out == scale_from(ranges, node.calib)

    wq, bq = lv * w_scale, bias_q * acc_scale
    if node.op == "conv":
        def op(inp, weight, bias):
            return F.conv2d(inp, t64(weight), t64(bias), stride=mod.stride, padding=mod.padding)
    else:
        def op(inp, weight, bias):
            return F.linear(inp, t64(weight), t64(bias))
    y_deq = op(xin, wq, bq)  # == acc * acc_scale
    y_float = op(xin, w, b)
    # Exact weight/bias quantization error for these inputs (a bound, by the triangle inequality).
    w_err = op(xin.abs(), np.abs(w - wq), np.abs(b - bq))
    if node.relu:
        y_deq, y_float = y_deq.clamp_min(0), y_float.clamp_min(0)
    lo = 0 if node.relu else ACT_LO
    real = acc_scale / s_out
    act_tol = 0.5 + mult_error(q["multiplier"], real, q["acc_bound"]) + SLACK
    assert_within(got, (y_deq / s_out).clamp(lo, ACT_HI), act_tol, f"{node.name} vs dequantized weights")
    assert_within(got, (y_float / s_out).clamp(lo, ACT_HI), act_tol + (w_err / s_out).numpy(),
                  f"{node.name} vs float weights")
    return float(np.abs(got - (y_float / s_out).clamp(lo, ACT_HI).numpy()).max())


# -- 1. every layer kind against float PyTorch ------------------------------------------------------
CONV_CASES = [  # kernel, stride, padding, bias, relu
    (1, 1, 0, True, False),
    (1, 2, 1, False, True),
    (3, 1, 1, True, True),
    (3, 2, 0, True, False),
    (3, 2, 2, False, False),
    (5, 1, 2, True, True),
    (5, 2, 1, False, True),
    (5, 1, 0, True, False),
]


@pytest.mark.parametrize("k,s,p,bias,relu", CONV_CASES)
def test_conv_matches_float(k, s, p, bias, relu):
    model = seeded(lambda: nn.Sequential(nn.Conv2d(3, 5, k, stride=s, padding=p, bias=bias),
                                         *([nn.ReLU()] if relu else [])))
    x = randn(6, 3, 7, 9, seed=k * 100 + s * 10 + p)
    graph, outs = lowered(model, x)
    ranges = measure_ranges(model, [x])
    (conv,) = graph.nodes_of("conv")
    assert conv.relu == relu and len(graph) == 3  # relu fused: input, conv, output
    assert conv.shape == tuple(model(x).shape[1:])
    worst = check_graph(model, graph, outs, x, ranges)
    assert np.abs(outs[conv.name]).max() >= 100  # calibrated: the output range is really used
    assert worst[conv.name] < 2.0  # and the whole error stays within a couple of LSBs


def test_linear_matches_float():
    """Linear with fused ReLU, then linear without, then linear without bias."""
    model = seeded(lambda: nn.Sequential(nn.Linear(20, 12), nn.ReLU(), nn.Linear(12, 7),
                                         nn.Linear(7, 4, bias=False)))
    x = randn(32, 20, seed=1)
    graph, outs = lowered(model, x)
    lin = graph.nodes_of("linear")
    assert [n.relu for n in lin] == [True, False, False] and [n.module for n in lin] == ["0", "2", "3"]
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))
    assert outs[lin[0].name].min() == 0  # the ReLU clamp is exercised


POOL_MODELS = {
    "maxpool2": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2)),
    "maxpool3_s2_p1": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1)),
    "avgpool2": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)),
    "avgpool3_s2_p1_relu": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(3, 2, 1),
                                                 nn.ReLU()),
    "adaptive_1x1": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1)),
    "adaptive_2x4": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 4))),
}
POOL_EXPECT = {  # op, lowered kernel, output shape, relu fused into the pool
    "maxpool2": ("maxpool", (2, 2), (4, 3, 4), False),
    "maxpool3_s2_p1": ("maxpool", (3, 3), (4, 4, 5), False),
    "avgpool2": ("avgpool", (2, 2), (4, 3, 4), False),
    "avgpool3_s2_p1_relu": ("avgpool", (3, 3), (4, 4, 5), True),
    "adaptive_1x1": ("avgpool", (6, 8), (4, 1, 1), False),
    "adaptive_2x4": ("avgpool", (3, 2), (4, 2, 4), False),
}


@pytest.mark.parametrize("name", sorted(POOL_MODELS))
def test_pool_matches_float(name):
    model = seeded(POOL_MODELS[name])
    h, w = (6, 8) if name.startswith("adaptive") else (7, 9)
    x = randn(8, 3, h, w, seed=len(name))
    graph, outs = lowered(model, x)
    op, kernel, shape, relu = POOL_EXPECT[name]
    (pool,) = graph.nodes_of(op)
    assert pool.params["kernel"] == kernel and pool.shape == shape and pool.relu == relu
    assert "relu" not in {n.op for n in graph.topo()}  # every ReLU here is fusible
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))


def test_maxpool_on_negative_input_padding_never_wins():
    """Max-pool straight on the input, every value negative: torch pads with -inf; the reference's
    padding must lose against -128 too."""
    model = nn.Sequential(nn.MaxPool2d(3, 2, 1))
    x = -randn(4, 2, 7, 9, seed=3).abs() - 0.5
    x[0] = x.min()  # sample 0: every value at the bottom of the range, -127
    graph, outs = lowered(model, x)
    (pool,) = graph.nodes_of("maxpool")
    assert outs[pool.name].max() < 0
    assert (outs[pool.name][0] == ACT_LO + 1).all()  # border windows too: the padding never wins
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))


def test_residual_add_with_fused_relu():
    model = seeded(Residual)
    x = randn(8, 4, 7, 9, seed=4)
    graph, outs = lowered(model, x)
    (add,) = graph.nodes_of("add")
    inp = graph.input_node().name
    assert graph.inputs(add.name) == [inp, "conv"] and add.relu and add.calib == "relu"
    assert graph.inputs("head") == [add.name]
    assert graph[inp].quant["scale"] != graph["conv"].quant["scale"] != add.quant["scale"]
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))
    assert outs[add.name].min() == 0 and outs[add.name].max() >= 100


def test_concat_of_different_scales():
    model = seeded(Cat)
    x = randn(8, 3, 7, 9, seed=5)
    graph, outs = lowered(model, x)
    assert graph.inputs("cat") == ["a", "b"] and graph["cat"].shape == (6, 7, 9)
    sa, sb = graph["a"].quant["scale"], graph["b"].quant["scale"]
    assert sb > 3 * sa and graph["cat"].quant["scale"] == pytest.approx(sb)
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))


def test_standalone_relu_after_maxpool_and_flatten():
    model = seeded(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(4 * 2 * 3, 5)))
    x = randn(8, 3, 7, 9, seed=6)
    graph, outs = lowered(model, x)
    assert [n.op for n in graph.topo()] == ["input", "conv", "maxpool", "relu", "flatten", "linear", "output"]
    assert not graph["_0"].relu
    assert outs["_1"].min() < 0 and outs["_2"].min() == 0  # the clamp really clamps something
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))


# -- 2. exactness --------------------------------------------------------------------------------------
def test_pool_relu_flatten_are_exact_integer_ops():
    model = seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.ReLU(),
                                         nn.Flatten()))
    x = randn(5, 2, 7, 9, seed=7)
    graph, outs = lowered(model, x)
    conv, pooled, relu, flat = outs["_0"], outs["_1"], outs["_2"], outs["_3"]
    # max-pool: the integer max of each window (pure numpy, padding skipped)
    want = np.empty_like(pooled)
    for i in range(pooled.shape[2]):
        for j in range(pooled.shape[3]):
            rows = slice(max(2 * i - 1, 0), 2 * i + 2)
            cols = slice(max(2 * j - 1, 0), 2 * j + 2)
            want[:, :, i, j] = conv[:, :, rows, cols].max(axis=(2, 3))
    np.testing.assert_array_equal(pooled, want)
    np.testing.assert_array_equal(relu, np.maximum(pooled, 0))
    # flatten: torch's NCHW order of the integer tensor
    np.testing.assert_array_equal(flat, torch.from_numpy(relu).flatten(1).numpy())
    np.testing.assert_array_equal(flat, relu.reshape(5, -1))
    assert graph["_3"].quant["scale"] == graph["_1"].quant["scale"] == graph["_0"].quant["scale"]


def test_concat_of_same_scale_inputs_copies_exactly():
    model = seeded(Cat)
    x = randn(6, 3, 7, 9, seed=8)
    ranges = measure_ranges(model, [x])
    peak = max(abs(v) for name in ("a", "b", "cat") for v in ranges[name])
    for name in ("a", "b", "cat"):
        ranges[name] = [-peak, peak]
    graph, outs = lowered(model, x, ranges=ranges)
    assert all(m.m0 / 2.0**m.shift == 1.0 for m in graph["cat"].quant["multipliers"])
    np.testing.assert_array_equal(outs["cat"], np.concatenate([outs["a"], outs["b"]], axis=1))
    check_graph(model, graph, outs, x, ranges)


def test_all_zero_conv_outputs_requantized_bias():
    model = seeded(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([0.3, -0.7, 0.05, 1.1]))
    x = randn(3, 3, 7, 9, seed=9)
    graph, outs = lowered(model, x)
    node = graph["_0"]
    q = node.quant
    assert q["w_scale"] == 1.0 and not packed_levels(node).any()
    m = q["multiplier"]
    per_channel = [py_requant(int(b), m.m0, m.shift, False) for b in q["bias"]]
    want = np.broadcast_to(np.array(per_channel)[None, :, None, None], outs["_0"].shape)
    np.testing.assert_array_equal(outs["_0"], want)
    assert max(abs(v) for v in per_channel) == 127  # the largest bias sets the calibrated range
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))


class GuardedQuant(dict):
    """node.quant without any level matrix: reading one fails the test."""

    def __getitem__(self, key):
        assert key not in ("levels", "weight", "weights"), f"the reference read quant[{key!r}]"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key not in ("levels", "weight", "weights"), f"the reference read quant[{key!r}]"
        return super().get(key, default)


def dense_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7 * 9, 6))


def sparse_net(density=0.05, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for i in (0, 3):
            w = model[i].weight
            w.mul_((torch.rand(w.shape, generator=gen) < density).float())
    return model.eval()


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_reference_reads_only_the_packed_bits(monkeypatch, which):
    if which == "dense":
        model, x = seeded(dense_net), randn(6, 3, 7, 9, seed=10)
    else:
        model, x = sparse_net(), randn(6, 8, 5, 5, seed=10)
    graph, outs = lowered(model, x)
    before = reference.run(graph, x.numpy())
    for node in graph.nodes_of("conv", "linear"):
        assert node.packed.format == ("dense" if which == "dense" else "relative")
        assert "levels" not in node.quant  # the pack pass dropped the level matrix
        monkeypatch.setattr(node, "quant", GuardedQuant(node.quant))
        monkeypatch.setitem(node.params, "weight", np.full_like(node.params["weight"], np.nan))
    np.testing.assert_array_equal(reference.run(graph, x.numpy()), before)
    monkeypatch.undo()

    # Corrupt one packed field of each layer's first stored nonzero: only that row's output moves.
    for node in graph.nodes_of("conv", "linear"):
        layer = node.packed.layer
        if which == "dense":
            width, count = layer.value_bits, layer.rows * layer.cols
        else:
            width, count = layer.value_bits + layer.index_bits, int(layer.row_ptr[-1])
        fields = unpack(layer.words, width, count, layer.word_bits)
        code_mask = (1 << layer.value_bits) - 1
        first = int(np.flatnonzero(fields & code_mask)[0])
        code = int(fields[first] & code_mask)
        levels = node.packed.codebook.levels
        new_code = 1 if levels[code - 1] > 0 else len(levels)  # the opposite extreme level
        fields = fields.copy()
        fields[first] = (fields[first] & ~code_mask) | new_code
        words = pack(fields, width, layer.word_bits)
        assert np.count_nonzero(words != layer.words) == 1  # one word changed
        if which == "dense":
            row = first // layer.cols
        else:
            row = int(np.searchsorted(layer.row_ptr, first, "right")) - 1
        corrupt = dataclasses.replace(node.packed, layer=dataclasses.replace(layer, words=words))
        monkeypatch.setattr(node, "packed", corrupt)
        changed = reference.run(graph, x.numpy(), all_outputs=True)[node.name] != outs[node.name]
        monkeypatch.undo()
        assert np.unique(np.nonzero(changed)[1]).tolist() == [row], node.name
    np.testing.assert_array_equal(reference.run(graph, x.numpy()), before)


@pytest.mark.parametrize("rows_of_x", [1, 3, 700])
def test_sparse_and_blocked_products_agree(monkeypatch, rows_of_x):
    """The reference multiplies a relative-index layer either through its nonzeros (few input
    rows) or through dense blocks of decoded rows (many): both exact, both equal, empty rows
    (only the bias) included, across block boundaries."""
    from admm_hls.layers import weights

    model = sparse_net(density=0.05)
    with torch.no_grad():
        model[3].weight[4] = 0  # an empty row
    x = randn(4, 8, 5, 5, seed=13)
    graph, _ = lowered(model, x)
    (fc,) = graph.nodes_of("linear")
    assert fc.packed.format == "relative" and (np.diff(fc.packed.layer.row_ptr) == 0).any()
    inp = np.random.default_rng(rows_of_x).integers(-128, 128, size=(rows_of_x, fc.packed.layer.cols))
    want = inp @ packed_levels(fc).T
    sparse = weights._sparse_product(fc, inp.astype(np.float64), rows_of_x)
    monkeypatch.setattr(weights, "PRODUCT_BLOCK_BYTES", 16 * fc.packed.layer.cols * 3)  # blocks of 3 rows
    blocked = weights.packed_product(fc, inp) if rows_of_x > 100 else None
    np.testing.assert_array_equal(sparse, want)
    np.testing.assert_array_equal(weights.packed_product(fc, inp), want)
    if blocked is not None:
        np.testing.assert_array_equal(blocked, want)


def test_no_level_matrix_survives_packing():
    model = seeded(dense_net)
    x = randn(4, 3, 7, 9, seed=11)
    graph, _ = lowered(model, x)
    assert [n.name for n in graph.topo() if "levels" in n.quant] == []


# -- 3. sparse layers and ADMM levels ------------------------------------------------------------------
def test_sparse_layers_use_relative_index_and_match_float():
    model = sparse_net()
    x = randn(16, 8, 5, 5, seed=12)
    graph, outs = lowered(model, x)
    for node in graph.nodes_of("conv", "linear"):
        w = model.get_submodule(node.module).weight.detach().numpy()
        assert (w == 0).mean() > 0.9
        assert node.packed.format == "relative", node.packed.reason
        assert node.packed.report["overall"] < node.quant["weight_bits"] * w.size  # really smaller
        assert not packed_levels(node)[w.reshape(w.shape[0], -1) == 0].any()  # zeros stay zero
    check_graph(model, graph, outs, x, measure_ranges(model, [x]))


def admm_net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 7 * 9, 5))
    gen = torch.Generator().manual_seed(seed)
    specs = {"0": (3, 0.07), "3": (2, 0.02)}  # module: (bits, scale)
    levels = {}
    with torch.no_grad():
        for module, (bits, scale) in specs.items():
            w = model.get_submodule(module).weight
            top = 2 ** (bits - 1) - 1
            lv = torch.randint(-top, top + 1, w.shape, generator=gen).numpy().astype(np.int64)
            w.copy_(torch.from_numpy((lv.astype(np.float64) * scale).astype(np.float32)))
            levels[module] = (lv, scale, bits)
    return model.eval(), levels


def test_admm_levels_are_used_when_weights_sit_on_them():
    model, levels = admm_net()
    x = randn(16, 3, 7, 9, seed=13)
    ranges = measure_ranges(model, [x])
    graph, outs = lowered(model, x, ranges=ranges, levels=levels)
    for node in graph.nodes_of("conv", "linear"):
        lv, scale, bits = levels[node.module]
        assert node.quant["weight_bits"] == bits and node.quant["w_scale"] == scale
        assert node.packed.codebook.levels.tolist() == codebook_for(bits).levels.tolist()
        assert node.packed.codebook.value_bits == (3 if bits == 3 else 2)
        np.testing.assert_array_equal(packed_levels(node), lv.reshape(lv.shape[0], -1))
    check_graph(model, graph, outs, x, ranges, levels=levels)


@pytest.mark.parametrize("weight_bits", [8, 6])
def test_admm_levels_fall_back_to_ptq_when_weights_moved(weight_bits):
    model, levels = admm_net()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1e-3  # off the codebook (as BN folding would do)
    x = randn(16, 3, 7, 9, seed=14)
    ranges = measure_ranges(model, [x])
    graph, outs = lowered(model, x, ranges=ranges, levels=levels, weight_bits=weight_bits)
    conv, fc = graph["_0"], graph["_3"]
    w = model[0].weight.detach().numpy()
    assert conv.quant["weight_bits"] == weight_bits
    assert conv.quant["w_scale"] == float(np.abs(w).max()) / (2 ** (weight_bits - 1) - 1)
    assert fc.quant["weight_bits"] == 2 and fc.quant["w_scale"] == 0.02  # untouched layer keeps ADMM
    check_graph(model, graph, outs, x, ranges, levels={"3": levels["3"]}, weight_bits=weight_bits)


# -- 4. the accumulator overflow proof -----------------------------------------------------------------
def wide_linear(fan_in: int, bias: float = 0.0):
    model = nn.Sequential(nn.Linear(fan_in, 1))
    gen = torch.Generator().manual_seed(fan_in)
    with torch.no_grad():  # every weight at the max level: +-127
        model[0].weight.copy_(torch.where(torch.rand(1, fan_in, generator=gen) < 0.5, -1.0, 1.0))
        model[0].bias.fill_(bias)
    return model.eval()


@pytest.mark.parametrize("fan_in,acc_bits,need", [(100_000, 16, 32), (140_000, 32, 33), (132_105, 32, 33)])
def test_overflowing_accumulator_is_refused(fan_in, acc_bits, need):
    model = wide_linear(fan_in)
    x = randn(2, fan_in, seed=15)
    bound = fan_in * 127 * 128
    assert bound.bit_length() + 1 == need
    with pytest.raises(UserError) as info:
        lower_model(model, (fan_in,), measure_ranges(model, [x]), acc_bits=acc_bits)
    msg = str(info.value)
    assert "\n" not in msg
    assert "layer _0" in msg and f"needs {need} bits" in msg and f"{acc_bits}-bit" in msg, msg
    assert f"{bound:,}" in msg, msg


def test_largest_accumulator_that_fits_is_accepted():
    fan_in = (2**31 - 1) // (127 * 128)  # 132104: bound 2,147,482,624 < 2^31
    model = wide_linear(fan_in)
    x = randn(2, fan_in, seed=16)
    graph = lower_model(model, (fan_in,), measure_ranges(model, [x]))
    q = graph["_0"].quant
    assert q["acc_bound"] == fan_in * 127 * 128 and q["acc_bits"] == 32
    # Every input at -128 against its weight's sign: the accumulator reaches the bound exactly.
    lv = packed_levels(graph["_0"])[0]
    xi = (-128 * np.sign(lv))[None, :]
    assert int(np.dot(xi[0], lv)) + int(q["bias"][0]) == -q["acc_bound"]
    assert reference.run(graph, xi).tolist() == [[ACT_LO]]


def test_large_bias_is_refused():
    model = nn.Sequential(nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.copy_(randn(3, 8, seed=17))
        model[0].bias.copy_(torch.tensor([0.1, 1e6, -0.2]))
    x = randn(4, 8, seed=17)
    # the bias alone passes 2^31 accumulator units: refused before its int64 cast could wrap it
    with pytest.raises(UserError, match=r"layer _0: a bias is .* more than the 32-bit accumulator holds"):
        lower_model(model, (8,), measure_ranges(model, [x]))


def test_accumulator_bound_recomputed_from_packed_weights():
    model = seeded(Cat)
    x = randn(6, 3, 7, 9, seed=18)
    graph, outs = lowered(model, x)
    for node in graph.nodes_of("conv", "linear"):
        lv, bias = packed_levels(node), node.quant["bias"]
        bound = int((128 * np.abs(lv).sum(axis=1) + np.abs(bias)).max())
        assert node.quant["acc_bound"] == bound
        assert node.quant["acc_bits"] == bound.bit_length() + 1 <= 32


def test_wide_accumulator_requantizes_without_int64_overflow():
    """Requantization multiplies in int64: a 35-bit accumulator (acc = bias_q ~ 1.5 * 2^33) times
    m0 = 2^30 is ~1.5 * 2^63 and would wrap to a negative number (-128 where the contract says
    127). Lowering refuses accumulators wider than 32 bits, where |acc * m0| < 2^62 cannot wrap;
    at 32 bits the reference agrees with unbounded Python integers."""
    acc_scale = (1 / 127) * (1 / 127)
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])

    def model_and_ranges(bias_q: float):
        model = nn.Sequential(nn.Linear(4, 1))
        with torch.no_grad():
            model[0].weight.fill_(1.0)
            model[0].bias.fill_(bias_q * acc_scale)
        ranges = measure_ranges(model, [x])
        ranges["_0"] = [-254 * acc_scale, 254 * acc_scale]  # multiplier 0.5
        return model, ranges

    model, ranges = model_and_ranges(1.5 * 2.0**33)
    for acc_bits in (33, 40):
        with pytest.raises(UserError, match=rf"^accumulator width {acc_bits} is not supported: use 2\.\.32 bits$"):
            lower_model(model, (4,), ranges, acc_bits=acc_bits)
    xi = np.array([[0, 0, 0, 0], [127, 127, 127, 127], [-128, -128, -128, -128]], dtype=np.int64)
    for bias_q, bound in ((1.5 * 2.0**30, ACT_HI), (-1.5 * 2.0**30, ACT_LO)):
        model, ranges = model_and_ranges(bias_q)
        graph = lower_model(model, (4,), ranges, acc_bits=32)
        q = graph["_0"].quant
        m = q["multiplier"]
        assert q["acc_bits"] == 32 and m.m0 == 2**30  # the multiplier is exactly 0.5
        lv = packed_levels(graph["_0"])[0]
        want = [[py_requant(int(np.dot(row, lv)) + int(q["bias"][0]), m.m0, m.shift, False)] for row in xi]
        assert want == [[bound]] * len(xi)
        assert reference.run(graph, xi).tolist() == want


# -- 5. saturation against an independent Python-int recomputation -------------------------------------
def saturating(model: nn.Module, x: torch.Tensor, gain: float = 50.0):
    """Calibrate, then make the weights ``gain`` times larger: accumulators leave the range."""
    ranges = measure_ranges(model, [x])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(gain)
    return lower_model(model, tuple(x.shape[1:]), ranges)


@pytest.mark.parametrize("relu", [False, True])
def test_conv_saturates_like_python_ints(relu):
    model = seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), *([nn.ReLU()] if relu else [])))
    graph = saturating(model, randn(8, 2, 5, 6, seed=19))
    xi = extremes((3, 2, 5, 6), seed=19)
    outs = reference.run(graph, xi, all_outputs=True)
    np.testing.assert_array_equal(outs[graph.input_node().name], xi)  # integers taken as they are
    node = graph["_0"]
    got = outs["_0"]
    lo = 0 if relu else ACT_LO
    assert got.min() >= lo and got.max() <= ACT_HI
    assert (got == ACT_HI).mean() > 0.2 and (got == lo).mean() > 0.2  # saturation is exercised
    w = packed_levels(node).reshape(3, 2, 3, 3)
    bias, m = node.quant["bias"], node.quant["multiplier"]
    n_, o_, h_, w_ = got.shape
    want = np.zeros_like(got)
    for n in range(n_):
        for o in range(o_):
            for i in range(h_):
                for j in range(w_):
                    acc = int(bias[o])
                    for c in range(2):
                        for u in range(3):
                            for v in range(3):
                                r, s = 2 * i - 1 + u, 2 * j - 1 + v
                                if 0 <= r < 5 and 0 <= s < 6:
                                    acc += int(xi[n, c, r, s]) * int(w[o, c, u, v])
                    want[n, o, i, j] = py_requant(acc, m.m0, m.shift, relu)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("relu", [False, True])
def test_linear_saturates_like_python_ints(relu):
    model = seeded(lambda: nn.Sequential(nn.Linear(30, 6), *([nn.ReLU()] if relu else [])))
    graph = saturating(model, randn(16, 30, seed=20))
    xi = extremes((5, 30), seed=20).astype(np.int32)  # any integer dtype is taken as quantized
    got = reference.run(graph, xi)
    node = graph["_0"]
    lo = 0 if relu else ACT_LO
    assert (got == ACT_HI).mean() > 0.2 and (got == lo).mean() > 0.2
    w = packed_levels(node)
    bias, m = node.quant["bias"], node.quant["multiplier"]
    want = [[py_requant(sum(int(a) * int(b) for a, b in zip(row, w[o])) + int(bias[o]), m.m0, m.shift, relu)
             for o in range(6)] for row in xi]
    assert got.tolist() == want


def test_input_rounding_is_half_up():
    """Exact ties at the input: scale 2^-4 (range 127/16), x = (k + 1/2) / 16 rounds to k + 1."""
    model = nn.Sequential(nn.Linear(6, 2))
    x = torch.tensor([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]]) / 16
    ranges = measure_ranges(model, [x])
    ranges[next(iter(ranges))] = [-127 / 16, 127 / 16]  # the placeholder comes first
    graph = lower_model(model, (6,), ranges)
    assert graph.input_node().quant["scale"] == 2.0**-4
    outs = reference.run(graph, x.numpy(), all_outputs=True)
    assert outs[graph.input_node().name].tolist() == [[-2, -1, 0, 1, 2, 3]]


def test_float_inputs_beyond_the_range_saturate_at_the_input():
    model = seeded(lambda: nn.Sequential(nn.Linear(6, 2)))
    x = randn(8, 6, seed=21)
    graph, _ = lowered(model, x)
    big = torch.full((2, 6), 1e3)
    big[1] = -1e3
    q = reference.quantize_images(graph, big.numpy())
    assert q[0].tolist() == [ACT_HI] * 6 and q[1].tolist() == [ACT_LO] * 6


# -- 6. LeNet-5 end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    model = zoo.build_model("lenet5").eval()
    x = randn(200, 1, 28, 28, seed=22)
    ranges = measure_ranges(model, [x])
    graph = lower_model(model, zoo.input_shape("lenet5"), ranges)
    return model, graph, x, ranges


def test_lenet5_top1_agrees_with_float(lenet):
    model, graph, x, _ = lenet
    with torch.no_grad():
        want = model(x).argmax(1).numpy()
    got = reference.run(graph, x.numpy())
    assert got.shape == (200, 10)
    agree = float((got.argmax(1) == want).mean())
    assert agree >= 0.95, agree


def test_lenet5_every_layer_within_tolerance(lenet):
    model, graph, x, ranges = lenet
    outs = reference.run(graph, x[:40].numpy(), all_outputs=True)
    check_graph(model, graph, outs, x[:40], ranges)


def test_lenet5_batching_does_not_change_results(lenet):
    _, graph, x, _ = lenet
    small = reference.run(graph, x.numpy(), batch=7)
    large = reference.run(graph, x.numpy(), batch=500)
    np.testing.assert_array_equal(small, large)
    parts = reference.run(graph, x[:23].numpy(), all_outputs=True, batch=7)
    whole = reference.run(graph, x[:23].numpy(), all_outputs=True, batch=500)
    assert parts.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(parts[name], whole[name], err_msg=name)
    np.testing.assert_array_equal(whole["output"], large[:23])
