"""LeNet-5 RTL cycles per inference: sparse engines vs a dense-engine build, at 1, 4 and 16 PEs.

    python benchmarks/rtl_cycles.py [--sim verilator] [--n 2] [--pe 1 4 16] [--data-dir DIR]

Three builds of the shipped compressed LeNet-5 (models/lenet5_mnist.pt), each at every PE count:

* ``sparse``: the default storage (each layer dense or relative index, fewest bits);
* ``sparse, fillers <= 10%``: ``--max-fillers 10`` (wider index fields, fewer filler cycles);
* ``dense``: ``--format dense``, every weight stored and issued (the dense-engine baseline).

Each design is simulated with cocotb (Verilator by default) on the first N MNIST test images
(``--data-dir`` or ADMM_HLS_DATA; random inputs without them), checked bit-exact against the
reference, and its measured per-layer cycles checked against the closed-form model
(``backends.rtl.render.layer_cycles``). Reported per design: cycles per inference (all, and the
conv/linear layers), cycle reduction vs dense at the same PE count next to the MAC reduction
(dense MACs / nonzero MACs), and utilization = nonzero MACs / (PEs x conv/linear cycles): one
nonzero MAC per PE per cycle is the ideal. A PE budget of P per layer is spent as row groups x
position bands (``backends.rtl.plan``), and the max-pools split their channels over the same
budget; the sequencer runs one layer at a time, and the input load (784 cycles) is the same at
every P. Results: benchmarks/results/rtl_cycles.json.
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
    from admm_hls.backends.hls.pe import row_nonzeros

    dense = sparse = 0
    for node in graph.nodes_of(*WEIGHTED):
        positions = node.shape[1] * node.shape[2] if node.op == "conv" else 1
        layer = node.packed.layer
        dense += positions * layer.rows * layer.cols
        sparse += positions * int(row_nonzeros(node.packed).sum())
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


def measure(variant: str, options: dict, pe: int, args, work: Path) -> dict:
    from admm_hls.backends.hls.pe import row_nonzeros
    from admm_hls.backends.hls.project import build
    from admm_hls.backends.rtl.plan import rtl_plan
    from admm_hls.backends.rtl.render import layer_cycles, rtl_names
    from admm_hls.ir.lower import lower
    from admm_hls.resources import resource_dir
    from admm_hls.sim.rtlsim import run_rtlsim

    graph = lower(resource_dir("models") / "lenet5_mnist.pt", **options)
    x_int, source = inputs(graph, args.n, args.data_dir)
    folder = work / f"{variant.split(',')[0]}_{len(options)}_pe{pe}"
    t = time.perf_counter()
    build(graph, folder, pe=pe, vectors=x_int, vectors_source=source, progress=False, force=True)
    built = time.perf_counter() - t
    result = run_rtlsim(folder, args.sim, n=args.n)
    if not result.passed:
        raise SystemExit(f"{variant} at {pe} PEs: RTL does not match the reference: {result.failures[:3]}")
    model = layer_cycles(graph, *rtl_plan(graph, pe=pe))
    measured = result.layer_cycles[0]
    if any(measured[k] != v for k, v in model.items()):
        raise SystemExit(f"{variant} at {pe} PEs: measured cycles {measured} differ from the model {model}")
    names = rtl_names(graph)
    weighted = sum(measured[names[n.name]] for n in graph.nodes_of(*WEIGHTED))
    dense_macs, nonzero_macs = macs(graph)
    per_layer = {}
    for node in graph.nodes_of(*WEIGHTED):
        positions = node.shape[1] * node.shape[2] if node.op == "conv" else 1
        nz = positions * int(row_nonzeros(node.packed).sum())
        c = measured[names[node.name]]
        per_layer[node.name] = {"cycles": c, "nonzero_macs": nz, "utilization": nz / (pe * c),
                                "format": node.packed.format,
                                "index_bits": int(getattr(node.packed.layer, "index_bits", 0) or 0),
                                "fillers": int(getattr(node.packed.layer, "n_fillers", 0) or 0)}
    return {"variant": variant, "pe": pe, "cycles": int(result.cycles[0]), "weighted_cycles": int(weighted),
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
                print(f"{variant:24s} PE {pe:2d}: {r['cycles']:9,d} cycles ({r['weighted_cycles']:9,d} conv/linear), "
                      f"utilization {r['utilization']:.1%}  [{r['sim_s']:.1f} s]", flush=True)
    dense = {r["pe"]: r for r in rows if r["variant"] == "dense"}
    print(f"\n{'build':24s} {'PE':>3s} {'cycles':>10s} {'conv/fc':>10s} {'cycle red.':>10s} {'MAC red.':>9s} "
          f"{'ratio':>6s} {'util.':>6s}  per layer utilization")
    for r in rows:
        d = dense[r["pe"]]
        r["cycle_reduction"] = d["weighted_cycles"] / r["weighted_cycles"]
        r["mac_reduction"] = r["dense_macs"] / r["nonzero_macs"]
        r["reduction_ratio"] = r["cycle_reduction"] / r["mac_reduction"]
        layers = " ".join(f"{k} {v['utilization']:.0%}" for k, v in r["layers"].items())
        print(f"{r['variant']:24s} {r['pe']:3d} {r['cycles']:10,d} {r['weighted_cycles']:10,d} "
              f"{r['cycle_reduction']:9.2f}x {r['mac_reduction']:8.2f}x {r['reduction_ratio']:6.2f} "
              f"{r['utilization']:6.1%}  {layers}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"simulator": args.sim, "rows": rows}, indent=1, sort_keys=True) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
