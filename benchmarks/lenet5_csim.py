"""Compressed LeNet-5 through the HLS project: g++ csim on the full MNIST test set is bit-exact
with the integer reference, so its accuracy equals the reference's.

    python benchmarks/lenet5_csim.py --data-dir DIR [--checkpoint models/lenet5_mnist.pt] [--n 10000]
                                     [--pe 1] [--onchip-kb 512] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import admm_hls
from admm_hls import reference
from admm_hls.build import build
from admm_hls.datasets import load_mnist


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--checkpoint", default="models/lenet5_mnist.pt")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--pe", type=int, default=1, help="lanes per layer (admm-hls build --pe)")
    ap.add_argument("--onchip-kb", type=float, default=512.0, help="admm-hls build --onchip-kb (0: every layer off-chip)")
    ap.add_argument("--json", default="benchmarks/results/lenet5_csim.json")
    args = ap.parse_args()
    test = load_mnist(args.data_dir, "test").head(args.n)
    labels = test.labels.numpy()
    graph = admm_hls.lower(args.checkpoint)
    x = reference.quantize_images(graph, test.images.numpy())
    t0 = time.perf_counter()
    ref = reference.run(graph, x)
    ref_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        project = build(graph, Path(tmp) / "hls", vectors=x, vectors_source="MNIST test images",
                        progress=False, pe=args.pe, onchip_kb=args.onchip_kb)
        build_s = time.perf_counter() - t0
        result = project.csim()
    exact = bool(result.passed and np.array_equal(result.outputs, ref))
    out = {
        "images": len(labels), "bit_exact": exact, "pe": args.pe, "onchip_kb": args.onchip_kb, "mismatching_vectors": result.mismatches,
        "reference_accuracy": float((ref.argmax(1) == labels).mean()),
        "csim_accuracy": float((result.outputs.argmax(1) == labels).mean()),
        "build_seconds": build_s, "csim_seconds": result.seconds, "reference_seconds": ref_s,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"{out['images']:,} MNIST test images: csim {'bit-exact' if exact else 'MISMATCH'} "
          f"({result.mismatches} mismatching vectors)")
    print(f"accuracy: reference {out['reference_accuracy']:.2%}, C simulation {out['csim_accuracy']:.2%}")
    print(f"build {build_s:.1f}s, csim {result.seconds:.1f}s, reference {ref_s:.1f}s")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
