"""LeNet-5 in RTL: single-image latency and steady-state throughput, with the layers overlapped
across images (the default top) and with one image at a time (OVERLAP = 0), and the same with
every weighted layer's words off-chip over AXI (--onchip-kb 0).

    python benchmarks/rtl_overlap.py [--pe 4] [--n 10] [--sim verilator] [--data-dir DIR]

Each design is the shipped compressed LeNet-5 built as `admm-hls build --pe P` does, simulated
with cocotb on the first N MNIST test images (``--data-dir`` or ADMM_HLS_DATA; random inputs
without them), bit-exact against the reference twice: one image at a time (``test_vectors``:
its latency, from the first input value to the last output) and all N back to back
(``test_images_in_flight``: the cycles between successive results). Next to them the plan's
cycle model: latency = the longest path of stages, interval = the slowest stage. Results:
benchmarks/results/rtl_overlap.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rtl_cycles import inputs  # noqa: E402  (the MNIST-or-random test images of the cycle benchmark)


def measure(pe: int, onchip_kb: float, overlap: bool, args, work: Path) -> dict:
    from admm_hls.build.project import build
    from admm_hls.ir.lower import lower
    from admm_hls.resources import resource_dir
    from admm_hls.sim.rtlsim import run_rtlsim

    graph = lower(resource_dir("models") / "lenet5_mnist.pt")
    x_int, source = inputs(graph, args.n, args.data_dir)
    folder = work / f"pe{pe}_kb{onchip_kb:g}"
    if not folder.exists():
        build(graph, folder, pe=pe, onchip_kb=onchip_kb, vectors=x_int, vectors_source=source, progress=False)
    plan = json.loads((folder / "manifest.json").read_text())["rtl"]
    t = time.perf_counter()
    result = run_rtlsim(folder, args.sim, overlap=overlap)
    seconds = time.perf_counter() - t
    if not result.passed:
        raise SystemExit(f"pe {pe}, onchip-kb {onchip_kb:g}, overlap {overlap}: {result.failures[:2]}")
    interval = result.interval[-1] if result.interval else None
    return {"pe": pe, "onchip_kb": onchip_kb, "weights": plan["weights"], "overlap": overlap, "images": result.n,
            "inputs": source, "bit_exact": True, "latency_cycles": result.cycles[0],
            "interval_cycles": interval, "intervals": result.interval, "plan_latency": plan["latency"],
            "plan_interval": plan["interval"], "layer_cycles": result.layer_cycles[0],
            "speedup_vs_one_at_a_time": None, "seconds": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pe", type=int, default=4)
    ap.add_argument("--n", type=int, default=10, help="images (default 10)")
    ap.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=str(HERE / "results" / "rtl_overlap.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for onchip_kb in (512.0, 0.0):
            pair = [measure(args.pe, onchip_kb, overlap, args, Path(tmp)) for overlap in (True, False)]
            pair[0]["speedup_vs_one_at_a_time"] = round(pair[1]["interval_cycles"] / pair[0]["interval_cycles"], 3)
            rows += pair
    print(f"LeNet-5 at --pe {args.pe}, {rows[0]['images']} images ({rows[0]['inputs']}), {args.sim}, bit-exact")
    print(f"{'weights':8s} {'overlap':8s} {'latency':>9s} {'plan':>9s} {'interval':>9s} {'plan':>9s} {'speedup':>8s}")
    for r in rows:
        print(f"{r['weights']:8s} {str(r['overlap']):8s} {r['latency_cycles']:9,d} {r['plan_latency']:9,d} "
              f"{r['interval_cycles']:9,d} {r['plan_interval']:9,d} "
              f"{'' if r['speedup_vs_one_at_a_time'] is None else f'{r['speedup_vs_one_at_a_time']:.2f}x':>8s}")
    Path(args.json).write_text(json.dumps({"model": "lenet5_mnist", "simulator": args.sim, "rows": rows}, indent=1)
                               + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
