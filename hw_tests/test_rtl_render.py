"""RTL rendering without a simulator: deterministic output, the same packed words as the HLS
kernels, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import lower, prune

from admm_hls.backends.hls import render as hls_render
from admm_hls.backends.hls.project import make_plan
from admm_hls.backends.rtl.render import render_rtl, rtl_names


def _graph():
    torch.manual_seed(1)
    model = prune(nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4)),
                  keep=0.4, seed=1)
    return lower(model, torch.randn(32, 1, 8, 8))


def test_render_is_deterministic_and_reads_the_hls_words():
    graph = _graph()
    plan = make_plan(graph, pe=1, progress=False)
    a, b = render_rtl(graph, plan), render_rtl(graph, plan)
    assert a == b
    assert {"rtl/admm_top.v", "rtl/admm_wengine.v", "rtl/admm_maxpool.v", "rtl/run_cocotb.py",
            "rtl/tb_admm_top.py"} <= set(a)
    names = rtl_names(graph)
    for node in graph.nodes_of("conv", "linear"):
        (words,) = hls_render.layer_words(graph, node.name, plan)
        image = [int(line, 16) for line in a[f"rtl/mem/{names[node.name]}_words.mem"].decode().split()]
        assert image == [int(w) for w in np.asarray(words)] or (len(words) == 0 and image == [0])
        assert np.array_equal(np.asarray(words, dtype=np.uint32), np.asarray(node.packed.layer.words, np.uint32))


def test_unsupported_op_is_named():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    graph = lower(Res(), torch.randn(8, 2, 5, 5))
    with pytest.raises(ValueError, match="no engine for op 'add'"):
        render_rtl(graph, make_plan(graph, pe=1, progress=False))


def test_more_than_one_pe_is_refused():
    graph = _graph()
    with pytest.raises(ValueError, match="one PE per layer"):
        render_rtl(graph, make_plan(graph, pe=2, progress=False))
