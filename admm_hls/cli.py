"""The ``admm-hls`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError


def _cmd_compress(args: argparse.Namespace) -> None:
    import dataclasses

    import torch

    from .compress import distributed
    from .compress.pipeline import Compressor
    from .compress.recipe import select_recipe, with_overrides
    from .model_source import from_spec, parse_input_shape, parse_kwargs
    from .zoo import available_models

    # Every option is checked before the (possibly long) data loading.
    kwargs = parse_kwargs(args.model_kwargs) if args.model_kwargs is not None else {}
    shape = parse_input_shape(args.input_shape) if args.input_shape is not None else None
    for option, value, low in (("--workers", args.workers, 0), ("--input-size", args.input_size, 1),
                               ("--limit-train", args.limit_train, 1), ("--limit-test", args.limit_test, 1)):
        if value is not None and value < low:
            raise UserError(f"{option} must be >= {low}, got {value}")
    if not args.epoch_scale > 0:
        raise UserError(f"--epoch-scale must be > 0, got {args.epoch_scale:g}")
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = select_recipe(args.recipe, args.model, args.dataset, zoo_model=args.model in available_models())
    recipe = dataclasses.replace(recipe, model_kwargs={**recipe.model_kwargs, **kwargs},
                                 input_shape=shape if shape is not None else recipe.input_shape)
    recipe = with_overrides(recipe, target_ratio=args.target_ratio, target_mode=args.target_mode, bits=args.bits)
    if args.epoch_scale != 1.0:
        recipe = recipe.scaled(args.epoch_scale)
    # The class and its kwargs are checked now (the user named it: importing it is allowed);
    # the Compressor builds it again from the same cached import.
    shape = recipe.input_shape or from_spec(recipe.model, recipe.model_kwargs).default_input_shape()
    train = _compress_data(args, shape, "train", args.limit_train)
    test = _compress_data(args, shape, "test", args.limit_test)
    # One process, or one of several under torchrun: each trains its share, rank 0 alone logs
    # and writes the checkpoint once the ranks have checked that they agree.
    with distributed.session(args.device) as ctx:
        log = distributed.main_only(lambda line: print(line, flush=True))
        compressor = Compressor(recipe, train, test, seed=args.seed, log=log, init=args.init, device=ctx.device,
                                workers=args.workers)
        ckpt = compressor.run()
        distributed.save_agreed(ckpt, args.out, log)
        log(f"wrote {args.out}: {compressor.pruning_ratio():.1f}x pruned, "
            + ", ".join(f"{k} {v:.2%}" for k, v in ckpt["accuracy"].items()))


def _compress_data(args: argparse.Namespace, shape: tuple[int, ...] | None, split: str, limit: int | None):
    """One split of the compress command's data set, cut to its first ``limit`` items. An image
    folder is read at the model's input ``shape``: its channels, and its size unless --input-size."""
    from torch.utils.data import Subset

    from .datasets import Split, load_dataset

    size, channels = args.input_size, None
    if args.dataset == "imagefolder":
        if shape and len(shape) == 3:
            channels = shape[0]
            size = size or (shape[1] if shape[1] == shape[2] else None)
    data = load_dataset(args.dataset, args.data_dir, split, input_size=size, channels=channels)
    if limit is None:
        return data
    return data.head(limit) if isinstance(data, Split) else Subset(data, range(min(limit, len(data))))


def _shipped_lenet5():
    from .resources import resource_dir

    return resource_dir("models") / "lenet5_mnist.pt"


CALIBRATION_IMAGES = 1024
WEIGHT_FORMATS = ("auto", "dense", "relative")


def _add_lowering_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bits", type=int, default=8,
                   help="weight bits for layers without ADMM levels (post-training quantized; default 8)")
    p.add_argument("--act-bits", type=int, default=8, help="activation bits (default 8)")
    p.add_argument("--acc-bits", type=int, default=32, help="accumulator bits (default 32)")
    p.add_argument("--format", choices=WEIGHT_FORMATS, default="auto", dest="weight_format",
                   help="weight storage per layer: the smaller of dense and relative index (auto, default), or "
                        "every layer dense (the dense-engine baseline) or relative index")
    p.add_argument("--max-fillers", type=float, metavar="PCT",
                   help="cap relative-index fillers at PCT%% of a layer's entries (each filler costs an engine "
                        "cycle): the index field widens until the cap holds (default: no cap, fewest bits; 0 for "
                        "a checkpoint pruned to balance its PEs)")
    p.add_argument("--calibrate", metavar="DATASET",
                   help=f"measure activation ranges on the first {CALIBRATION_IMAGES} training images of DATASET "
                        "(from --data-dir) instead of the checkpoint's")
    p.add_argument("--data-dir", help="dataset folder (default: $ADMM_HLS_DATA)")
    p.add_argument("--requantize", action="store_true",
                   help="re-quantize post-training at --bits every layer whose stored codebook does not match its "
                        "weights (default: refuse such a checkpoint)")
    p.add_argument("--model", metavar="SPEC",
                   help="the model class a checkpoint of a non-zoo architecture needs, as pkg.module:Class or "
                        "file.py:Class")
    p.add_argument("--trust-model-code", action="store_true",
                   help="import the model class the checkpoint names; only for checkpoints you trust")


def _lower(args: argparse.Namespace, checkpoint=None):
    """The checkpoint named on the command line (default: the shipped LeNet-5), lowered;
    ``checkpoint``: that checkpoint already loaded, so it is not read twice."""
    from .ir.lower import lower

    calibrate = None
    if args.calibrate:
        from .datasets import load_dataset

        calibrate = load_dataset(args.calibrate, args.data_dir, "train").head(CALIBRATION_IMAGES).images
    return lower(checkpoint or args.checkpoint or _shipped_lenet5(), calibrate=calibrate, act_bits=args.act_bits,
                 weight_bits=args.bits, acc_bits=args.acc_bits, weight_format=args.weight_format,
                 max_filler_rate=_filler_rate(args.max_fillers), requantize=args.requantize, model=args.model,
                 trust_model_code=args.trust_model_code)


def _filler_rate(pct: float | None) -> float | None:
    if pct is None:
        return None
    if not 0 <= pct < 100:
        raise UserError(f"--max-fillers {pct:g} is not a percentage in [0, 100)")
    return pct / 100


def _cmd_inspect(args: argparse.Namespace) -> None:
    from .inspect import format_inspection, inspect_graph

    report = inspect_graph(_lower(args), ecc=args.ecc)  # one load, one validation
    print(json.dumps(report, indent=2) if args.json else format_inspection(report))


def _parse_pe_layers(items: list[str] | None) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, sep, count = item.partition("=")
        if not sep or not name or not count.strip().isdigit() or int(count) < 1:
            raise UserError(f"--pe-layer {item!r}: expected NAME=N with N >= 1, e.g. --pe-layer fc1=4")
        out[name] = int(count)
    return out


def _build_vectors(graph, args: argparse.Namespace):
    """(inputs, label): the first N MNIST test images when the model is an MNIST model and a data
    folder is given (--data-dir or $ADMM_HLS_DATA), else None (deterministic random integers)."""
    import os

    from .datasets import DATA_ENV, load_dataset
    from .reference import quantize_images

    dataset = (graph.meta.get("dataset") or {}).get("name")
    if dataset != "mnist" or not (args.data_dir or os.environ.get(DATA_ENV)):
        return None, None
    images = load_dataset("mnist", args.data_dir, "test").head(args.vectors).images.numpy()
    return quantize_images(graph, images), f"MNIST test images 0..{len(images) - 1}"


def _cmd_build(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .build.project import build, check_out_dir, format_summary

    if args.vectors < 1:
        raise UserError(f"--vectors must be >= 1, got {args.vectors}")
    pe_layers = _parse_pe_layers(args.pe_layer)
    check_out_dir(Path(args.out), args.force)  # before the (possibly long) lowering
    graph = _lower(args)
    vectors, source = _build_vectors(graph, args)
    project = build(graph, args.out, pe=args.pe, pe_layers=pe_layers, onchip_kb=args.onchip_kb, part=args.part,
                    clock_ns=args.clock, top=args.top, force=args.force, vectors=vectors, n_vectors=args.vectors,
                    vectors_source=source, check_memory=not args.ignore_memory, ecc=args.ecc)
    print(format_summary(project.manifest))
    print(f"wrote {project.path}")


def _cmd_csim(args: argparse.Namespace) -> None:
    from .build.project import describe_failure, open_project

    result = open_project(args.dir).csim(n=args.n)
    status = "PASS" if result.passed else "FAIL"
    print(f"csim {status}: {result.n} vectors, {result.mismatches} mismatching outputs, {result.seconds:.2f} s")
    if not result.passed:
        print(f"first failure: {describe_failure(result.first_failure)}")
        sys.exit(1)


def _rtl_project(folder: str):
    """(project, its manifest's "rtl" entry) of a built project that has RTL; else a UserError."""
    from .build.project import open_project

    project = open_project(folder)
    rtl = project.manifest.get("rtl", {})
    if not rtl.get("written"):
        raise UserError(f"{folder} has no RTL: {rtl.get('reason', 'built without the RTL backend')}")
    return project, rtl


def _cmd_rtlsim(args: argparse.Namespace) -> None:
    from .sim.rtlsim import run_rtlsim

    project, rtl = _rtl_project(args.dir)
    result = run_rtlsim(project.path, args.simulator, n=args.n, waves=args.waves, verbose=args.verbose,
                        overlap=not args.no_overlap)
    status = "PASS" if result.passed else "FAIL"
    print(f"rtlsim {status} ({args.simulator}): {result.n} vectors, {result.mismatches} mismatching outputs, "
          f"{result.seconds:.1f} s")
    if result.layer_cycles:
        # Ideal: one nonzero MAC per PE per cycle, PEs = row groups x position bands.
        planned = rtl.get("layers", {})
        pes = {ident: p["pes"] for ident, p in planned.items()}
        ideal = {ident: p["ideal_cycles"] for ident, p in planned.items()}
        cycles = result.layer_cycles[0]
        print(f"{'layer':12s} {'PEs':>4s} {'cycles':>10s} {'ideal':>10s} {'utilization':>11s}")
        for name, count in cycles.items():
            if name in ideal:
                print(f"{name:12s} {pes.get(name, 1):4d} {count:10,d} {ideal[name]:10,d} "
                      f"{ideal[name] / max(1, count):11.1%}")
            else:
                print(f"{name:12s} {'':4s} {count:10,d}")
        print(f"{'total':12s} {'':4s} {result.cycles[0]:10,d} {sum(ideal.values()):10,d} "
              f"{sum(ideal.values()) / max(1, result.cycles[0]):11.1%}")
        print(f"latency: {result.cycles[0]:,d} cycles for one image (plan: {rtl.get('latency', 0):,d})")
    if result.interval:
        # steady state: the last interval, once the pipeline of stages is full
        print(f"throughput: one result every {result.interval[-1]:,d} cycles with {result.n} images in flight "
              f"(plan: {rtl.get('interval', 0):,d}, the slowest stage)")
    for line in result.waves:
        print(f"waves: {line}")
    if not result.passed:
        print("first failure: " + (result.failures[0] if result.failures else "see the cocotb results"))
        for line in result.logs:
            print(f"log: {line}")
        sys.exit(1)


def _cmd_synth(args: argparse.Namespace) -> None:
    from pathlib import Path

    project, _ = _rtl_project(args.dir)
    rtl = Path(args.dir) / "rtl"
    if args.engines:
        _synth_engines(args, project, rtl)
        return
    from .backends.rtl.implement import format_implementation, implement, load_design

    flow = args.flow or "xilinx"
    if args.jobs is not None:
        raise UserError("--jobs applies to --engines (one yosys run per engine); the whole top is one run")
    pnr_options = (("--device", args.device), ("--freq", args.freq), ("--seed", args.seed))
    if flow == "xilinx":
        given = [option for option, value in pnr_options if value is not None]
        if given:
            raise UserError(f"{given[0]} applies to --flow ecp5 (place and route); --flow xilinx only synthesizes")
    elif args.family is not None:
        raise UserError("--family applies to --flow xilinx and --engines (synth_xilinx)")
    load_design(rtl)  # bad input fails before the (long) run
    record = implement(rtl, flow, device=args.device, family=args.family, part=project.manifest.get("part"),
                       freq_mhz=args.freq, seed=1 if args.seed is None else args.seed, progress=not args.json)
    if args.json:
        print(json.dumps(record, indent=2, sort_keys=True))
    else:
        print(format_implementation(record), end="")


def _synth_engines(args: argparse.Namespace, project, rtl) -> None:
    """``synth --engines``: every engine instance on its own, recorded in the manifest."""
    from .backends.rtl.synth import format_table, load_engines, synth_engines
    from .build.project import record_resources

    given = [option for option, value in (("--device", args.device), ("--freq", args.freq), ("--seed", args.seed))
             if value is not None]
    if given:
        raise UserError(f"{given[0]} applies to --flow ecp5, not --engines")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    load_engines(rtl)  # bad input fails before the (long) synthesis
    result = synth_engines(rtl, family=args.family, part=project.manifest.get("part"), jobs=args.jobs,
                           progress=not args.json)
    record_resources(project.path, result)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_table(result), end="")


def _cmd_faults(args: argparse.Namespace) -> None:
    import time
    from pathlib import Path

    from tqdm import tqdm

    from .datasets import load_dataset
    from .faults.study import fault_study, plot_study
    from .jsonio import dump_json, replace_file
    from .reference import quantize_images

    bad = [b for b in args.ber if not 0 <= b <= 1]
    if bad:
        raise UserError(f"--ber {bad[0]:g} is not a bit-error rate: give rates in [0, 1], e.g. --ber 1e-6 1e-4")
    if args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise UserError(f"{option} {path}: its folder does not exist; create it or write elsewhere")
    graph = _lower(args)
    test = load_dataset(args.dataset, args.data_dir, "test").head(args.limit)
    x = quantize_images(graph, test.images.numpy())
    if x.shape[1:] != tuple(graph.input_node().shape):
        raise UserError(f"{args.dataset} images are {tuple(x.shape[1:])}, the model takes "
                        f"{tuple(graph.input_node().shape)}: pass the dataset the model was trained on")
    targets = list(dict.fromkeys(args.target))
    points = len(targets) * len(args.ber) * args.trials * (2 if args.ecc else 1)
    start = time.perf_counter()
    with tqdm(total=points, desc="admm-hls faults", unit="trial", disable=None, leave=False) as bar:
        study = fault_study(graph, x, test.labels.numpy(), bers=args.ber, targets=targets, trials=args.trials,
                            seed=args.seed, pe=args.pe, ecc=args.ecc, bar=bar)
    seconds = time.perf_counter() - start
    print(f"baseline accuracy {study['baseline_accuracy']:.2%} on {study['images']} images, {study['pe']} PEs")
    print(f"{'target':<13} {'BER':>8} {'ECC':>4}  {'mean':>7} {'min':>7} {'max':>7}")
    for r in study["results"]:
        print(f"{r['target']:<13} {r['ber']:>8.0e} {('yes' if r.get('ecc') else 'no'):>4}  "
              f"{r['accuracy_mean']:>7.2%} {r['accuracy_min']:>7.2%} {r['accuracy_max']:>7.2%}")
    if args.ecc:
        e = study["ecc"]
        print(f"ECC: {e['check_bits']:,} check bits; weight words {e['weight_word_bits']:,} -> "
              f"{e['weight_word_bits_ecc']:,} bits (+{e['overhead']:.1%})")
    print(f"{points} trials in {seconds:.1f} s ({seconds / points:.2f} s per trial of {study['images']} images)")
    if args.json:
        replace_file(args.json, dump_json(study))
        print(f"wrote {args.json}")
    if args.plot:
        plot_study(study, args.plot)
        print(f"wrote {args.plot}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admm-hls", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="ADMM pruning + quantization of a zoo model or your own model class")
    p.add_argument("--model", required=True,
                   help="zoo model name (lenet5, alexnet, vgg16, resnet18) or your model class as pkg.module:Class "
                        "or path/to/file.py:Class (imported: name only code you trust)")
    p.add_argument("--model-kwargs", metavar="JSON",
                   help="keyword arguments of the model's constructor as a JSON object, e.g. '{\"classes\": 10}'")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="the input one sample has, without the batch (default: the model's INPUT_SHAPE)")
    p.add_argument("--dataset", required=True, choices=("mnist", "imagefolder"),
                   help="mnist (the IDX files) or imagefolder (DIR/train/CLASS/*.png|jpg and DIR/val/...)")
    p.add_argument("--data-dir", help="dataset folder (default: $ADMM_HLS_DATA)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="imagefolder: images are cropped to N x N (default: the dataset's)")
    p.add_argument("--device", default="auto",
                   help="where training runs: auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0,
                   help="data-loading processes for a dataset read from files (default 0: in this process)")
    p.add_argument("--init", metavar="FILE",
                   help="start from these dense weights (a state_dict saved with torch.save) instead of training "
                        "the dense model: the dense stage only measures their accuracy")
    p.add_argument("--recipe",
                   help="recipe TOML file or shipped recipe name (default: MODEL_DATASET if shipped, else generic)")
    p.add_argument("--target-ratio", type=float, metavar="R",
                   help="prune to R dense weights per kept weight overall, spread over the layers by the "
                        "hardware-aware allocator; replaces the recipe's per-layer keep ratios")
    p.add_argument("--target-mode", choices=("storage", "computation"),
                   help="what the allocator saves first: weight storage (large layers pruned harder) or computation "
                        "(conv layers, whose weights cost the most MACs, pruned harder)")
    p.add_argument("--bits", type=int, metavar="B",
                   help="weight bits of every layer without its own in the recipe (2..8; sets quantize.bits)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same threads: same result)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit-train", type=int, help="use only the first N training images (smoke runs)")
    p.add_argument("--limit-test", type=int, help="use only the first N test images (smoke runs)")
    p.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every epoch count (smoke runs)")
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("inspect", help="per-layer report of a compressed checkpoint")
    p.add_argument("checkpoint", nargs="?", help="checkpoint (default: the shipped compressed LeNet-5)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--ecc", action="store_true",
                   help="also count the bits of the single-error-correcting entry code (build --ecc)")
    _add_lowering_options(p)
    p.set_defaults(func=_cmd_inspect)

    from .build.vectors import DEFAULT_VECTORS
    from .hw.plan import DEFAULT_PART

    p = sub.add_parser("build", help="Vitis HLS project and RTL of one hardware plan (C++, Verilog, test benches, "
                                     "tcl/cfg, manifest) of a checkpoint")
    p.add_argument("checkpoint", nargs="?", help="checkpoint (default: the shipped compressed LeNet-5)")
    p.add_argument("--out", required=True, help="project folder to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.add_argument("--pe", type=int, default=None,
                   help="parallel lanes (processing elements) per layer, the same in the HLS C++ and the RTL: a "
                        "conv/fc layer spends them as row groups x output-row bands in lockstep, a pool or "
                        "element-wise layer as channel ranges (default: the count the checkpoint was pruned to "
                        "balance, else 1)")
    p.add_argument("--pe-layer", action="append", metavar="NAME=N",
                   help="lanes for one layer (node name or module path), repeatable")
    p.add_argument("--onchip-kb", type=float, default=512.0,
                   help="a layer with more packed weight KiB reads them off-chip through its own m_axi port "
                        "(default 512; 0: every conv/fc layer off-chip)")
    p.add_argument("--ignore-memory", action="store_true",
                   help="build even when the design needs more on-chip memory than the part has")
    p.add_argument("--ecc", action="store_true",
                   help="protect every weight-stream entry with a single-error-correcting Hamming code that the "
                        "lanes decode: a flipped index bit would otherwise shift the rest of its row (see "
                        "'admm-hls faults'); costs check bits per entry ('inspect --ecc' counts them)")
    p.add_argument("--part", default=DEFAULT_PART, help=f"FPGA part (default {DEFAULT_PART})")
    p.add_argument("--clock", type=float, default=5.0, help="clock period in ns (default 5)")
    p.add_argument("--top", default="admm_top", help="top function name (default admm_top)")
    p.add_argument("--vectors", type=int, default=DEFAULT_VECTORS,
                   help=f"test vectors in tb/data: the first N MNIST test images for an MNIST model when a data "
                        f"folder is given, else deterministic random inputs (default {DEFAULT_VECTORS})")
    _add_lowering_options(p)
    p.set_defaults(func=_cmd_build)

    from .faults.memories import TARGETS
    from .faults.study import DEFAULT_BERS

    p = sub.add_parser("faults", help="bit-flip fault study: accuracy of the exact hardware reference on the test set "
                                      "with flips in the memories the hardware reads")
    p.add_argument("checkpoint", nargs="?", help="checkpoint (default: the shipped compressed LeNet-5)")
    p.add_argument("--dataset", default="mnist", help="labelled test set (default mnist, from --data-dir)")
    p.add_argument("--ber", type=float, nargs="+", default=list(DEFAULT_BERS), metavar="RATE",
                   help="bit-error rates, each bit flipping independently (default: 1e-7 .. 1e-3; 0 reproduces "
                        "the fault-free accuracy)")
    p.add_argument("--target", nargs="+", choices=TARGETS, default=list(TARGETS),
                   help="memories to flip: the weight streams' code bits (values) or gap bits (indices), the row "
                        "tables' entry counts (row-pointers), the codebooks, the feature-map buffers (activations); "
                        "default: all")
    p.add_argument("--trials", type=int, default=5, help="seeded trials per target and rate (default 5)")
    p.add_argument("--limit", type=int, help="use only the first N test images")
    p.add_argument("--seed", type=int, default=0, help="seed of every trial's flips (default 0)")
    p.add_argument("--pe", type=int, default=None,
                   help="the hardware plan's lanes, whose streams and row tables are flipped (default as build)")
    p.add_argument("--ecc", action="store_true",
                   help="also run every point with the single-error-correcting entry code (build --ecc)")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--plot", help="write accuracy vs bit-error rate as a PNG")
    _add_lowering_options(p)
    p.set_defaults(func=_cmd_faults)

    p = sub.add_parser("csim", help="C simulation (g++) of a built HLS project against its reference vectors")
    p.add_argument("dir", help="project folder written by 'admm-hls build'")
    p.add_argument("--n", type=int, help="simulate only the first N vectors")
    p.set_defaults(func=_cmd_csim)

    p = sub.add_parser("rtlsim", help="RTL simulation (cocotb on Icarus or Verilator) of a built project")
    p.add_argument("dir", help="project folder written by 'admm-hls build'")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--n", type=int, help="simulate only the first N vectors")
    p.add_argument("--waves", action="store_true", help="write a waveform file")
    p.add_argument("--verbose", action="store_true", help="show the simulator's and cocotb's output (else in logs)")
    p.add_argument("--no-overlap", action="store_true",
                   help="build the top with one image in flight (OVERLAP=0), to compare its throughput")
    p.set_defaults(func=_cmd_rtlsim)

    p = sub.add_parser("synth", help="LUT/FF/DSP/BRAM (and ECP5 Fmax) of a built project's whole RTL top "
                                     "(yosys; nextpnr-ecp5), or of each RTL engine (--engines)")
    p.add_argument("dir", help="project folder written by 'admm-hls build'")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--flow", choices=("xilinx", "ecp5"),
                       help="whole top: xilinx (yosys synth_xilinx, counts only; the default) or ecp5 (yosys "
                            "synth_ecp5, nextpnr-ecp5 place and route, Fmax); writes rtl/implementation.json/.txt")
    which.add_argument("--engines", action="store_true",
                       help="each engine instance on its own (synth_xilinx); writes rtl/resources.txt and the "
                            "manifest's rtl.resources")
    p.add_argument("--device", choices=("25k", "45k", "85k"),
                   help="--flow ecp5: the LFE5U device (default: the smallest that holds the design)")
    p.add_argument("--freq", type=float, help="--flow ecp5: target clock in MHz (default 100)")
    p.add_argument("--seed", type=int, help="--flow ecp5: nextpnr placement seed (default 1)")
    p.add_argument("--jobs", type=int, help="--engines: yosys runs at once (default: the CPU count)")
    p.add_argument("--family", help="synth_xilinx -family (default: from the project's part, e.g. xcup)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_synth)
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
