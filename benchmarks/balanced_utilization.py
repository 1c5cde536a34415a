"""PE utilization of balanced vs unbalanced pruning, measured in the RTL.

    python benchmarks/balanced_utilization.py --balanced B.pt --unbalanced U.pt [--pe N] [--sim verilator]

Both checkpoints hold the same per-layer nonzero counts; B was pruned with ``balance_pe = N``
(every row of a lockstep slot holds the same count), U without. Each is built at N PEs with its
default storage (B: no fillers, as ``build`` does for a balanced checkpoint; U: fewest bits), B
with every layer relative-index (``--format relative``: a layer that stores fewer bits dense, such
as a 60%-dense conv1, issues every weight, zeros included), and U with ``--max-fillers 0``, so
the table separates what balancing buys from what dropping the fillers buys. Every design is simulated with cocotb on the first MNIST test images, checked
bit-exact against the reference and against the plan's cycle model (``rtl_cycles.measure``).
Per conv / linear layer: utilization = nonzero MACs / (PEs x measured cycles). Also the test
accuracy of each checkpoint, and the packed weight bits. Results:
benchmarks/results/balanced_utilization.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rtl_cycles import measure  # noqa: E402


def main() -> None:
    import torch

    from admm_hls.ir.lower import lower
    from admm_hls.report import graph_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--balanced", required=True, help="checkpoint pruned with balance_pe")
    ap.add_argument("--unbalanced", required=True, help="checkpoint of the same counts without balance_pe")
    ap.add_argument("--pe", type=int, help="PEs per layer (default: the balanced checkpoint's balance_pe)")
    ap.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    ap.add_argument("--n", type=int, default=1, help="test images per design (default 1)")
    ap.add_argument("--data-dir", help="MNIST folder (default: $ADMM_HLS_DATA; random inputs without it)")
    ap.add_argument("--out", default=str(HERE / "results" / "balanced_utilization.json"))
    args = ap.parse_args()
    pe = args.pe or int(torch.load(args.balanced, weights_only=True, mmap=True)["balance_pe"])
    designs = [("balanced", args.balanced, {}),
               ("balanced, relative", args.balanced, {"weight_format": "relative"}),
               ("unbalanced", args.unbalanced, {}),
               ("unbalanced, no fillers", args.unbalanced, {"max_filler_rate": 0.0})]
    rows = []
    with tempfile.TemporaryDirectory(prefix="balanced_") as tmp:
        for label, checkpoint, options in designs:
            row = measure(label, options, pe, args, Path(tmp), checkpoint=checkpoint)
            ckpt = torch.load(checkpoint, weights_only=True, mmap=True)
            row["accuracy"] = ckpt["accuracy"]["quantized"]
            row["weight_bits"] = graph_report(lower(checkpoint, **options))["totals"]["bits_weight_data"]
            rows.append(row)
    weighted = [n for n, r in rows[0]["layers"].items() if "utilization" in r]
    print(f"LeNet-5 at {pe} PEs per layer, RTL ({args.sim}) cycles, utilization = nonzero MACs / (PEs x cycles)")
    print(f"{'design':24s} {'test top-1':>10s} {'weight bits':>11s} " + " ".join(f"{n:>15s}" for n in weighted)
          + f" {'conv/fc total':>15s}")
    for r in rows:
        cells = " ".join(f"{r['layers'][n]['rtl_cycles']:7,d} {r['layers'][n]['utilization']:6.1%}" for n in weighted)
        print(f"{r['variant']:24s} {r['accuracy']:10.2%} {r['weight_bits']:11,d} {cells} "
              f"{r['weighted_cycles']:7,d} {r['utilization']:6.1%}")
    Path(args.out).write_text(json.dumps({"pe": pe, "designs": rows}, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
