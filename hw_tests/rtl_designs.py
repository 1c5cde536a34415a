"""Shared helpers of the cocotb RTL tests: write a design folder (rtl/ + tb/data/ test vectors,
the layout of an HLS project), small pruned models, result checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from admm_hls import reference
from admm_hls.backends.rtl.render import render_rtl
from admm_hls.build.vectors import test_vectors
from admm_hls.hw.blob import weight_blob
from admm_hls.hw.plan import make_plan
from admm_hls.calibration import measure_ranges
from admm_hls.ir.lower import lower_model
from admm_hls.sim.rtlsim import run_rtlsim
from admm_hls.sparse import decode_dense, decode_relative, encode_dense, encode_relative


def prune(model: nn.Module, keep: float, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand(m.weight.shape, generator=gen) < keep).float())
    return model


def lower(model: nn.Module, x: torch.Tensor):
    return lower_model(model.eval(), tuple(x.shape[1:]), measure_ranges(model.eval(), [x]))


def repack(node, fmt: str, index_bits: int = 4) -> None:
    """Store ``node``'s weights in ``fmt`` (small ``index_bits`` force filler entries)."""
    layer = node.packed.layer
    codes = decode_relative(layer) if node.packed.format == "relative" else decode_dense(layer)
    cb = node.packed.codebook
    new = (encode_relative(codes, cb.value_bits, index_bits, 32, n_levels=cb.n_levels) if fmt == "relative"
           else encode_dense(codes, cb.value_bits, 32, n_levels=cb.n_levels))
    node.packed = dataclasses.replace(node.packed, format=fmt, layer=new)


def write_design(folder: Path, graph, x_int: np.ndarray, pe: int | None = 1, onchip_kb: float = 512.0) -> Path:
    """rtl/ (Verilog, memory images, cocotb testbench) and tb/data/ (reference vectors, and the
    weight blob when layers are off-chip) of the plan with ``pe`` lanes per layer (None: the
    checkpoint's balance_pe, as ``build``) and ``onchip_kb`` (0: every weighted layer reads its
    words over AXI)."""
    plan = make_plan(graph, pe=pe, check_memory=False, onchip_kb=onchip_kb)
    files = render_rtl(graph, plan)
    files.update(test_vectors(graph, np.asarray(x_int, dtype=np.int64)))
    if plan.blob_layers():
        files["tb/data/weights.bin"] = weight_blob(plan)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def random_inputs(shape, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, size=(n, *shape)).astype(np.int64)


def check(result, expected: np.ndarray | None = None):
    """Fail with the testbench's own first mismatches; optionally compare the streamed outputs."""
    assert result.passed, f"{result.simulator}: " + "; ".join(result.failures[:5])
    if expected is not None:
        assert np.array_equal(result.outputs, expected.reshape(len(expected), -1))


__all__ = ["prune", "lower", "repack", "write_design", "random_inputs", "check", "run_rtlsim", "reference"]
