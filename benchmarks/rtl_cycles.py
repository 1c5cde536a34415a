"""LeNet-5 cycles per inference: the HLS estimate of the hardware plan next to the RTL's measured
cycles, sparse engines vs a dense-engine build, at 1, 4 and 16 PEs.

    python benchmarks/rtl_cycles.py [--sim verilator] [--n 2] [--pe 1 4 16] [--data-dir DIR]

Three builds of the shipped compressed LeNet-5 (models/lenet5_mnist.pt), each at every PE count:

* ``sparse``: the default storage (each layer dense or relative index, fewest bits);
* ``sparse, fillers <= 10%``: ``--max-fillers 10`` (wider index fields, fewer filler cycles);
* ``dense``: ``--format dense``, every weight stored and issued (the dense-engine baseline).

Each design is simulated with cocotb (Verilator by default) on the first N MNIST test images
(``--data-dir`` or ADMM_HLS_DATA; random inputs without them), checked bit-exact against the
reference, and its measured per-layer cycles checked against the plan's cycle model
(``hw.plan``: the same issue cycles the HLS estimate uses). Reported per design: cycles per
inference (all, and the conv/linear layers), cycle reduction vs dense at the same PE count next
to the MAC reduction (dense MACs / nonzero MACs), utilization = nonzero MACs / (PEs x conv/linear
cycles) (one nonzero MAC per PE per cycle is the ideal), and per layer the HLS estimate (issue
cycles + the loop's pipeline depth) next to the RTL's measured cycles. A PE budget of P per layer
is spent as row groups x position bands in lockstep, and the pools split their channels over the
same budget. The RTL runs one layer at a time; the HLS estimate of one image is the longest path
of the DATAFLOW pipeline (here the sum of the layers), and with ap_ctrl_chain a new image starts
every "interval" cycles (the slowest layer). Results: benchmarks/results/rtl_cycles.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VARIANTS = {"sparse": {}, "sparse, fillers <= 10%": {"max_filler_rate": 0.10}, "dense": {"weight_format": "dense"}}
WEIGHTED = ("conv", "linear")


def macs(graph) -> tuple[int, int]:
    """(dense MACs, nonzero MACs) of the conv/linear layers, from the packed codes."""
    from admm_hls.hw.streams import weight_stream

    dense = sparse = 0
    for node in graph.nodes_of(*WEIGHTED):
        positions = node.shape[1] * node.shape[2] if node.op == "conv" else 1
        layer = node.packed.layer
        dense += positions * layer.rows * layer.cols
        sparse += positions * int(weight_stream(node, 8).nonzeros.sum())
    return dense, sparse


def inputs(graph, n: int, data_dir: str | None) -> tuple[np.ndarray, str]:
    from admm_hls import reference

    folder = data_dir or os.environ.get("ADMM_HLS_DATA")
    if folder:
        from admm_hls.datasets import load_mnist

        images = load_mnist(folder, "test").images[:n].numpy()
        return reference.quantize_images(graph, images), f"first {n} MNIST test images"
    rng = np.random.default_rng(0)
    return rng.integers(-128, 128, size=(n, *graph.input_node().shape)).astype(np.int64), f"{n} random inputs"


def measure(variant: str, options: dict, pe: int, args, work: Path, checkpoint: str | Path | None = None) -> dict:
    """Build and simulate one design of ``checkpoint`` (default: the shipped LeNet-5)."""
    from admm_hls.build.project import build
    from admm_hls.ir.lower import lower
    from admm_hls.resources import resource_dir
    from admm_hls.sim.rtlsim import run_rtlsim

    graph = lower(checkpoint or resource_dir("models") / "lenet5_mnist.pt", **options)
    x_int, source = inputs(graph, args.n, args.data_dir)
    folder = work / f"{variant.split(',')[0].replace(' ', '_')}_{len(options)}_pe{pe}"
    t = time.perf_counter()
    project = build(graph, folder, pe=pe, vectors=x_int, vectors_source=source, progress=False, force=True)
    built = time.perf_counter() - t
    result = run_rtlsim(folder, args.sim, n=args.n)
    if not result.passed:
        raise SystemExit(f"{variant} at {pe} PEs: RTL does not match the reference: {result.failures[:3]}")
    model = project.manifest["rtl"]["cycles"]
    measured = result.layer_cycles[0]
    if any(measured[k] != v for k, v in model.items()):
        raise SystemExit(f"{variant} at {pe} PEs: measured cycles {measured} differ from the model {model}")
    hw = {l["name"]: l for l in project.manifest["hardware"]["layers"]}
    weighted = sum(measured[hw[n.name]["ident"]] for n in graph.nodes_of(*WEIGHTED))
    dense_macs, nonzero_macs = macs(graph)
    per_layer = {}
    for node in graph.topo():
        h = hw.get(node.name)
        if h is None or h["kind"] in ("input", "output"):
            continue
        c = measured[h["ident"]]
        row = {"lanes": h["lanes"], "rtl_cycles": c, "hls_estimate": h["cycles"]["hls"], "iterations": h["iterations"]}
        if "groups" in h:
            nz = h["nonzero_macs"]
            row.update({"groups": h["groups"], "bands": len(h["bands"]), "nonzero_macs": nz,
                        "utilization": nz / (h["lanes"] * c), "lockstep_efficiency": h["lockstep_efficiency"],
                        "format": node.packed.format,
                        "index_bits": int(getattr(node.packed.layer, "index_bits", 0) or 0),
                        "fillers": int(getattr(node.packed.layer, "n_fillers", 0) or 0)})
        per_layer[node.name] = row
    totals = project.manifest["totals"]
    return {"variant": variant, "pe": pe, "cycles": int(result.cycles[0]), "weighted_cycles": int(weighted),
            "hls_estimate": totals["cycles_estimate"], "hls_interval": totals["interval_estimate"],
            "layers": per_layer, "load": measured["load"], "send": measured["send"],
            "dense_macs": dense_macs, "nonzero_macs": nonzero_macs,
            "utilization": nonzero_macs / (pe * weighted), "vectors": int(result.n), "inputs": source,
            "build_s": round(built, 2), "sim_s": round(result.seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    ap.add_argument("--n", type=int, default=2, help="test images per design (default 2)")
    ap.add_argument("--pe", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--data-dir", help="MNIST folder (default: $ADMM_HLS_DATA; random inputs without it)")
    ap.add_argument("--out", default=str(HERE / "results" / "rtl_cycles.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtl_cycles_") as tmp:
        for pe in args.pe:
            for variant, options in VARIANTS.items():
                rows.append(measure(variant, options, pe, args, Path(tmp)))
                r = rows[-1]
                print(f"{variant:24s} PE {pe:2d}: RTL {r['cycles']:9,d} cycles ({r['weighted_cycles']:9,d} conv/linear), "
                      f"HLS estimate {r['hls_estimate']:9,d} (interval {r['hls_interval']:,}), "
                      f"utilization {r['utilization']:.1%}  [{r['sim_s']:.1f} s]", flush=True)
    dense = {r["pe"]: r for r in rows if r["variant"] == "dense"}
    print(f"\n{'build':24s} {'PE':>3s} {'cycles':>10s} {'conv/fc':>10s} {'cycle red.':>10s} {'MAC red.':>9s} "
          f"{'ratio':>6s} {'util.':>6s}  per layer utilization")
    for r in rows:
        d = dense[r["pe"]]
        r["cycle_reduction"] = d["weighted_cycles"] / r["weighted_cycles"]
        r["mac_reduction"] = r["dense_macs"] / r["nonzero_macs"]
        r["reduction_ratio"] = r["cycle_reduction"] / r["mac_reduction"]
        layers = " ".join(f"{k} {v['utilization']:.0%}" for k, v in r["layers"].items() if "utilization" in v)
        print(f"{r['variant']:24s} {r['pe']:3d} {r['cycles']:10,d} {r['weighted_cycles']:10,d} "
              f"{r['cycle_reduction']:9.2f}x {r['mac_reduction']:8.2f}x {r['reduction_ratio']:6.2f} "
              f"{r['utilization']:6.1%}  {layers}")
    print("\nper layer, HLS estimate / RTL measured (the same issue cycles; the HLS loops' pipeline depth is an "
          "estimate, the RTL's overhead is exact):")
    for r in rows:
        if r["variant"] != "sparse":
            continue
        print(f"  PE {r['pe']:2d}: " + ", ".join(f"{k} {v['hls_estimate']:,}/{v['rtl_cycles']:,}"
                                                 for k, v in r["layers"].items()))
    base = {r["variant"]: r["hls_estimate"] for r in rows if r["pe"] == 1}
    ratios = {f"{r['variant']}, PE {r['pe']}": r["hls_estimate"] / base[r["variant"]]
              for r in rows if r["pe"] != 1 and r["variant"] in base}
    for k, v in ratios.items():
        print(f"HLS estimate vs PE 1, {k}: {v:.3f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"simulator": args.sim, "rows": rows, "hls_estimate_vs_pe1": ratios}, indent=1,
                              sort_keys=True) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
