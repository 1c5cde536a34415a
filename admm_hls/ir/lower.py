"""checkpoint -> LayerGraph -> passes -> quantized, packed LayerGraph."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..calibration import measure_ranges
from ..errors import UserError
from .frontend import trace
from .graph import LayerGraph
from .passes import choose_format, fold_batchnorm, fuse_relu, infer_shapes, pack, quantize, remove_identity
from .passes.quantize import QuantContext


def lower_model(
    model: nn.Module,
    input_shape: tuple[int, ...],
    ranges: dict[str, list[float]],
    levels: dict[str, tuple[np.ndarray, float, int]] | None = None,
    *,
    act_bits: int = 8,
    weight_bits: int = 8,
    acc_bits: int = 32,
    name: str = "model",
    weight_format: str = "auto",
    max_filler_rate: float | None = None,
) -> LayerGraph:
    """Lower any traceable torch model given activation ranges (fx node name -> [min, max])
    and, optionally, ADMM codebooks per module path (levels, scale, bits). ``weight_format``:
    "auto" stores each layer dense or relative index, whichever takes fewer bits; "dense" or
    "relative" forces one format on every layer (e.g. a dense-engine baseline).
    ``max_filler_rate``: cap on relative-index fillers per entry (each costs an engine cycle;
    the index width grows until it holds); None: the width that stores fewest bits."""
    graph = trace(model, tuple(input_shape))
    graph.name = name
    remove_identity.run(graph)
    fold_batchnorm.run(graph)
    fuse_relu.run(graph)
    infer_shapes.run(graph)
    ctx = QuantContext(ranges=ranges, levels=levels or {}, act_bits=act_bits, weight_bits=weight_bits,
                       acc_bits=acc_bits)
    quantize.run(graph, ctx)
    if weight_format not in ("auto", "dense", "relative"):
        raise ValueError(f"unknown weight format {weight_format!r}: choose auto, dense or relative")
    choose_format.run(graph, force=None if weight_format == "auto" else weight_format,
                      max_filler_rate=max_filler_rate)
    pack.run(graph)
    graph.meta.update(input_shape=tuple(input_shape), weight_bits=weight_bits)
    return graph


def checkpoint_levels(ckpt: dict[str, Any]) -> dict[str, tuple[np.ndarray, float, int]]:
    """ADMM codebooks stored in an admm-hls checkpoint, keyed by module path."""
    out = {}
    for module, layer in ckpt["layers"].items():
        if layer.get("levels") is not None:
            # int8: validation proved the levels whole numbers within +-127, whatever their dtype
            out[module] = (layer["levels"].to(torch.int8).numpy(), float(layer["scale"]), int(layer["bits"]))
    return out


def lower(
    checkpoint: str | os.PathLike | dict[str, Any],
    *,
    calibrate: torch.Tensor | None = None,
    act_bits: int = 8,
    weight_bits: int = 8,
    acc_bits: int = 32,
    weight_format: str = "auto",
    max_filler_rate: float | None = None,
    requantize: bool = False,
    model: str | None = None,
    trust_model_code: bool = False,
) -> LayerGraph:
    """Lower an admm-hls checkpoint (path or loaded dict), validated first
    (``compress.validate``). ``calibrate``: float input batches to measure activation ranges
    when the checkpoint has none (or to override them); ``weight_format``, ``max_filler_rate``:
    see ``lower_model``. ``requantize``: a layer whose stored weights are not its stored
    codebook (scale * levels) is quantized post-training at ``weight_bits`` instead of refused.
    A checkpoint pruned to balance lockstep lanes (``balance_pe``) defaults to no fillers: a
    filler is an entry some rows have and others not, and would unbalance the lanes again.
    ``model``, ``trust_model_code``: consent to import the model class of a checkpoint of a
    non-zoo architecture (``model_source.from_record``): a --model spec naming that class, or
    trust in what the checkpoint names."""
    from ..compress.checkpoint import load_checkpoint, model_from_checkpoint
    from ..compress.compact import expand
    from ..compress.validate import validate_checkpoint
    from ..model_source import from_record

    options = {"requantize": requantize, "stored_ranges": calibrate is None, "model": model,
               "trust_model_code": trust_model_code}
    if isinstance(checkpoint, dict):
        ckpt = expand(checkpoint)  # a dict as stored (compact layers) or as in memory
        validate_checkpoint(ckpt, **options)
    else:
        ckpt = load_checkpoint(checkpoint, **options)
    balance_pe = int(ckpt.get("balance_pe") or 0)
    if max_filler_rate is None and balance_pe:
        max_filler_rate = 0.0
    # What is built: for an imported class, the source actually imported (--model's file when
    # the checkpoint's has moved).
    architecture = from_record(ckpt["arch"], model=model, trust=trust_model_code)
    network = model_from_checkpoint(ckpt, architecture=architecture)
    if calibrate is not None:
        ranges = measure_ranges(network, list(torch.as_tensor(calibrate).split(256)))
    else:
        ranges = (ckpt.get("calibration") or {}).get("ranges")
        if not ranges:
            raise UserError("the checkpoint holds no activation ranges: pass --calibrate with a dataset")
    graph = lower_model(network, tuple(ckpt["input_shape"]), ranges, checkpoint_levels(ckpt), act_bits=act_bits,
                        weight_bits=weight_bits, acc_bits=acc_bits, name=ckpt["arch"]["name"],
                        weight_format=weight_format, max_filler_rate=max_filler_rate)
    graph.meta.update(arch=architecture.record(), accuracy=ckpt.get("accuracy", {}), dataset=ckpt.get("dataset"),
                      balance_pe=balance_pe)
    return graph
