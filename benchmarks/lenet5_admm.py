"""LeNet-5 / MNIST: the whole ADMM-NN recipe on the real data, with a magnitude-pruning control.

    python benchmarks/lenet5_admm.py --data-dir DIR --threads 2 --out models/lenet5_mnist.pt

Prints, per stage, top-1 accuracy and its loss against the dense baseline; the overall pruning
ratio; average bits per nonzero; weight-data and overall storage reductions (against 32-bit dense
weights); the control (one-shot magnitude pruning to the same per-layer counts, retrained with
the same epoch budget as ADMM + masked retraining); and wall times. Results also go to JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from admm_hls.compress.checkpoint import save_checkpoint
from admm_hls.compress.pipeline import Compressor
from admm_hls.compress.recipe import load_recipe
from admm_hls.datasets import load_mnist
from admm_hls.ir.lower import lower
from admm_hls.report import graph_report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--recipe", default="lenet5_mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/lenet5_mnist.pt")
    ap.add_argument("--json", default="benchmarks/results/lenet5_admm.json")
    ap.add_argument("--no-control", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    recipe = load_recipe(args.recipe)
    train, test = load_mnist(args.data_dir, "train"), load_mnist(args.data_dir, "test")
    log = lambda line: print(line, flush=True)  # noqa: E731
    times: dict[str, float] = {}
    start = time.perf_counter()

    c = Compressor(recipe, train, test, seed=args.seed, log=log)

    def timed(label, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        times[label] = time.perf_counter() - t0
        return out

    timed("dense", c.train_dense)
    dense_state = c.snapshot()
    timed("admm_prune", c.admm_prune)
    timed("masked_retrain", c.retrain)
    timed("quantize", c.quantize)
    ckpt = timed("calibrate", c.checkpoint)
    save_checkpoint(ckpt, args.out)
    times["recipe_total"] = time.perf_counter() - start

    control = None
    if not args.no_control:
        t0 = time.perf_counter()
        m = Compressor(recipe, train, test, seed=args.seed, log=lambda line: log("control " + line))
        m.model.load_state_dict(dense_state)
        m.accuracy["dense"] = c.accuracy["dense"]
        m.hard_prune("magnitude")
        budget = recipe.prune.admm_iterations * recipe.prune.epochs_per_iteration + recipe.prune.retrain_epochs
        control = {"one_shot": m.accuracy["magnitude"], "retrained": m.retrain(budget, "magnitude-retrained"),
                   "epochs": budget, "pruning_ratio": m.pruning_ratio()}
        times["control"] = time.perf_counter() - t0

    storage = graph_report(lower(ckpt))
    totals = storage["totals"]
    acc = c.accuracy
    result = {
        "recipe": args.recipe, "seed": args.seed, "threads": args.threads,
        "accuracy": acc,
        "pruning_ratio": c.pruning_ratio(),
        "average_bits": c.average_bits(),
        "weight_values_reduction": totals["reduction_values"],
        "weight_data_reduction": totals["reduction_weight_data"],
        "overall_reduction": totals["reduction_overall"],
        "storage": storage,
        "control": control,
        "seconds": times,
        "history": ckpt["history"],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    print("\nLeNet-5 / MNIST, ADMM-NN recipe", args.recipe)
    print(f"{'stage':34s} {'top-1':>8s} {'vs dense':>9s}")
    for label, key in (("dense baseline", "dense"), ("after ADMM pruning (hard prune)", "admm"),
                       ("after masked retraining", "retrained"), ("after ADMM quantization", "quantized")):
        print(f"{label:34s} {acc[key]:8.2%} {acc[key] - acc['dense']:+9.2%}")
    if control:
        print(f"{'control: magnitude one-shot':34s} {control['one_shot']:8.2%} {control['one_shot'] - acc['dense']:+9.2%}")
        print(f"{'control: + retrain (' + str(control['epochs']) + ' epochs)':34s} {control['retrained']:8.2%} "
              f"{control['retrained'] - acc['dense']:+9.2%}")
    print(f"pruning ratio {result['pruning_ratio']:.1f}x, {result['average_bits']:.2f} bits per nonzero")
    print(f"storage vs 32-bit float: weight values {totals['reduction_values']:.0f}x, packed weight data "
          f"{totals['reduction_weight_data']:.0f}x, overall incl. index, fillers, pointers, codebooks, biases "
          f"{totals['reduction_overall']:.0f}x")
    for row in storage["layers"]:
        print(f"  {row['layer']}: {row['reason']}")
    print("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
