"""Fault study of the shipped LeNet-5 on the real MNIST test set, with and without the entry code.

    python benchmarks/lenet5_faults.py [--data-dir DIR] [--limit N] [--trials 5]

Runs ``admm-hls faults`` (every target, BER 1e-7 .. 1e-3, 5 seeded trials, ``--ecc``) on all
10,000 test images and writes benchmarks/results/lenet5_faults.json (the command's JSON,
byte-identical on a rerun) and lenet5_faults.png, and, apart (times are not reproducible),
lenet5_faults_time.json: the wall time, and the time per trial that ran the model over the test
set (``model_runs`` in the JSON; the other trials changed no decoded weight).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from admm_hls.cli import main as cli

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="MNIST folder (default: $ADMM_HLS_DATA)")
    ap.add_argument("--limit", type=int, help="first N test images (default: all)")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "lenet5_faults.json"
    argv = ["faults", "--trials", str(args.trials), "--ecc", "--json", str(out),
            "--plot", str(RESULTS / "lenet5_faults.png")]
    argv += ["--data-dir", args.data_dir] if args.data_dir else []
    argv += ["--limit", str(args.limit)] if args.limit else []
    start = time.perf_counter()
    code = cli(argv)
    total = time.perf_counter() - start
    if code:
        sys.exit(code)
    study = json.loads(out.read_text())
    timing = {"images": study["images"], "total_seconds": round(total, 1), "model_runs": study["model_runs"],
              "seconds_per_model_run": round(total / max(1, study["model_runs"]), 2)}
    (RESULTS / "lenet5_faults_time.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(json.dumps(timing, indent=2))


if __name__ == "__main__":
    main()
