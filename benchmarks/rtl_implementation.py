"""Engine-level counts and whole-top implementation (xilinx, ecp5) of the shipped LeNet-5 RTL, per PE budget.

    python benchmarks/rtl_implementation.py [--pe 1 4 16] [--jobs 1] [--freq 100] [--seed 1] [--json FILE] [--keep DIR]

For each --pe: builds the project as `admm-hls build --pe N` does (default part), counts every
engine on its own (`admm-hls synth --engines`: synth_xilinx), then implements the whole top
(`admm-hls synth --flow xilinx`: synth_xilinx; `--flow ecp5`: synth_ecp5 and nextpnr-ecp5 on
the smallest LFE5U that holds it, Fmax at the --freq target). One tool process at a time
unless --jobs > 1 (engine level). A flow that fails (e.g. a design larger than the largest ECP5) is
recorded with its error and the rest goes on. Prints the table and writes the figures with
wall times.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from admm_hls.backends.rtl.implement import implement
from admm_hls.backends.rtl.synth import synth_engines
from admm_hls.cli import main as cli
from admm_hls.errors import UserError


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except UserError as exc:  # recorded, so one flow's failure does not lose the others
        out = {"error": str(exc)}
    return out, round(time.perf_counter() - t0, 2)


def run_pe(pe: int, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build LeNet-5 with ``pe`` PEs per layer into ``folder``, then every count and flow."""
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the build's own summary table
        code = cli(["build", "--out", str(folder), "--force", "--pe", str(pe)])
    if code != 0:
        raise SystemExit(code)
    row: dict[str, Any] = {"pe": pe, "build_seconds": round(time.perf_counter() - t0, 2)}
    rtl = folder / "rtl"
    engines, row["engines_seconds"] = _timed(synth_engines, rtl, jobs=args.jobs, progress=False)
    row["engines"] = {"instances": len(engines["instances"]), **engines["totals"]} if "totals" in engines else engines
    for flow in ("xilinx", "ecp5"):
        record, seconds = _timed(implement, rtl, flow, freq_mhz=args.freq, seed=args.seed, progress=False)
        # The flow's own result (not the other flows of the record); wall seconds beside it.
        row[flow] = {k: v for k, v in record.items() if k != "flows"}
        row[f"{flow}_seconds"] = seconds
    return row


def _cell(result: dict[str, Any], key: str, fmt: str = ",") -> str:
    value = result.get(key)
    return "-" if value is None else format(value, fmt)


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ["PE", "eng LUT", "eng FF", "eng DSP", "eng BRAM", "xc LUT", "xc FF", "xc DSP", "xc BRAM",
            "ecp5 LUT4", "ecp5 FF", "ecp5 DSP", "ecp5 EBR", "Fmax MHz", "ecp5 device", "wall s"]
    table, notes = [], []
    for row in rows:
        eng, xc, ecp5 = row["engines"], row["xilinx"], row["ecp5"]
        wall = row["build_seconds"] + row["engines_seconds"] + row["xilinx_seconds"] + row["ecp5_seconds"]
        table.append([str(row["pe"]), _cell(eng, "lut"), _cell(eng, "ff"), _cell(eng, "dsp"), _cell(eng, "bram", "g"),
                      _cell(xc, "lut"), _cell(xc, "ff"), _cell(xc, "dsp"), _cell(xc, "bram", "g"),
                      _cell(ecp5, "lut"), _cell(ecp5, "ff"), _cell(ecp5, "dsp"), _cell(ecp5, "bram", "g"),
                      _cell(ecp5, "fmax_mhz", ".2f"), ecp5.get("device", "-"), f"{wall:.0f}"])
        for name, result in (("engines", eng), ("xilinx", xc), ("ecp5", ecp5)):
            if "error" in result:
                notes.append(f"--pe {row['pe']} {name}: {result['error']}")
        if ecp5.get("critical_path"):
            cp = ecp5["critical_path"]
            notes.append(f"--pe {row['pe']} ecp5 critical path: {cp['from']} -> {cp['to']}, {cp['delay_ns']:.2f} ns")
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 14 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    title = ("LeNet-5 RTL: engines alone (synth_xilinx), whole top synth_xilinx (xc; BRAM in 36 Kb tiles), "
             "whole top on ECP5 (LUT4 sites and EBR after place and route)")
    return "\n".join([title, line(head), "-" * len(line(head)), *(line(r) for r in table), *notes]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pe", type=int, nargs="+", default=[1, 4, 16], help="PE budgets per layer (default 1 4 16)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="engine-level yosys runs at once (default 1: one tool process at a time)")
    ap.add_argument("--freq", type=float, default=100.0, help="ECP5 target clock, MHz (default 100)")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    ap.add_argument("--json", default="benchmarks/results/rtl_implementation.json")
    ap.add_argument("--keep", help="build the projects here (DIR/pe<N>, kept) instead of a temporary folder")
    args = ap.parse_args()
    if any(pe < 1 for pe in args.pe):
        ap.error("--pe values must be >= 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for pe in args.pe:
            rows.append(run_pe(pe, root / f"pe{pe}", args))
            print(f"--pe {pe} done", file=sys.stderr, flush=True)
    summary = {"model": "lenet5 (shipped models/lenet5_mnist.pt)", "jobs": args.jobs, "freq_mhz": args.freq,
               "seed": args.seed, "rows": rows,
               "timing_fields": "build_seconds, engines_seconds, xilinx_seconds, ecp5_seconds and each flow's "
                                "seconds vary from run to run"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(format_rows(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
