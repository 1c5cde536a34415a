"""Checkpoint validation: every field lowering reads is checked here, once, when the checkpoint is
loaded, so a damaged or foreign checkpoint is one clear line (field, layer, fix) instead of a
traceback deep in lowering or, worse, a build that silently differs from what was compressed.

Rules (the first one broken is reported):
- header: ``format`` and ``version`` are an admm-hls checkpoint format this admm-hls reads;
- ``arch``: a zoo model name, or a class (``source``) the user allowed importing, and keyword
  arguments that build it; ``input_shape`` is its input (1-4 positive ints for a class that
  does not declare ``INPUT_SHAPE``);
- ``state_dict``: exactly the architecture's keys, shapes and dtypes, finite values, BatchNorm
  variances >= 0;
- ``layers``: one entry per Conv2d/Linear; ``levels``, ``bits`` and ``scale`` all set (an ADMM
  codebook) or all None, never missing; levels whole numbers within +-(2^(bits-1)-1), shaped
  like the weight; the scale finite and > 0; ``mask`` (when present) boolean, shaped like the
  weight, zero weights wherever it prunes; and the stored weights exactly ``scale * levels``
  (unless ``requantize``);
- ``calibration.ranges``: finite [min, max] pairs; ``balance_pe`` a count >= 0; ``accuracy``
  finite numbers; ``dataset`` None or a table.

The codebook check is on the stored weights, before BatchNorm folding: folding legitimately moves
a layer's weights off its levels (that layer is then quantized post-training), the checkpoint
itself must not.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np
import torch

from ..errors import UserError

RECOMPRESS = "recompress the model with 'admm-hls compress'"
DAMAGED = f"the checkpoint is damaged; {RECOMPRESS}"
BITS_RANGE = (2, 8)  # the codebook widths lowering supports (QuantContext.weight_bits)
LEVEL_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                torch.float16, torch.float32, torch.float64)
CODEBOOK = ("levels", "bits", "scale")


def validate_checkpoint(ckpt: Any, *, where: str = "checkpoint", requantize: bool = False,
                        stored_ranges: bool = True, model: str | None = None,
                        trust_model_code: bool = False) -> None:
    """Raise one UserError for the first rule ``ckpt`` breaks (see the module docstring).
    ``where``: the file, for messages. ``requantize``: accept layers whose weights do not match
    their stored codebook (lowering re-quantizes them post-training). ``stored_ranges``: False
    when lowering re-measures activation ranges (--calibrate), so the stored ones are not read.
    ``model``, ``trust_model_code``: consent to import the model class a checkpoint of a non-zoo
    architecture names (``model_source.from_record``)."""
    from .checkpoint import FORMAT, READABLE

    def fail(field: str, problem: str, fix: str = DAMAGED) -> NoReturn:
        raise UserError(f"{where}: {field} {problem}: {fix}")

    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        fail("format", f"is not '{FORMAT}' (a torch file, but not an admm-hls checkpoint)",
             "compress the model with 'admm-hls compress' first")
    version = ckpt.get("version")
    if not _is_int(version) or version not in READABLE:
        fail("version", f"is {version!r}, this admm-hls reads checkpoint versions {' and '.join(map(str, READABLE))}",
             "recompress the model with this admm-hls")
    built = _check_arch(ckpt, fail, model, trust_model_code)
    name = ckpt["arch"]["name"]
    _check_state_dict(ckpt.get("state_dict"), built, name, fail)
    _check_layers(ckpt.get("layers"), built, ckpt["state_dict"], name, requantize, fail)
    if stored_ranges:
        _check_calibration(ckpt.get("calibration"), fail)
    balance = ckpt.get("balance_pe")
    if balance is not None and not (_is_int(balance) and balance >= 0):
        fail("balance_pe", f"is {_show(balance)}, not a PE count >= 0")
    accuracy = ckpt.get("accuracy")
    if accuracy is not None:
        if not isinstance(accuracy, dict):
            fail("accuracy", f"is {_show(accuracy)}, not a table of accuracies")
        for key, value in accuracy.items():
            if not isinstance(key, str) or not _is_real(value) or not math.isfinite(value):
                fail(f"accuracy[{key!r}]", f"is {_show(value)}, not a finite number")
    dataset = ckpt.get("dataset")
    if dataset is not None and not (isinstance(dataset, dict) and isinstance(dataset.get("name", ""), str)):
        fail("dataset", f"is {_show(dataset)}, not None or a table with a dataset name")


# -- the parts --------------------------------------------------------------------------------------
def _check_arch(ckpt: dict, fail, model: str | None, trust_model_code: bool) -> torch.nn.Module:
    """The architecture the checkpoint names (a zoo model, or a class imported under the consent
    rule of ``model_source.from_record``), built on the meta device (shapes and dtypes only)."""
    from ..model_source import from_record
    from ..zoo import available_models

    arch = ckpt.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        fail("arch", f"is {_show(arch)}, not a table with the model's name and kwargs")
    name, kwargs, source = arch["name"], arch.get("kwargs"), arch.get("source")
    if source is not None and not isinstance(source, str):
        fail("arch.source", f"is {_show(source)}, not None (a zoo model) or pkg.module:Class or file.py:Class")
    if source is None and name not in available_models():
        fail("arch.name", f"'{name}' is not a model this admm-hls knows ({', '.join(available_models())})",
             "compress one of those models, or use the admm-hls that made this checkpoint")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        fail("arch.kwargs", f"is {_show(kwargs)}, not a table of keyword arguments")
    architecture = from_record(arch, model=model, trust=trust_model_code)  # consent first: imports nothing before
    try:
        with torch.device("meta"):
            built = architecture.build()
    except Exception as exc:  # noqa: BLE001 - any constructor failure on user-given arguments
        fail("arch.kwargs", f"{_show(kwargs)} do not build {name} ({_first_line(exc)})")
    shape = ckpt.get("input_shape")
    want = architecture.default_input_shape()
    if want is None:
        if not (isinstance(shape, (list, tuple)) and 1 <= len(shape) <= 4 and all(_is_int(v) and v > 0 for v in shape)):
            fail("input_shape", f"is {_show(shape)}, not 1-4 positive integers (the input {name} takes)")
    elif not isinstance(shape, (list, tuple)) or not all(_is_int(v) for v in shape) or list(shape) != list(want):
        fail("input_shape", f"is {_show(shape)}, {name} takes {list(want)}")
    return built


def _check_state_dict(state: Any, model: torch.nn.Module, name: str, fail) -> None:
    if not isinstance(state, dict):
        fail("state_dict", f"is {_show(state)}, not a table of tensors")
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            fail(f"state_dict[{key!r}]", f"is missing ({name} has it, layer {_module(key)})")
    for key, t in state.items():
        field = f"state_dict[{key!r}]"
        if key not in expected:
            fail(field, f"is not a tensor of {name} (its keys are {_keys_hint(expected)})",
                 "the weights are not this architecture's; " + RECOMPRESS)
        want = expected[key]
        layer = f"(layer {_module(key)})"
        values = _check_tensor(t, f"{field} {layer}", want.dtype, tuple(want.shape), fail)
        if key.endswith("running_var") and (values < 0).any():
            fail(f"{field} {layer}", f"holds {np.count_nonzero(values < 0)} negative variance(s)")


def _check_tensor(t: Any, field: str, dtype: torch.dtype | tuple, shape: tuple[int, ...], fail) -> np.ndarray:
    """A plain CPU tensor of ``dtype`` (or one of them) and ``shape`` with finite values; returns
    its values as a numpy view (numpy's element-wise checks are several times faster)."""
    if not isinstance(t, torch.Tensor):
        fail(field, f"is {_show(t)}, not a tensor")
    if t.layout != torch.strided or t.device.type != "cpu":
        fail(field, f"is a {t.layout} tensor on {t.device}, not a plain (dense, CPU) tensor")
    dtypes = dtype if isinstance(dtype, tuple) else (dtype,)
    if t.dtype not in dtypes:
        fail(field, f"has dtype {t.dtype}, expected {' or '.join(map(str, dtypes))}")
    if tuple(t.shape) != shape:
        fail(field, f"has shape {tuple(t.shape)}, expected {shape}",
             f"the weights do not fit this architecture (check arch.kwargs); {RECOMPRESS}")
    values = t.detach().numpy()
    if t.is_floating_point() and not np.isfinite(values).all():
        n_nan, n_inf = np.count_nonzero(np.isnan(values)), np.count_nonzero(np.isinf(values))
        what = " and ".join(s for s in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else "") if s)
        fail(field, f"holds {what} value(s)")
    return values


def _check_layers(layers: Any, model: torch.nn.Module, state: dict, name: str, requantize: bool, fail) -> None:
    from .training import prunable_weights

    weighted = prunable_weights(model)
    if not isinstance(layers, dict):
        fail("layers", f"is {_show(layers)}, not a table of the conv/linear layers")
    for module in weighted:
        if module not in layers:
            fail("layers", f"has no entry for layer {module} ({name}'s conv/linear layers: {', '.join(weighted)})")
    for module, layer in layers.items():
        field = f"layers[{module!r}]"
        if module not in weighted:
            fail(field, f"is not a conv/linear layer of {name} (those are {', '.join(weighted)})")
        if not isinstance(layer, dict):
            fail(field, f"is {_show(layer)}, not a table")
        weight = state[f"{module}.weight"].detach().numpy()
        shape = weight.shape
        mask = layer.get("mask")
        if mask is not None:
            keep = _check_tensor(mask, f"{field}.mask", torch.bool, shape, fail)
            pruned_nonzero = np.count_nonzero((weight != 0) & ~keep)
            if pruned_nonzero:
                fail(f"{field}.mask", f"prunes {pruned_nonzero} weight(s) that are nonzero in "
                     f"state_dict['{module}.weight']")
        # The writer always stores all three, None for "no codebook": a missing key is damage,
        # not a request to quantize the layer post-training.
        absent = [k for k in CODEBOOK if k not in layer]
        if absent:
            fail(field, f"lacks {', '.join(absent)} (None where the layer has no codebook)")
        present = [k for k in CODEBOOK if layer[k] is not None]
        if not present:
            continue  # no ADMM codebook: quantized post-training at --bits, as the checkpoint says
        if len(present) < len(CODEBOOK):
            missing = [k for k in CODEBOOK if k not in present]
            fail(field, f"has {', '.join(present)} but no {', '.join(missing)} (a codebook needs all three)")
        bits, scale = layer["bits"], layer["scale"]
        if not _is_int(bits) or not BITS_RANGE[0] <= bits <= BITS_RANGE[1]:
            fail(f"{field}.bits", f"is {_show(bits)}, not a width of {BITS_RANGE[0]}..{BITS_RANGE[1]} bits")
        if not _is_real(scale) or not math.isfinite(scale) or scale <= 0:
            fail(f"{field}.scale", f"is {_show(scale)}, not a finite number > 0")
        levels = _check_tensor(layer["levels"], f"{field}.levels", LEVEL_DTYPES, shape, fail)
        if levels.dtype.kind == "f" and not (levels == np.round(levels)).all():
            fail(f"{field}.levels", "holds values that are not whole numbers")
        top = 2 ** (bits - 1) - 1
        outside = (levels > top) | (levels < -top)  # no abs(): -128 has none in int8
        if outside.any():
            fail(f"{field}.levels", f"holds {np.count_nonzero(outside)} level(s) beyond +-{top}, more than "
                 f"{bits} bits hold (e.g. {levels[outside].reshape(-1)[0]:g})")
        if not requantize:
            off = _off_codebook(weight, levels, scale)
            if off:
                fail(field, f"weights differ from scale * levels at {off[0]:,} of {off[1]:,} nonzero positions "
                     "(the stored codebook does not match them)",
                     f"pass --requantize to re-quantize the layer post-training at --bits, or {RECOMPRESS}")


def _off_codebook(weight: np.ndarray, levels: np.ndarray, scale: float) -> tuple[int, int] | None:
    """None when the weight is exactly scale * levels by the rule lowering uses
    (``layers.weights.on_levels``); else (positions that differ, positions nonzero in either),
    counted only then."""
    from ..layers.weights import on_levels

    if on_levels(weight, levels, scale):
        return None
    expected = (levels.astype(np.float64) * scale).astype(np.float32)
    return max(1, np.count_nonzero(weight != expected)), np.count_nonzero((weight != 0) | (levels != 0))


def _check_calibration(calibration: Any, fail) -> None:
    """Ranges are optional (lowering then asks for --calibrate); present ones must be usable."""
    fix = f"{RECOMPRESS}, or re-measure the ranges with --calibrate DATASET"
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        fail("calibration", f"is {_show(calibration)}, not a table", fix)
    ranges = calibration.get("ranges")
    if ranges is None:
        return
    if not isinstance(ranges, dict):
        fail("calibration.ranges", f"is {_show(ranges)}, not a table of [min, max] per tensor", fix)
    for node, pair in ranges.items():
        ok = (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_real(v) and math.isfinite(v) for v in pair)
              and pair[0] <= pair[1])
        if not ok:
            fail(f"calibration.ranges[{node!r}]", f"is {_show(pair)}, not a finite [min, max]", fix)


# -- small helpers ----------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _module(key: str) -> str:
    return key.rpartition(".")[0] or key


def _keys_hint(expected: dict) -> str:
    keys = list(expected)
    return ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join((text.splitlines()[0] if text else type(exc).__name__).split())[:160]


def _show(v: Any) -> str:
    """A short description of a value for a message: tensors by dtype and shape, else repr."""
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    text = " ".join(repr(v).split())  # one line: a tensor inside a list prints over several
    return text if len(text) <= 60 else f"a {type(v).__name__} ({text[:40]}...)"
