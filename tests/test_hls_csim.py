"""The HLS backend's C++ against the integer reference, bit for bit, under g++ C simulation.

Each test lowers a small torch model, renders its HLS project from a hardware plan (lanes per
layer, ROM or off-chip placement), writes reference test vectors, compiles with g++ -Wall
-Wextra against Xilinx's ap_types headers (from hls4ml) and checks every output of every vector,
plus every layer's output for vector 0 (the testbench's trace). Every rendered project also
passes the structure check of the canonical HLS forms.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from admm_hls import reference, zoo
from admm_hls.backends.hls import render
from admm_hls.backends.hls.structure import check_structure
from admm_hls.build.vectors import test_vectors
from admm_hls.calibration import measure_ranges
from admm_hls.errors import UserError
from admm_hls.hw import plan as hw_plan
from admm_hls.ir.lower import lower_model
from admm_hls.sim import csim
from admm_hls.sparse import decode_dense, decode_relative, encode_dense, encode_relative
from small_models import ACT_HI, ACT_LO, Cat, Residual, extremes, randn, seeded



# -- helpers ---------------------------------------------------------------------------------------
def prune(model: nn.Module, keep: float, seed: int = 0, empty_rows: tuple[int, ...] = (), zero: tuple = ()):
    """Zero all but ``keep`` of each conv/linear weight at random; zero whole rows (filters or
    neurons) listed in ``empty_rows`` and every weight of the modules in ``zero``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand(m.weight.shape, generator=gen) < keep).float())
                for r in empty_rows:
                    m.weight[r] = 0
                if name in zero:
                    m.weight.zero_()
    return model


def lower(model: nn.Module, x: torch.Tensor, gain: float = 1.0):
    """Lower ``model`` calibrated on ``x``; ``gain`` > 1 scales weights after calibration so
    accumulators leave the activation range (saturation)."""
    ranges = measure_ranges(model, [x])
    if gain != 1.0:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.mul_(gain)
    return lower_model(model, tuple(x.shape[1:]), ranges)


def codes_of(node) -> np.ndarray:
    layer = node.packed.layer
    return decode_relative(layer) if node.packed.format == "relative" else decode_dense(layer)


def repack(node, fmt: str, index_bits: int | None = None) -> None:
    """Store ``node``'s weights in ``fmt`` (relative index at ``index_bits``: small widths force
    filler entries); the reference follows, since it reads the packed bits."""
    codes = codes_of(node)
    vb = node.packed.codebook.value_bits
    n_levels = node.packed.codebook.n_levels
    if fmt == "relative":
        layer = encode_relative(codes, vb, index_bits or 4, 32, n_levels=n_levels)
    else:
        layer = encode_dense(codes, vb, 32, n_levels=n_levels)
    node.packed = dataclasses.replace(node.packed, format=fmt, layer=layer)


def make_plan(graph, pe=None, blob=(), top="admm_top", default=1):
    """pe: {node: lanes} (default ``default``); blob: conv / linear nodes whose words are read
    off-chip."""
    return hw_plan.make_plan(graph, pe=default, pe_layers=pe or {}, offchip=tuple(blob), top=top)


def write_project(folder: Path, graph, plan, x_int) -> Path:
    files = render.render_project_sources(graph, plan)
    assert check_structure(files, plan.top) == []
    files.update(test_vectors(graph, x_int))
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def quantized(graph, x: torch.Tensor) -> np.ndarray:
    return reference.quantize_images(graph, x.numpy())


def csim_equals_reference(folder: Path, graph, plan, x_int) -> csim.CsimResult:
    write_project(folder, graph, plan, x_int)
    result = csim.run_csim(folder)
    assert result.passed, f"{result.first_failure}\n{result.stdout[-2000:]}"
    want = reference.run(graph, x_int).reshape(len(x_int), -1)
    assert result.n == len(x_int) and result.mismatches == 0
    np.testing.assert_array_equal(result.outputs, want)
    return result


def our_warnings(result: csim.CsimResult, folder: Path) -> list[str]:
    """Compiler warnings located in the project's own files (ap_types warnings are not ours)."""
    bad = []
    for line in result.build_log.splitlines():
        m = re.match(r"^(.+?):\d+(?::\d+)?: warning: ", line)
        if m:
            path = (folder / m.group(1)).resolve()
            if folder.resolve() in path.parents:
                bad.append(line)
    return bad


# -- conv, both formats, 1x1 / 3x3 / 5x5, stride 2, padding, odd sizes, empty filters, fillers -----
class ConvChain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.c1 = nn.Conv2d(5, 4, 1)
        self.c5 = nn.Conv2d(4, 6, 5, padding=2, bias=False)
        self.c5s = nn.Conv2d(6, 3, 5, stride=2, padding=1)

    def forward(self, x):
        return self.c5s(self.c5(self.c1(torch.relu(self.c3(x)))))


@pytest.mark.parametrize("formats, pe", [(("relative", "dense", "relative", "dense"), 1),
                                        (("dense", "relative", "dense", "relative"), 4)])
def test_conv_layers_match_reference(tmp_path, formats, pe):
    model = prune(seeded(ConvChain, seed=1), keep=0.3, seed=1, empty_rows=(0,))
    x = randn(8, 3, 11, 13, seed=1)
    graph = lower(model, x)
    convs = graph.nodes_of("conv")
    assert [c.params["weight"].shape[2] for c in convs] == [3, 1, 5, 5]
    for node, fmt in zip(convs, formats):
        repack(node, fmt, index_bits=1)
        assert not codes_of(node)[0].any()  # filter 0 is empty
        if fmt == "relative":
            assert node.packed.layer.n_fillers > 0  # gaps longer than 2^r - 1
            assert np.diff(node.packed.layer.row_ptr)[0] == 0
    x_int = quantized(graph, x)
    result = csim_equals_reference(tmp_path, graph, make_plan(graph, default=pe), x_int)
    assert result.rebuilt and result.build_seconds > 0


def test_all_zero_layers(tmp_path):
    """Layers without a single weight (no entries at all, or only zero codes) output the
    requantized bias."""
    model = seeded(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 3, 3)))
    prune(model, keep=1.0, zero=("0", "1"))
    x = randn(6, 3, 7, 9, seed=2)
    graph = lower(model, x)
    a, b = graph.nodes_of("conv")
    repack(a, "relative", index_bits=3)
    repack(b, "dense")
    assert a.packed.layer.n_entries == 0 and a.packed.layer.words.size == 0
    assert not codes_of(b).any()
    csim_equals_reference(tmp_path, graph, make_plan(graph), quantized(graph, x))


def test_linear_sparse_and_dense(tmp_path):
    model = seeded(lambda: nn.Sequential(nn.Linear(37, 12), nn.ReLU(), nn.Linear(12, 7), nn.Linear(7, 5, bias=False)))
    prune(model, keep=0.25, seed=3, empty_rows=(2,))
    x = randn(8, 37, seed=3)
    graph = lower(model, x)
    fc = graph.nodes_of("linear")
    repack(fc[0], "relative", index_bits=2)
    repack(fc[1], "dense")
    repack(fc[2], "relative", index_bits=1)
    assert fc[0].packed.layer.n_fillers > 0 and fc[0].relu
    csim_equals_reference(tmp_path, graph, make_plan(graph), quantized(graph, x))


# -- pools, add, concat, relu, flatten --------------------------------------------------------------
def test_pools_with_padding(tmp_path):
    """Max-pool straight on the input (all-negative vectors: the padding must never win), then
    conv, average pool with padding (padding counts as zeros) and a fused ReLU, then max-pool 2."""
    model = seeded(lambda: nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.Conv2d(2, 4, 3, padding=1),
                                         nn.AvgPool2d(3, 2, 1), nn.ReLU(), nn.MaxPool2d(2)))
    x = randn(8, 2, 13, 15, seed=4)
    x[:3] = -x[:3].abs() - 0.5
    x[0] = x.min()
    graph = lower(model, x)
    assert [n.op for n in graph.topo()] == ["input", "maxpool", "conv", "avgpool", "maxpool", "output"]
    assert graph.nodes_of("avgpool")[0].relu
    x_int = quantized(graph, x)
    x_int[0] = ACT_LO  # the very bottom of the range: still above the padding
    assert (x_int[:3] < 0).all()
    csim_equals_reference(tmp_path, graph, make_plan(graph), x_int)


def test_rounding_ties_round_half_up(tmp_path):
    """A 2x2 average pool at one scale has M = 1/4 exactly (m0 = 2^30, shift 32): every window sum
    = 2 (mod 4) is a tie, +-x.5 rounds towards +inf."""
    model = nn.Sequential(nn.AvgPool2d(2))
    x = randn(4, 3, 6, 8, seed=12)
    ranges = measure_ranges(model, [x])
    inp = next(iter(ranges))  # the placeholder comes first: every tensor gets its scale
    for name in list(ranges)[1:]:
        ranges[name] = list(ranges[inp])
    graph = lower_model(model, (3, 6, 8), ranges)
    m = graph.nodes_of("avgpool")[0].quant["multiplier"]
    assert (m.m0, m.shift) == (2**30, 32)
    x_int = np.random.default_rng(12).integers(ACT_LO, ACT_HI + 1, size=(8, 3, 6, 8))
    sums = x_int.reshape(8, 3, 3, 2, 4, 2).sum(axis=(3, 5))
    assert ((sums % 4 == 2) & (sums > 0)).any() and ((sums % 4 == 2) & (sums < 0)).any()
    csim_equals_reference(tmp_path, graph, make_plan(graph), x_int)


def test_residual_add_with_relu(tmp_path):
    model = seeded(Residual)
    x = randn(8, 4, 7, 9, seed=5)
    graph = lower(model, x)
    (add,) = graph.nodes_of("add")
    assert add.relu and len(graph.consumers(graph.input_node().name)) == 2  # the input fans out
    plan = make_plan(graph, default=2)
    inp = graph.input_node().name
    # one channel per reader, both written by the input process: single producer, single consumer
    fan = plan.writes(inp)
    assert len(fan) == 2 and len({c.name for c in fan}) == 2 and {c.consumer for c in fan} == {"conv", "add"}
    top = render.render_project_sources(graph, plan)["firmware/admm_top.cpp"].decode()
    assert f"layer_{inp}(in_stream, {fan[0].name}, {fan[1].name});" in top
    csim_equals_reference(tmp_path, graph, plan, quantized(graph, x))


def test_concat(tmp_path):
    model = seeded(Cat)
    x = randn(8, 3, 7, 9, seed=6)
    graph = lower(model, x)
    assert graph.nodes_of("concat")
    csim_equals_reference(tmp_path, graph, make_plan(graph), quantized(graph, x))


def test_standalone_relu_and_flatten(tmp_path):
    model = seeded(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(4 * 2 * 3, 5)))
    x = randn(8, 3, 7, 9, seed=7)
    graph = lower(model, x)
    assert [n.op for n in graph.topo()] == ["input", "conv", "maxpool", "relu", "flatten", "linear", "output"]
    csim_equals_reference(tmp_path, graph, make_plan(graph), quantized(graph, x))


def test_saturation_with_extreme_inputs(tmp_path):
    model = seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3),
                                         nn.Flatten(), nn.Linear(4, 6)))
    x = randn(16, 2, 5, 6, seed=8)
    graph = lower(model, x, gain=50.0)
    x_int = extremes((8, 2, 5, 6), seed=8)
    outs = reference.run(graph, x_int, all_outputs=True)
    first = outs[graph.nodes_of("conv")[0].name]
    assert (first == ACT_HI).mean() > 0.2 and (first == 0).mean() > 0.2  # relu layer saturates
    last = outs[graph.output_node().name]
    assert (last == ACT_HI).any() and (last == ACT_LO).any()
    csim_equals_reference(tmp_path, graph, make_plan(graph), x_int)


def test_wider_activations(tmp_path):
    """12-bit activations: 16-bit stream beats and 2-byte test vectors, 6-bit weights."""
    model = prune(seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                               nn.Flatten(), nn.Linear(3 * 2 * 3, 5))), keep=0.5, seed=13)
    x = randn(8, 2, 4, 6, seed=13)
    graph = lower_model(model, (2, 4, 6), measure_ranges(model, [x]), act_bits=12, weight_bits=6)
    repack(graph.nodes_of("conv")[0], "relative", index_bits=2)
    x_int = quantized(graph, x)
    assert np.abs(x_int).max() > 1000
    csim_equals_reference(tmp_path, graph, make_plan(graph, pe={"_4": 2}), x_int)
    types = (tmp_path / "firmware" / "types.h").read_text()
    assert "#define ADMM_STREAM_BITS 16" in types and "typedef ap_int<ADMM_ACT_BITS> act_t;" in types


# -- processing elements and the weight blob --------------------------------------------------------
class PeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.sparse_conv = nn.Conv2d(3, 7, 3, padding=1)
        self.dense_conv = nn.Conv2d(7, 5, 1, stride=2)
        self.sparse_fc = nn.Linear(5 * 3 * 4, 11)
        self.dense_fc = nn.Linear(11, 4)

    def forward(self, x):
        x = self.dense_conv(torch.relu(self.sparse_conv(x)))
        return self.dense_fc(torch.relu(self.sparse_fc(x.flatten(1))))


def pe_net(seed=9):
    model = prune(seeded(PeNet, seed=seed), keep=0.3, seed=seed, empty_rows=(1,))
    x = randn(8, 3, 5, 7, seed=seed)
    graph = lower(model, x)
    for node in graph.nodes_of("conv", "linear"):
        repack(node, "relative" if node.name.startswith("sparse") else "dense", index_bits=2)
    return graph, quantized(graph, x)


@pytest.mark.parametrize("pe", [2, 3])
def test_processing_elements(tmp_path, pe):
    """Lanes in lockstep: 7 filters and 11 neurons dealt in slots over 2 or 3 row groups (a
    partial last slot), the 1-row-high dense conv output split in position bands where it pays."""
    graph, x_int = pe_net()
    names = [n.name for n in graph.nodes_of("conv", "linear")]
    plan = make_plan(graph, pe={name: pe for name in names})
    for name in names:
        s = plan.layers[name].schedule
        assert 1 < s.lanes <= pe and s.groups * len(s.bands) == s.lanes
    csim_equals_reference(tmp_path, graph, plan, x_int)
    s = plan.layers["sparse_conv"].schedule
    rom = (tmp_path / "firmware" / "weights" / "sparse_conv_words.inc").read_text()
    assert rom.count("{") == s.groups  # one ROM row per group


def test_blob_placed_layers(tmp_path):
    graph, x_int = pe_net(seed=10)
    # dense_fc has 4 neurons and a budget of 5: at most 4 lanes
    plan = make_plan(graph, pe={"sparse_fc": 2, "dense_conv": 3, "dense_fc": 5}, blob=("sparse_fc", "dense_conv"))
    assert plan.layers["dense_fc"].lanes == 4
    blob = render.weight_blob(plan)
    files = render.render_project_sources(graph, plan)
    assert files["tb/data/weights.bin"] == blob
    top = files["firmware/admm_top.cpp"].decode()
    for k, name in enumerate(("dense_conv", "sparse_fc")):  # one m_axi port each, its own bundle
        layer = plan.layers[name]
        port = render.blob_port(layer.ident)
        assert (f"m_axi port={port} offset=slave bundle=gmem{k} depth={layer.beats} "
                f"max_read_burst_length={min(256, 4096 * 8 // layer.beat_bits)}") in top
        # the argument, its two INTERFACE pragmas and one process: its burst reader
        assert len(re.findall(rf"\b{port}\b", top)) == 4
        assert f"wread_{layer.ident}({port}, s_words_{layer.ident});" in top
        assert layer.blob_offset % 64 == 0 and layer.beat_bits >= 32 * layer.schedule.groups
        # its beats at its offset: step t holds word t of every group, padded to the beat
        per = layer.beat_bits // 32
        got = np.frombuffer(blob[layer.blob_offset:layer.blob_offset + layer.blob_bytes], dtype="<u4")
        np.testing.assert_array_equal(got.reshape(layer.steps, per)[:, :layer.schedule.groups], layer.words.T)
        assert f"{layer.ident}_words.inc" not in " ".join(files)
    csim_equals_reference(tmp_path, graph, plan, x_int)


@pytest.mark.parametrize("pe", [1, 4])
def test_shipped_lenet5_every_layer_off_chip(tmp_path, pe):
    """--onchip-kb 0: every conv / fc layer reads its words through its own m_axi port, each by
    one burst reader; bit-exact at one and four lanes per layer."""
    import admm_hls
    from admm_hls.resources import resource_dir

    graph = admm_hls.lower(resource_dir("models") / "lenet5_mnist.pt")
    plan = hw_plan.make_plan(graph, pe=pe, onchip_kb=0)
    assert [l.placement for l in plan.weighted()] == ["blob"] * 4
    x_int = np.random.default_rng(pe).integers(ACT_LO, ACT_HI + 1, size=(3, 1, 28, 28))
    csim_equals_reference(tmp_path, graph, plan, x_int)
    top = (tmp_path / "firmware" / "admm_top.cpp").read_text()
    assert top.count("INTERFACE mode=m_axi") == 4 and top.count("wread_") == 4


# -- LeNet-5 end to end, warnings, a corrupted expectation ------------------------------------------
@pytest.fixture(scope="module")
def lenet_project(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.build_model("lenet5").eval()
    with torch.no_grad():  # ADMM-like pruning of the big layers: they become relative index
        gen = torch.Generator().manual_seed(0)
        for m in (model.conv2, model.fc1):
            m.weight.mul_((torch.rand(m.weight.shape, generator=gen) < 0.08).float())
    x = randn(40, 1, 28, 28, seed=11)
    graph = lower(model, x)
    assert {n.name: n.packed.format for n in graph.nodes_of("conv", "linear")}["fc1"] == "relative"
    plan = make_plan(graph, pe={"fc1": 2, "conv2": 3})
    x_int = quantized(graph, x[:20])
    folder = tmp_path_factory.mktemp("lenet5")
    result = csim_equals_reference(folder, graph, plan, x_int)
    return folder, graph, plan, x_int, result


def test_lenet5_end_to_end(lenet_project):
    folder, graph, plan, x_int, result = lenet_project
    assert result.n == 20 and result.outputs.shape == (20, 10)
    assert sorted(p.name for p in (folder / "firmware" / "kernels").iterdir()) == [
        "conv1.h", "conv2.h", "fc1.h", "fc2.h", "output.h", "pool1.h", "pool2.h", "x.h"]
    again = csim.run_csim(folder, n=5)  # sources unchanged: the build is reused
    assert not again.rebuilt and again.passed and again.outputs.shape == (5, 10)
    np.testing.assert_array_equal(again.outputs, result.outputs[:5])


def test_no_warnings_from_generated_files(lenet_project):
    folder, _, _, _, result = lenet_project
    assert "warning" in result.build_log  # the ap_types headers do warn under -Wextra...
    assert our_warnings(result, folder) == []  # ...our files do not


def test_corrupted_expectation_names_the_first_failing_layer(lenet_project, tmp_path):
    folder, _, _, _, _ = lenet_project
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    layer = bad / "tb" / "data" / "layers" / "pool2.bin"
    data = bytearray(layer.read_bytes())
    data[17] = (data[17] + 1) % 256
    layer.write_bytes(bytes(data))
    result = csim.run_csim(bad)
    assert not result.rebuilt  # same sources: the copied build is reused
    assert not result.passed and result.returncode == 1 and result.mismatches == 1
    assert result.first_failure.startswith("vector 0: first failing layer pool2, element 17: expected "), \
        result.first_failure

    # An output of a later vector: reported by vector and element, the others still pass.
    expected = bad / "tb" / "data" / "expected.bin"
    layer.write_bytes((folder / "tb" / "data" / "layers" / "pool2.bin").read_bytes())
    data = bytearray(expected.read_bytes())
    data[3 * 10 + 4] = (data[3 * 10 + 4] + 1) % 256
    expected.write_bytes(bytes(data))
    result = csim.run_csim(bad)
    assert not result.passed and result.mismatches == 1 and result.returncode == 1
    assert result.first_failure.startswith("vector 3: output element 4: expected "), result.first_failure


# -- the API without a compiler ---------------------------------------------------------------------
def test_rendering_is_deterministic_and_marked():
    graph, x_int = pe_net(seed=13)
    plan = make_plan(graph, pe={"sparse_conv": 2}, blob=("dense_fc",))
    a = render.render_project_sources(graph, plan)
    b = render.render_project_sources(graph, make_plan(graph, pe={"sparse_conv": 2}, blob=("dense_fc",)))
    assert a == b
    assert test_vectors(graph, x_int) == test_vectors(graph, x_int)
    for path, data in a.items():
        if not path.endswith(".bin"):
            assert "admm-hls generated file" in data.decode().splitlines()[0], path
    assert {"firmware/admm_top.cpp", "firmware/admm_top.h", "firmware/types.h", "tb/tb_admm_top.cpp",
            "tb/compat/ap_axi_sdata.h", "firmware/kernels/sparse_conv.h",
            "firmware/weights/sparse_conv_words.inc", "firmware/weights/sparse_conv_cols.inc"} <= set(a)
    assert "firmware/weights/dense_fc_words.inc" not in a  # off-chip: no ROM


def test_bad_plans_are_refused():
    graph, _ = pe_net(seed=14)
    with pytest.raises(UserError, match="no conv or linear layer of that name"):
        make_plan(graph, blob=("nope",))
    with pytest.raises(UserError, match="--pe-layer nope: no layer with PEs of that name"):
        make_plan(graph, pe={"nope": 2})
    with pytest.raises(UserError, match="whole number >= 1"):
        make_plan(graph, default=0)
    with pytest.raises(ValueError, match="collides with generated names"):
        render.render_project_sources(graph, make_plan(graph, top="layer_x"))


def test_missing_tools_are_one_line_user_errors(monkeypatch, tmp_path):
    monkeypatch.delenv(csim.AP_TYPES_ENV, raising=False)
    monkeypatch.setattr(csim.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError) as info:
        csim.find_ap_types()
    assert str(info.value) == ("Xilinx ap_types headers not found: pip install --no-deps hls4ml==1.3.0 "
                               "(or set ADMM_HLS_AP_TYPES to a folder with ap_int.h)")
    monkeypatch.setenv(csim.AP_TYPES_ENV, str(tmp_path))
    with pytest.raises(UserError, match="ap_int.h"):
        csim.find_ap_types()
    monkeypatch.undo()
    monkeypatch.setattr(csim.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install g\\+\\+") as info:
        csim.find_compiler()
    assert "\n" not in str(info.value)
