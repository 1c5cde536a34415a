"""torch.fx front end: a torch model becomes a LayerGraph.

The model is traced with a plain ``torch.fx.symbolic_trace`` (the same trace calibration uses,
so node names line up with recorded ranges) and run once on a zero batch of 2 by a small fx
interpreter that records every tensor's shape (``_Shapes``). Each tensor-producing fx node becomes one Node;
non-tensor helpers (``x.size(0)``, getattr on shapes) are skipped. Anything outside the
supported op vocabulary is a one-line UserError naming the op, its module and its fx node.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import operator
from typing import Any, Callable

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .graph import LayerGraph, Node

SUPPORTED = (
    "Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm2d, Flatten/view, "
    "Dropout, Identity, add, cat"
)

Lowered = tuple[str, dict[str, Any], list[torch.fx.Node]]  # op, params, tensor inputs in order


# -- signatures of the functional forms we accept: binding fx args/kwargs to them gives every
# -- argument a name whether the user passed it positionally, by keyword or left it default.
def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False): ...
def _avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None): ...
def _adaptive_avg_pool2d(input, output_size): ...
def _cat(tensors, dim=0, *, out=None): ...
def _add(input, other, *, alpha=1, out=None): ...
def _unary(input, *args, **kwargs): ...  # relu, dropout, flatten, view, reshape: only input matters

_RELU = {F.relu, F.relu_, torch.relu, torch.relu_}
_ADD = {operator.add, operator.iadd, torch.add}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_FLATTEN = {torch.flatten, torch.reshape}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
_METHODS = {"relu": "relu", "relu_": "relu", "flatten": "flatten", "view": "flatten", "reshape": "flatten"}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _pair(v: Any) -> tuple[int, int]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _np(t: torch.Tensor | None, like: int | None = None) -> np.ndarray:
    """float32 numpy view of a parameter/buffer (zeros of length ``like`` when absent).

    A view, not a copy: large models would otherwise hold their weights twice. Passes never
    write into these arrays; they replace them (BatchNorm folding makes new ones)."""
    if t is None:
        return np.zeros(like, dtype=np.float32)
    return t.detach().cpu().to(torch.float32).numpy()


SHAPE = "admm_shape"  # fx node meta: the output shape of a tensor node, MULTI for several tensors
MULTI = "several tensors"


class _Shapes(torch.fx.Interpreter):
    """Runs the traced module once and records each node's output shape: fx's ShapeProp without
    its fake-tensor detection, which imports sympy (a second of every build)."""

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta[SHAPE] = tuple(int(s) for s in result.shape)
        elif isinstance(result, (tuple, list)) and any(isinstance(r, torch.Tensor) for r in result):
            n.meta[SHAPE] = MULTI
        return result


def _shape(n: torch.fx.Node) -> tuple[int, ...]:
    return n.meta[SHAPE]


def _is_tensor(a: Any) -> bool:
    return isinstance(a, torch.fx.Node) and isinstance(a.meta.get(SHAPE), tuple)


def _target_name(n: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if n.op == "call_module":
        return type(gm.get_submodule(n.target)).__name__
    if n.op == "get_attr":  # a parameter or buffer used directly in forward
        return f"tensor attribute self.{n.target}"
    if n.op == "call_method":
        return str(n.target)
    return getattr(n.target, "__name__", str(n.target))


def _location(n: torch.fx.Node) -> str:
    """The module a node belongs to: its own path for module calls, else the enclosing module."""
    if n.op == "call_module":
        return f"module {n.target}"
    stack = n.meta.get("nn_module_stack")
    return f"module {list(stack.values())[-1][0]}" if stack else "the model's top-level forward"


class _Lowering:
    def __init__(self, gm: torch.fx.GraphModule):
        self.gm = gm

    # -- errors --------------------------------------------------------------------------------
    def unsupported(self, n: torch.fx.Node, why: str = "") -> UserError:
        what = f"unsupported op {_target_name(n, self.gm)} at {_location(n)} (node {n.name})"
        if why:  # a supported op with an unsupported setting: name the setting
            return UserError(_one_line(f"{what}: {why}"))
        return UserError(f"{what}: admm-hls supports {SUPPORTED}")

    def tensor(self, n: torch.fx.Node, a: Any) -> torch.fx.Node:
        if not _is_tensor(a):
            raise self.unsupported(n, f"argument {a!r} is not a tensor")
        return a

    # -- dispatch ------------------------------------------------------------------------------
    def lower(self, n: torch.fx.Node) -> Lowered:
        if n.op == "placeholder":
            return "input", {}, []
        if n.op == "call_module":
            return self.module(n, self.gm.get_submodule(n.target))
        if n.op == "call_function":
            return self.function(n)
        if n.op == "call_method" and n.target in _METHODS:
            src = self.tensor(n, n.args[0])
            if _METHODS[n.target] == "flatten":
                return self.flatten(n, src)
            return "relu", {}, [src]
        raise self.unsupported(n)  # get_attr tensors, other methods

    def module(self, n: torch.fx.Node, m: nn.Module) -> Lowered:
        src = self.tensor(n, n.args[0] if n.args else None)
        if isinstance(m, nn.Conv2d):
            return self.conv(n, m, src)
        if isinstance(m, nn.Linear):
            if len(_shape(src)) != 2:
                raise self.unsupported(n, f"Linear needs a flattened (N, features) input, got {_shape(src)}")
            return "linear", {"weight": _np(m.weight), "bias": _np(m.bias, m.out_features)}, [src]
        if isinstance(m, nn.ReLU):
            return "relu", {}, [src]
        if isinstance(m, nn.MaxPool2d):
            return self.maxpool(n, src, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                m.return_indices)
        if isinstance(m, nn.AvgPool2d):
            return self.avgpool(n, src, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                m.count_include_pad, m.divisor_override)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive(n, src)
        if isinstance(m, nn.BatchNorm2d):
            return self.batchnorm(n, m, src)
        if isinstance(m, nn.Flatten):
            return self.flatten(n, src)
        if isinstance(m, nn.modules.dropout._DropoutNd):  # every dropout is the identity in eval
            return "dropout", {}, [src]
        if isinstance(m, nn.Identity):
            return "identity", {}, [src]
        raise self.unsupported(n)

    def function(self, n: torch.fx.Node) -> Lowered:
        f = n.target

        def bind(sig: Callable) -> inspect.BoundArguments:
            try:
                return inspect.signature(sig).bind(*n.args, **n.kwargs)
            except TypeError as exc:
                raise self.unsupported(n, f"arguments not understood ({exc})") from None

        if f in _RELU:
            return "relu", {}, [self.tensor(n, bind(_unary).arguments["input"])]
        if f in _DROPOUT:
            return "dropout", {}, [self.tensor(n, bind(_unary).arguments["input"])]
        if f in _FLATTEN:
            return self.flatten(n, self.tensor(n, bind(_unary).arguments["input"]))
        if f is F.max_pool2d:
            a = bind(_max_pool2d)
            a.apply_defaults()
            return self.maxpool(n, self.tensor(n, a.args[0]), *a.args[1:])
        if f is F.avg_pool2d:
            a = bind(_avg_pool2d)
            a.apply_defaults()
            return self.avgpool(n, self.tensor(n, a.args[0]), *a.args[1:])
        if f is F.adaptive_avg_pool2d:
            return self.adaptive(n, self.tensor(n, bind(_adaptive_avg_pool2d).arguments["input"]))
        if f in _ADD:
            return self.add(n, bind(_add))
        if f in _CAT:
            return self.cat(n, bind(_cat))
        raise self.unsupported(n)

    # -- ops -----------------------------------------------------------------------------------
    def conv(self, n: torch.fx.Node, m: nn.Conv2d, src: torch.fx.Node) -> Lowered:
        for attr, value, ok in (
            ("groups", m.groups, m.groups == 1),
            ("dilation", m.dilation, tuple(m.dilation) == (1, 1)),
            ("padding_mode", m.padding_mode, m.padding_mode == "zeros"),
            ("padding", m.padding, not isinstance(m.padding, str)),
        ):
            if not ok:
                raise self.unsupported(
                    n, f"Conv2d {attr}={value!r} (admm-hls supports groups=1, dilation=1, "
                    "padding_mode='zeros' and numeric padding)")
        params = {
            "weight": _np(m.weight), "bias": _np(m.bias, m.out_channels),
            "stride": _pair(m.stride), "padding": _pair(m.padding),
        }
        return "conv", params, [src]

    def maxpool(self, n, src, kernel, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False) -> Lowered:
        if _pair(dilation) != (1, 1) or ceil_mode or return_indices:
            raise self.unsupported(
                n, f"MaxPool2d dilation={dilation!r} ceil_mode={ceil_mode} return_indices="
                f"{return_indices} (admm-hls supports dilation=1, ceil_mode=False, no indices)")
        kernel = _pair(kernel)
        stride = kernel if stride is None or stride == [] else _pair(stride)  # default = kernel
        return "maxpool", {"kernel": kernel, "stride": stride, "padding": _pair(padding)}, [src]

    def avgpool(self, n, src, kernel, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None) -> Lowered:
        padding = _pair(padding)
        if ceil_mode or divisor_override is not None or (padding != (0, 0) and not count_include_pad):
            raise self.unsupported(
                n, f"AvgPool2d ceil_mode={ceil_mode} count_include_pad={count_include_pad} "
                f"divisor_override={divisor_override} (admm-hls supports ceil_mode=False, "
                "divisor_override=None, and padding only with count_include_pad=True)")
        kernel = _pair(kernel)
        stride = kernel if stride is None or stride == [] else _pair(stride)
        params = {"kernel": kernel, "stride": stride, "padding": padding, "divisor": kernel[0] * kernel[1]}
        return "avgpool", params, [src]

    def adaptive(self, n: torch.fx.Node, src: torch.fx.Node) -> Lowered:
        # Lowered to a plain average pool when windows tile the input exactly; read sizes from
        # the traced shapes (output_size may hold None, meaning "keep this size").
        (_, _, h, w), (_, _, oh, ow) = _shape(src), _shape(n)
        if h % oh or w % ow:
            raise self.unsupported(
                n, f"AdaptiveAvgPool2d output {oh}x{ow} must divide input {h}x{w} exactly")
        kernel = (h // oh, w // ow)
        params = {"kernel": kernel, "stride": kernel, "padding": (0, 0), "divisor": kernel[0] * kernel[1]}
        return "avgpool", params, [src]

    def batchnorm(self, n: torch.fx.Node, m: nn.BatchNorm2d, src: torch.fx.Node) -> Lowered:
        if m.running_mean is None:
            raise self.unsupported(n, "BatchNorm2d track_running_stats=False (eval needs running stats)")
        c = m.num_features
        params = {
            "mean": _np(m.running_mean), "var": _np(m.running_var),
            "gamma": _np(m.weight) if m.weight is not None else np.ones(c, dtype=np.float32),
            "beta": _np(m.bias, c), "eps": float(m.eps),
        }
        return "batchnorm", params, [src]

    def flatten(self, n: torch.fx.Node, src: torch.fx.Node) -> Lowered:
        # Every spelling (flatten, view, reshape, nn.Flatten) is accepted iff it keeps the batch
        # and collapses everything else: (N, ...) -> (N, prod(...)).
        ins, out = _shape(src), _shape(n)
        if out != (ins[0], math.prod(ins[1:])):
            raise self.unsupported(
                n, f"reshape {ins} -> {out}: admm-hls only flattens (N, ...) to (N, features)")
        return "flatten", {}, [src]

    def add(self, n: torch.fx.Node, a: inspect.BoundArguments) -> Lowered:
        x, y = a.arguments["input"], a.arguments["other"]
        if a.arguments.get("alpha", 1) != 1 or a.arguments.get("out") is not None:
            raise self.unsupported(n, "add with alpha or out= (admm-hls supports plain x + y)")
        if not (_is_tensor(x) and _is_tensor(y)) or _shape(x) != _shape(y):
            raise self.unsupported(n, "add needs two tensors of the same shape")
        if x is y:  # one graph edge per producer/consumer pair: x + x cannot be represented
            raise self.unsupported(n, "add of a tensor with itself")
        return "add", {}, [x, y]

    def cat(self, n: torch.fx.Node, a: inspect.BoundArguments) -> Lowered:
        xs, dim = list(a.arguments["tensors"]), a.arguments.get("dim", 0)
        rank = len(_shape(n))
        if dim % rank != 1:  # channels: dim 1, or -3 on 4-D / -1 on 2-D
            raise self.unsupported(n, f"cat along dim {dim} (admm-hls concatenates channels, dim=1)")
        xs = [self.tensor(n, x) for x in xs]
        if len(set(xs)) != len(xs):
            raise self.unsupported(n, "cat of the same tensor twice")
        return "concat", {}, xs


def _trace_fx(model: nn.Module) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:  # data-dependent control flow, unsupported Python on proxies, ...
        raise UserError(_one_line(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "admm-hls needs a forward without data-dependent control flow")) from None


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> LayerGraph:
    """The LayerGraph of ``model`` for inputs of shape ``input_shape`` (without batch)."""
    was_training = model.training
    model.eval()  # before tracing: fx bakes self.training into the graph
    try:
        gm = _trace_fx(model)
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise UserError(f"{type(model).__name__}.forward takes {len(placeholders)} inputs: "
                            "admm-hls supports models with exactly one input tensor")
        try:  # the interpreter prints a traceback before re-raising: keep the user's terminal clean
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                _Shapes(gm).run(torch.zeros(2, *input_shape))
        except Exception as exc:
            cause = exc.__cause__ or exc  # the interpreter may wrap the real error
            raise UserError(_one_line(
                f"{type(model).__name__} fails on input shape {tuple(input_shape)} "
                f"({type(cause).__name__}: {cause})")) from None
    finally:
        model.train(was_training)

    lowering = _Lowering(gm)
    graph = LayerGraph(type(model).__name__)
    for order, n in enumerate(gm.graph.nodes):
        meta = n.meta.get(SHAPE)
        if n.op == "output":
            result = n.args[0]
            if not _is_tensor(result):
                raise UserError(f"{type(model).__name__}.forward must return one tensor, "
                                f"not {type(result).__name__}")
            op, params, inputs = "output", {}, [result]
        elif meta is None:
            continue  # non-tensor helper (x.size(0), shape arithmetic): not a layer
        elif meta == MULTI:
            raise lowering.unsupported(n)  # returns several tensors (split, chunk, indices)
        else:
            op, params, inputs = lowering.lower(n)
        node = Node(
            name=n.name, op=op, module=str(n.target) if n.op == "call_module" else "",
            target=_target_name(n, gm) if n.op != "output" else "output", params=params,
            shape=_shape(n if op != "output" else inputs[0])[1:], calib=n.name, order=order,
        )
        graph.add(node, [i.name for i in inputs])
    return graph
