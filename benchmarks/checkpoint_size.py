"""Checkpoint size on disk, format version 1 (dense) against version 2 (compact), beside the packed
weight data the hardware stores, and the build time from each file.

    python benchmarks/checkpoint_size.py [--keep-file PATH] [--repeat N]

Checkpoints: the shipped LeNet-5 and the AlexNet-size one benchmarks/alexnet_lowering.py makes
(zoo AlexNet, random weights, projected to the ADMM AlexNet keep ratios, 5-bit conv / 3-bit fc
levels). Each is written in both versions from the same in-memory dict. "packed" is
``totals.bits_weight_data`` of ``admm-hls inspect`` (entries, fillers, row pointers, codebooks,
word padding; no biases) in bytes. Build: ``admm-hls build FILE --out DIR --vectors 1`` as a
whole process, best of --repeat. Goals: LeNet-5 v2 under 512 KiB; AlexNet v2 within 3x of packed.
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

from alexnet_lowering import make_checkpoint as make_alexnet  # noqa: E402
from hls_build import whole_process  # noqa: E402


def measure(name: str, source: Path, folder: Path, repeat: int) -> dict:
    from admm_hls.compress.checkpoint import load_checkpoint, save_checkpoint
    from admm_hls.inspect import inspect_graph
    from admm_hls.ir.lower import lower

    ckpt = load_checkpoint(source)
    packed = inspect_graph(lower(ckpt))["totals"]["bits_weight_data"] // 8
    row = {"checkpoint": name, "packed_weight_bytes": packed}
    for version in (1, 2):
        path = folder / f"{name}_v{version}.pt"
        t = time.perf_counter()
        save_checkpoint(ckpt, path, version=version)
        save_s = time.perf_counter() - t
        argv = [sys.executable, "-m", "admm_hls.cli", "build", str(path), "--out", str(folder / f"{name}_v{version}"),
                "--force", "--vectors", "1"]
        build = min((whole_process(argv) for _ in range(repeat)), key=lambda r: r["seconds"])
        row[f"v{version}"] = {"bytes": path.stat().st_size, "save_seconds": save_s, "build_seconds": build["seconds"],
                              "build_peak_mb": build["peak_mb"]}
    row["v2_over_packed"] = row["v2"]["bytes"] / packed
    row["v1_over_v2"] = row["v1"]["bytes"] / row["v2"]["bytes"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-file", help="write/reuse the AlexNet checkpoint here instead of a temporary file")
    ap.add_argument("--repeat", type=int, default=3, help="build from each file this many times, report the best")
    ap.add_argument("--json", default="benchmarks/results/checkpoint_size.json")
    args = ap.parse_args()
    from admm_hls.resources import resource_dir

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        alexnet = Path(args.keep_file or tmp / "alexnet_admm.pt")
        if not alexnet.exists():
            make_alexnet(alexnet)
        rows.append(measure("lenet5", resource_dir("models") / "lenet5_mnist.pt", tmp, args.repeat))
        rows.append(measure("alexnet", alexnet, tmp, args.repeat))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'':8s} {'v1 bytes':>12s} {'v2 bytes':>11s} {'packed':>10s} {'v2/packed':>9s} {'v1/v2':>6s} "
          f"{'build v1 s':>10s} {'build v2 s':>10s}")
    for r in rows:
        print(f"{r['checkpoint']:8s} {r['v1']['bytes']:12,} {r['v2']['bytes']:11,} {r['packed_weight_bytes']:10,} "
              f"{r['v2_over_packed']:9.2f} {r['v1_over_v2']:6.0f} {r['v1']['build_seconds']:10.2f} "
              f"{r['v2']['build_seconds']:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
