"""LeNet-5 / MNIST: the whole ADMM-NN recipe on the real data, with a magnitude-pruning control.

    python benchmarks/lenet5_admm.py --data-dir DIR --threads 2 --out models/lenet5_mnist.pt

Prints, per stage, top-1 accuracy and its loss against the dense baseline; the overall pruning
ratio; average bits per nonzero; weight-data and overall storage reductions (against 32-bit dense
weights); two controls that start from the same dense model, prune to the same per-layer counts
under the same balance constraint, train for the same epochs with the same distillation and are
quantized by the same stage: one-shot magnitude pruning, and gradual magnitude pruning (cubic
schedule); and wall times (the recipe alone, then each control). Results also go to JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    ap.add_argument("--limit-train", type=int, help="first N training images only (smoke runs)")
    ap.add_argument("--limit-test", type=int, help="first N test images only (smoke runs)")
    ap.add_argument("--variants", nargs="*", default=[], metavar="JSON",
                    help="results of other runs (--json of earlier runs) to place on the accuracy / ratio plot")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plots from --json and --variants")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(Path(args.json).read_text()), [json.loads(Path(v).read_text()) for v in args.variants],
             Path(args.json).parent)
        return 0
    torch.set_num_threads(args.threads)

    recipe = load_recipe(args.recipe)
    train = load_mnist(args.data_dir, "train").head(args.limit_train)
    test = load_mnist(args.data_dir, "test").head(args.limit_test)
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
    timed("admm_prune", c.prune)
    timed("masked_retrain", c.retrain)
    timed("quantize", c.quantize)
    ckpt = timed("calibrate", c.checkpoint)
    save_checkpoint(ckpt, args.out)
    times["recipe_total"] = time.perf_counter() - start

    controls = {}
    p = recipe.prune
    budget = len(p.rounds) * p.admm_iterations * p.epochs_per_iteration + p.retrain_epochs
    for method in ([] if args.no_control else ["magnitude", "gradual"]):
        t0 = time.perf_counter()
        retrain = budget - (p.gradual_epochs if method == "gradual" else 0)
        variant = dataclasses.replace(recipe, prune=dataclasses.replace(p, method=method, retrain_epochs=retrain))
        m = Compressor(variant, train, test, seed=args.seed, log=lambda line, m=method: log(f"control {m}: " + line))
        m.model.load_state_dict(dense_state)
        m.accuracy["dense"] = c.accuracy["dense"]
        m.take_teacher()
        m.prune()
        m.retrain()
        m.quantize()
        controls[method] = {"accuracy": dict(m.accuracy), "epochs": budget, "pruning_ratio": m.pruning_ratio(),
                            "seconds": time.perf_counter() - t0}

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
        "controls": controls,
        "balance_pe": recipe.prune.balance_pe,
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
    for method, ctl in controls.items():
        for stage in (method, "retrained", "quantized"):
            a = ctl["accuracy"][stage]
            label = f"control {method}: " + {"retrained": f"+ retrain ({ctl['epochs']} ep.)"}.get(stage, stage)
            print(f"{label:34s} {a:8.2%} {a - acc['dense']:+9.2%}")
    print(f"pruning ratio {result['pruning_ratio']:.1f}x, {result['average_bits']:.2f} bits per nonzero")
    print(f"storage vs 32-bit float: weight values {totals['reduction_values']:.0f}x, packed weight data "
          f"{totals['reduction_weight_data']:.0f}x, overall incl. index, fillers, pointers, codebooks, biases "
          f"{totals['reduction_overall']:.0f}x")
    for row in storage["layers"]:
        print(f"  {row['layer']}: {row['reason']}")
    print("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    plot(result, [json.loads(Path(v).read_text()) for v in args.variants], Path(args.json).parent)
    return 0


def plot(result: dict, variants: list[dict], folder: Path) -> None:
    """Convergence of the run (holdout accuracy and ||W-Z||/||W|| per ADMM iteration, per layer)
    and final test accuracy against pruning ratio for the run, its controls and other runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    admm = [h for h in result["history"] if "residual" in h]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    steps = range(1, len(admm) + 1)
    top.plot(steps, [100 * h["accuracy"] for h in admm], marker="o")
    top.set_ylabel(f"top-1 on {admm[0].get('split', 'test')} (%)")
    for layer in admm[0]["residual"]:
        bottom.semilogy(steps, [h["residual"][layer] for h in admm], marker=".", label=layer)
    bottom.set_ylabel("||W - Z|| / ||W||")
    bottom.set_xlabel("ADMM iteration")
    bottom.legend()
    for ax in (top, bottom):
        for i in range(1, len(admm)):
            if admm[i]["stage"] != admm[i - 1]["stage"]:
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls="--")
    top.set_title("LeNet-5 / MNIST: ADMM pruning rounds, then ADMM quantization")
    fig.tight_layout()
    fig.savefig(folder / "lenet5_admm_convergence.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(result["recipe"], result["pruning_ratio"], result["accuracy"]["quantized"])]
    points += [(f"control: {m}", c["pruning_ratio"], c["accuracy"]["quantized"]) for m, c in result["controls"].items()]
    points += [(v["recipe"], v["pruning_ratio"], v["accuracy"]["quantized"]) for v in variants]
    for label, ratio, acc in points:
        ax.scatter(ratio, 100 * acc)
        ax.annotate(Path(label).stem if label.endswith(".toml") else label, (ratio, 100 * acc), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.axhline(100 * (result["accuracy"]["dense"] - 0.002), color="grey", ls="--", lw=0.8, label="dense - 0.2 points")
    ax.set_xscale("log")
    ax.set_xlabel("pruning ratio (dense weights / nonzeros)")
    ax.set_ylabel("test top-1 after 3-bit quantization (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "lenet5_admm_variants.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
