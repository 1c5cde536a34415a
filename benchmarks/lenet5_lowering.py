"""Compressed LeNet-5: integer reference vs float accuracy on the full MNIST test set, reference
speed, and the storage table beside ADMM-NN's and Deep Compression's LeNet-5 figures.

    python benchmarks/lenet5_lowering.py --data-dir DIR [--checkpoint models/lenet5_mnist.pt]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from admm_hls import reference
from admm_hls.compress.checkpoint import load_checkpoint, model_from_checkpoint
from admm_hls.compress.training import evaluate
from admm_hls.datasets import load_mnist
from admm_hls.ir.lower import lower
from admm_hls.report import format_report, graph_report

# Published LeNet-5 storage reductions (vs 32-bit dense weights): ADMM-NN (ASPLOS'19) counts the
# weight data; Deep Compression (ICLR'16) counts weights, indices and codebooks.
PUBLISHED = {"ADMM-NN weight data": 1910.0, "Deep Compression overall": 39.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--checkpoint", default="models/lenet5_mnist.pt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/lenet5_lowering.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ckpt = load_checkpoint(args.checkpoint)
    test = load_mnist(args.data_dir, "test")
    float_acc = evaluate(model_from_checkpoint(ckpt), test)

    t0 = time.perf_counter()
    graph = lower(ckpt)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = reference.run(graph, test.images.numpy())
    ref_s = time.perf_counter() - t0
    int_acc = float((logits.argmax(1) == test.labels.numpy()).mean())

    report = graph_report(graph)
    t = report["totals"]
    result = {
        "float_accuracy": float_acc, "integer_accuracy": int_acc, "difference": int_acc - float_acc,
        "lower_seconds": lower_s, "reference_seconds_10k": ref_s, "totals": t,
        "layers": report["layers"], "published": PUBLISHED,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    print(format_report(report))
    print()
    print(f"float compressed model: {float_acc:.2%}; integer reference: {int_acc:.2%} "
          f"({(int_acc - float_acc) * 100:+.2f} points) on {len(test.labels):,} test images")
    print(f"lower+pack {lower_s:.2f}s; reference over 10,000 images {ref_s:.1f}s ({args.threads} threads)")
    print(f"{'LeNet-5 storage reduction':32s} {'weight data':>12s} {'overall':>9s}")
    print(f"{'admm-hls (this checkpoint)':32s} {t['reduction_values']:11.0f}x {t['reduction_overall']:8.0f}x")
    print(f"{'ADMM-NN (published)':32s} {PUBLISHED['ADMM-NN weight data']:11.0f}x {'-':>9s}")
    print(f"{'Deep Compression (published)':32s} {'-':>12s} {PUBLISHED['Deep Compression overall']:8.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
