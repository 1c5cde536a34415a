"""Test vectors from the integer reference: what the C testbench and the cocotb testbench read."""

from __future__ import annotations

import numpy as np

from ..arith import qrange
from ..errors import UserError
from ..hw.names import file_stem
from ..ir.graph import LayerGraph

DEFAULT_VECTORS = 8
VECTOR_SEED = 20240601  # the deterministic random test inputs

__all__ = ["DEFAULT_VECTORS", "VECTOR_SEED", "input_integers", "test_vectors"]


def _elem_bytes(act_bits: int) -> int:
    return 1 if act_bits <= 8 else 2


def input_integers(graph: LayerGraph, x: np.ndarray | None, n: int = DEFAULT_VECTORS) -> np.ndarray:
    """Test inputs as the graph's input integers, (N, *input shape) int64.

    ``x``: float inputs (quantized with the input scale, as ``reference.run`` does), integer
    inputs (checked against the activation range), or None for ``n`` deterministic pseudo-random
    integers (seed ``VECTOR_SEED``)."""
    from ..reference import quantize_images

    inp = graph.input_node()
    shape = tuple(inp.shape)
    lo, hi = qrange(inp.quant["bits"])
    if x is None:
        if int(n) < 1:
            raise UserError(f"--vectors must be >= 1, got {n}")
        rng = np.random.default_rng(VECTOR_SEED)
        return rng.integers(lo, hi + 1, size=(int(n), *shape), dtype=np.int64)
    x = np.asarray(x)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape or x.shape[0] < 1:
        raise UserError(f"test inputs must have shape (N, {', '.join(map(str, shape))}), got {x.shape}")
    if x.dtype.kind == "f":
        return quantize_images(graph, x).astype(np.int64)
    if x.dtype.kind not in "iu":
        raise UserError(f"test inputs must be float or integer arrays, got dtype {x.dtype}")
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise UserError(f"integer test inputs must lie in {lo}..{hi} (the {inp.quant['bits']}-bit input range), "
                        f"got {int(x.min())}..{int(x.max())}")
    return x.astype(np.int64)


def _to_bytes(values: np.ndarray, act_bits: int) -> bytes:
    dtype = "<i1" if _elem_bytes(act_bits) == 1 else "<i2"
    return np.ascontiguousarray(values, dtype=np.int64).astype(dtype).tobytes()


def test_vectors(graph: LayerGraph, x_int: np.ndarray, evaluate=None) -> dict[str, bytes]:
    """Testbench data from the reference: ``tb/data/input.bin`` (N images), ``expected.bin``
    (N outputs), ``meta.txt`` (N, sizes, element bytes) and, for the FIRST vector, every
    layer's output in ``tb/data/layers/<node>.bin`` (locates the first failing layer).
    ``evaluate``: the reference's per-node function (``reference.run``), e.g. the fault model's."""
    from ..reference import evaluate as exact
    from ..reference import run

    act_bits = graph.act_bits()
    x = np.asarray(x_int)
    inp = graph.input_node()
    if x.dtype.kind not in "iu":
        raise ValueError("test vectors take quantized integer inputs (quantize with reference.quantize_images)")
    if x.shape[1:] != tuple(inp.shape) or x.shape[0] < 1:
        raise ValueError(f"test vectors must have shape (N >= 1, {', '.join(map(str, inp.shape))}), got {x.shape}")
    lo, hi = qrange(act_bits)
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise ValueError(f"test vector values must lie in [{lo}, {hi}]")
    outs = run(graph, x.astype(np.int64), all_outputs=True, evaluate=evaluate or exact)
    out_node = graph.output_node()
    n = x.shape[0]
    expected = outs[out_node.name].reshape(n, -1)
    files = {
        "tb/data/input.bin": _to_bytes(x.reshape(n, -1), act_bits),
        "tb/data/expected.bin": _to_bytes(expected, act_bits),
    }
    layers = []
    for node in graph.topo():
        if node.op == "output":
            continue
        stem = file_stem(node.name)
        files[f"tb/data/layers/{stem}.bin"] = _to_bytes(outs[node.name][0].reshape(-1), act_bits)
        layers.append(stem)
    from ..backends.hls.render import BANNER

    meta = [
        f"# {BANNER}",
        "# test vectors: input.bin holds n inputs, expected.bin n outputs (little-endian signed integers",
        "# of `bytes` bytes each); layers/<node>.bin hold every layer's output for vector 0",
        f"n {n}",
        f"input {int(np.prod(inp.shape))}",
        f"output {expected.shape[1]}",
        f"bytes {_elem_bytes(act_bits)}",
        f"act_bits {act_bits}",
        f"layers {' '.join(layers)}",
    ]
    files["tb/data/meta.txt"] = ("\n".join(meta) + "\n").encode()
    return dict(sorted(files.items()))


test_vectors.__test__ = False  # not a pytest test, whatever module imports it
