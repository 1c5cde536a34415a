"""The ``admm-hls`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError


def _cmd_compress(args: argparse.Namespace) -> None:
    import torch

    from .compress.checkpoint import save_checkpoint
    from .compress.pipeline import Compressor
    from .compress.recipe import load_recipe
    from .datasets import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe or f"{args.model}_{args.dataset}")
    if recipe.model != args.model or recipe.dataset != args.dataset:
        raise UserError(f"recipe is for {recipe.model}/{recipe.dataset}, not {args.model}/{args.dataset}: "
                        "pass a matching --recipe")
    if args.epoch_scale != 1.0:
        recipe = recipe.scaled(args.epoch_scale)
    train = load_dataset(args.dataset, args.data_dir, "train").head(args.limit_train)
    test = load_dataset(args.dataset, args.data_dir, "test").head(args.limit_test)
    compressor = Compressor(recipe, train, test, seed=args.seed, log=lambda line: print(line, flush=True))
    ckpt = compressor.run()
    save_checkpoint(ckpt, args.out)
    print(f"wrote {args.out}: {compressor.pruning_ratio():.1f}x pruned, "
          + ", ".join(f"{k} {v:.2%}" for k, v in ckpt["accuracy"].items()))


def _shipped_lenet5():
    from .resources import resource_dir

    return resource_dir("models") / "lenet5_mnist.pt"


def _cmd_inspect(args: argparse.Namespace) -> None:
    from .inspect import format_inspection, inspect_checkpoint

    report = inspect_checkpoint(args.checkpoint or _shipped_lenet5())
    print(json.dumps(report, indent=2) if args.json else format_inspection(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admm-hls", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="ADMM pruning + quantization of a zoo model")
    p.add_argument("--model", required=True, help="zoo model name (lenet5, alexnet, vgg16, resnet18)")
    p.add_argument("--dataset", required=True, help="dataset name (mnist)")
    p.add_argument("--recipe", help="recipe TOML file or shipped recipe name (default: MODEL_DATASET)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--data-dir", help="dataset folder (default: $ADMM_HLS_DATA)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same threads: same result)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit-train", type=int, help="use only the first N training images (smoke runs)")
    p.add_argument("--limit-test", type=int, help="use only the first N test images (smoke runs)")
    p.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every epoch count (smoke runs)")
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("inspect", help="per-layer report of a compressed checkpoint")
    p.add_argument("checkpoint", nargs="?", help="checkpoint (default: the shipped compressed LeNet-5)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        print(f"admm-hls: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("admm-hls: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
