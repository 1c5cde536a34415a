"""AlexNet-size build as a user runs it, and the lockstep efficiency of the hardware plan.

    python benchmarks/hls_build.py [--keep-file PATH] [--repeat N]

1. ``admm-hls build CHECKPOINT --out DIR`` (lower, pack, plan, render the HLS C++ and the RTL,
   reference test vector, write) as a whole process, against a plain
   ``python -c "import torch; torch.load(CHECKPOINT, weights_only=True)"`` of the same file, also a
   whole process: wall time and peak RSS (each process's own, from the kernel's accounting of
   the one child it waits for). The checkpoint is made as benchmarks/alexnet_lowering.py makes it
   (zoo AlexNet, random weights, projected to the ADMM AlexNet keep ratios, 5-bit conv / 3-bit fc
   levels). Goals: build / load at most 2x in time and 1.5x in peak RSS.
2. C simulation of the AlexNet project (one image; fc6 and fc7 read from the off-chip blob).
3. Lockstep efficiency (real entries / issued entries: the padding the lanes' shared counters
   cost) of LeNet-5 (the shipped checkpoint) and AlexNet at 4 and 16 lanes per layer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHILD = r"""
import resource, subprocess, sys, time, json
t = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
seconds = time.perf_counter() - t
# RUSAGE_CHILDREN: the peak RSS of the one process this one waited for
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "code": code}))
"""


def whole_process(argv: list[str]) -> dict:
    """Wall time and peak RSS of ``argv`` run as its own process (a fresh parent per run, so the
    children's peak is that process's)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], check=True, capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["code"]:
        raise SystemExit(f"{' '.join(argv)} failed with exit status {result['code']}")
    return result


def lockstep(graph, lanes: tuple[int, ...]) -> list[dict]:
    from admm_hls.hw.plan import make_plan

    rows = []
    for pe in lanes:
        plan = make_plan(graph, pe=pe, check_memory=False)
        for layer in plan.weighted():
            s = layer.schedule
            rows.append({"layer": layer.name, "rows": layer.stream.rows, "pe": pe, "groups": s.groups,
                         "bands": len(s.bands), "lockstep_efficiency": layer.lockstep_efficiency})
    return rows


def main() -> int:
    from alexnet_lowering import make_checkpoint

    from admm_hls.ir.lower import lower
    from admm_hls.resources import resource_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-file", help="write/reuse the AlexNet checkpoint here instead of a temporary file")
    ap.add_argument("--repeat", type=int, default=3, help="measure each side this many times, report the best")
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
        load_argv = [sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=True)"]
        build_argv = [str(Path(sys.executable).parent / "admm-hls"), "build", str(path), "--out", str(out), "--force",
                      "--vectors", "1"]
        whole_process(load_argv)  # warm the page cache for both sides alike
        load = min((whole_process(load_argv) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        built = min((whole_process(build_argv) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        load["peak_mb"] = min(whole_process(load_argv)["peak_mb"] for _ in range(args.repeat))
        manifest = json.loads((out / "manifest.json").read_text())
        from admm_hls.sim.csim import run_csim

        csim = run_csim(out)  # one image, fc6/fc7 weights read from the blob
        csim_result = {"passed": csim.passed, "vectors": csim.n, "seconds": csim.seconds,
                       "build_seconds": csim.build_seconds}
        project_mb = sum(f["bytes"] for f in manifest["files"].values()) / 2**20
        blob = manifest["weight_blob"]
        lanes = (4, 16)
        tables = {"lenet5": lockstep(lower(resource_dir("models") / "lenet5_mnist.pt"), lanes),
                  "alexnet": lockstep(lower(path), lanes)}

    result = {"file_mb": size_mb, "torch_load_process": load, "build_process": built,
              "time_ratio": built["seconds"] / load["seconds"], "peak_rss_ratio": built["peak_mb"] / load["peak_mb"],
              "project_mb": project_mb, "blob_bytes": blob["bytes"] if blob else 0,
              "blob_layers": [b["name"] for b in blob["layers"]] if blob else [],
              "memory": {k: manifest["hardware"]["memory"][k] for k in ("bram36", "uram", "fits")},
              "cycles_estimate": manifest["totals"]["cycles_estimate"], "alexnet_csim": csim_result,
              "lockstep": tables}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"AlexNet checkpoint: {size_mb:.0f} MiB; project written: {project_mb:.1f} MiB "
          f"(blob {result['blob_bytes'] / 2**20:.1f} MiB: {', '.join(result['blob_layers']) or 'none'})")
    print(f"{'whole process':24s} {'seconds':>8s} {'peak RSS MiB':>13s}")
    for label, r in (("python -c torch.load", load), ("admm-hls build", built)):
        print(f"{label:24s} {r['seconds']:8.2f} {r['peak_mb']:13.0f}")
    print(f"build / torch.load: time {result['time_ratio']:.2f}x (goal <= 2x), peak RSS {result['peak_rss_ratio']:.2f}x "
          "(goal <= 1.5x)")
    print(f"AlexNet csim: {'bit-exact' if csim_result['passed'] else 'MISMATCH'} on {csim_result['vectors']} image, "
          f"{csim_result['seconds']:.1f}s (g++ compile {csim_result['build_seconds']:.1f}s)")
    for model, rows in tables.items():
        print(f"\n{model}: lockstep efficiency (real entries / issued) per layer")
        for r in rows:
            print(f"  {r['layer']:14s} {r['rows']:5d} rows  --pe {r['pe']:2d}: {r['groups']:2d} groups x {r['bands']} bands "
                  f" {r['lockstep_efficiency']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
