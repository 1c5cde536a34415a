"""HLS project build at AlexNet size, and PE load balance.

    python benchmarks/hls_build.py [--keep-file PATH] [--repeat N]

1. Time and peak RSS of `admm-hls build` (lower + pack + plan + render + write) of an AlexNet-size
   checkpoint against a plain torch.load of the same file, each in its own process. The
   checkpoint is made as benchmarks/alexnet_lowering.py makes it (zoo AlexNet, random weights,
   projected to the ADMM AlexNet keep ratios, 5-bit conv / 3-bit fc levels).
2. PE balance: per layer, max/mean nonzeros and max/mean entries (the hardware cost: nonzeros,
   fillers and the per-row overhead) per PE, balanced (LPT) vs round-robin, for LeNet-5 (the
   shipped models/lenet5_mnist.pt if present, else a projected one) and AlexNet at 4 and 16 PEs.
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

def lenet_checkpoint(tmp: Path) -> tuple[Path, str]:
    from admm_hls.resources import resource_dir

    shipped = resource_dir("models") / "lenet5_mnist.pt"
    if shipped.is_file():
        return shipped, "shipped models/lenet5_mnist.pt"
    import torch

    from admm_hls.compress.checkpoint import save_checkpoint
    from admm_hls.compress.oneshot import project_checkpoint

    keep = {"conv1": 0.67, "conv2": 0.12, "fc1": 0.01, "fc2": 0.2}  # ADMM-NN's LeNet-5 ratios
    g = torch.Generator().manual_seed(0)
    path = tmp / "lenet5_projected.pt"
    save_checkpoint(project_checkpoint("lenet5", keep, {k: 3 for k in keep}, torch.randn(8, 1, 28, 28, generator=g)),
                    path)
    return path, "projected LeNet-5 (random weights, ADMM-NN keep ratios, 3-bit)"


def balance(graph, pes: tuple[int, ...]) -> list[dict]:
    from admm_hls.backends.hls.pe import assign_rows, imbalance, pe_loads, row_costs, row_nonzeros

    rows = []
    for node in graph.nodes_of("conv", "linear"):
        cost, nnz = row_costs(node.packed), row_nonzeros(node.packed)
        for p in pes:
            p_eff = min(p, node.packed.layer.rows)
            bal, rr = assign_rows(cost, p_eff, "balanced"), assign_rows(cost, p_eff, "round_robin")
            rows.append({"layer": node.module or node.name, "rows": int(node.packed.layer.rows), "pe": p_eff,
                         "nnz_balanced": imbalance(pe_loads(nnz, bal)), "nnz_round_robin": imbalance(pe_loads(nnz, rr)),
                         "cost_balanced": imbalance(pe_loads(cost, bal)),
                         "cost_round_robin": imbalance(pe_loads(cost, rr))})
    return rows


def print_balance(model: str, rows: list[dict]) -> None:
    print(f"\n{model}: max/mean per PE (1.000 = perfect), balanced vs round-robin")
    print(f"{'layer':14s} {'rows':>5s} {'PE':>3s} {'nnz bal':>8s} {'nnz rr':>8s} {'cost bal':>9s} {'cost rr':>8s}")
    for r in rows:
        print(f"{r['layer']:14s} {r['rows']:5d} {r['pe']:3d} {r['nnz_balanced']:8.3f} {r['nnz_round_robin']:8.3f} "
              f"{r['cost_balanced']:9.3f} {r['cost_round_robin']:8.3f}")


def main() -> int:
    from alexnet_lowering import make_checkpoint, measure

    from admm_hls.ir.lower import lower

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-file", help="write/reuse the AlexNet checkpoint here instead of a temporary file")
    ap.add_argument("--repeat", type=int, default=2, help="measure each side this many times, report the best")
    ap.add_argument("--json", default=str(HERE / "results" / "hls_build.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = Path(args.keep_file or tmp / "alexnet_admm.pt")
        if not path.exists():
            t = time.perf_counter()
            make_checkpoint(path)
            print(f"made {path} in {time.perf_counter() - t:.1f}s")
        size_mb = path.stat().st_size / 2**20
        out = tmp / "alexnet_hls"
        measure(path, "torch.load", out)  # warm the page cache for both sides alike
        load = min((measure(path, "torch.load", out) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        built = min((measure(path, "build", out) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        manifest = json.loads((out / "manifest.json").read_text())
        from admm_hls.sim.csim import run_csim

        csim = run_csim(out)  # one image, fc6/fc7 weights read from the blob
        csim_result = {"passed": csim.passed, "vectors": csim.n, "seconds": csim.seconds,
                       "build_seconds": csim.build_seconds}
        project_mb = sum(f["bytes"] for f in manifest["files"].values()) / 2**20
        blob = manifest["weight_blob"]

        lenet_path, lenet_label = lenet_checkpoint(tmp)
        pes = (4, 16)
        tables = {"lenet5": balance(lower(lenet_path), pes), "alexnet": balance(lower(path), pes)}

    result = {"file_mb": size_mb, "torch_load": load, "build": built, "time_ratio": built["seconds"] / load["seconds"],
              "peak_rss_over_file": built["peak_mb"] / size_mb, "project_mb": project_mb,
              "blob_bytes": blob["bytes"] if blob else 0,
              "blob_layers": [l["name"] for l in manifest["layers"] if l.get("placement") == "blob"],
              "lenet5_checkpoint": lenet_label, "balance": tables, "alexnet_csim": csim_result}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"AlexNet checkpoint: {size_mb:.0f} MiB; project written: {project_mb:.1f} MiB "
          f"(blob {result['blob_bytes'] / 2**20:.1f} MiB: {', '.join(result['blob_layers']) or 'none'})")
    print(f"{'':12s} {'seconds':>8s} {'peak RSS MiB':>13s} {'added MiB':>10s}")
    for label, r in (("torch.load", load), ("admm-hls build", built)):
        print(f"{label:14s} {r['seconds']:8.2f} {r['peak_mb']:13.0f} {r['added_mb']:10.0f}")
    print(f"build / torch.load time: {result['time_ratio']:.1f}x; build peak RSS / file size: "
          f"{result['peak_rss_over_file']:.2f}x")
    print(f"AlexNet csim: {'bit-exact' if csim_result['passed'] else 'MISMATCH'} on {csim_result['vectors']} image, "
          f"{csim_result['seconds']:.1f}s (g++ compile {csim_result['build_seconds']:.1f}s)")
    print_balance(f"LeNet-5 ({lenet_label})", tables["lenet5"])
    print_balance("AlexNet (projected)", tables["alexnet"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
