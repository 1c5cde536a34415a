"""RTL rendering without a simulator: deterministic output, the same packed words as the HLS
kernels, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rtl_designs import lower, prune

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
    assert {"rtl/admm_top.v", "rtl/admm_wengine.v", "rtl/admm_pool.v", "rtl/admm_eltwise.v", "rtl/run_cocotb.py",
            "rtl/tb_admm_top.py"} <= set(a)
    names = rtl_names(graph)
    for node in graph.nodes_of("conv", "linear"):
        (words,) = hls_render.layer_words(graph, node.name, plan)
        image = [int(line, 16) for line in a[f"rtl/mem/{names[node.name]}_words.mem"].decode().split()]
        assert image == [int(w) for w in np.asarray(words)] or (len(words) == 0 and image == [0])
        assert np.array_equal(np.asarray(words, dtype=np.uint32), np.asarray(node.packed.layer.words, np.uint32))


def test_unsupported_op_is_named():
    graph = _graph()
    (flat,) = graph.nodes_of("flatten")
    flat.op = "softmax"
    with pytest.raises(ValueError, match="no engine for op 'softmax'"):
        render_rtl(graph, make_plan(graph, pe=1, progress=False))


def test_each_pe_reads_its_hls_stream():
    """PE k's ROM image is the HLS plan's PE k stream, and its row table (first word and bit
    offset, entry count, output base, bias of each row) follows that stream's row pointers."""
    import json

    graph = _graph()
    plan = make_plan(graph, pe=2, progress=False)
    files = render_rtl(graph, plan)
    engines = {e["instance"]: e["params"] for e in json.loads(files["rtl/engines.json"])}
    names = rtl_names(graph)
    for node in graph.nodes_of("conv", "linear"):
        lp = plan.layers[node.name]
        assert lp.pe == 2
        words = hls_render.layer_words(graph, node.name, plan)
        ptrs = hls_render.layer_row_ptrs(graph, node.name, plan)
        layer = node.packed.layer
        eb = layer.value_bits + (layer.index_bits if node.packed.format == "relative" else 0)
        howo = node.shape[1] * node.shape[2] if node.op == "conv" else 1
        bias = np.asarray(node.quant["bias"], dtype=np.int64)
        seen = []
        for k in range(2):
            ident = f"{names[node.name]}_pe{k}"
            stem = f"rtl/mem/{ident}"
            read = lambda kind: [int(v, 16) for v in files[f"{stem}_{kind}.mem"].decode().split()]  # noqa: E731
            assert read("words") == [int(w) for w in np.asarray(words[k])] or (len(words[k]) == 0 and read("words") == [0])
            p = engines[ident]
            ww, cw, ow, ab = (int(p[key]) for key in ("WORD_W", "COUNT_W", "OBASE_W", "ACC_BITS"))
            ptr = np.asarray(ptrs[k])
            for r, row in enumerate(read("rows")):
                word, off = row & ((1 << ww) - 1), (row >> ww) & 63
                count, obase = (row >> (ww + 6)) & ((1 << cw) - 1), (row >> (ww + 6 + cw)) & ((1 << ow) - 1)
                b = row >> (ww + 6 + cw + ow)
                assert word * (32 // eb) + off // eb == ptr[r] and off % eb == 0
                assert count == ptr[r + 1] - ptr[r]
                assert obase % howo == 0 and b == int(bias[obase // howo]) & ((1 << ab) - 1)
                seen.append(obase // howo)
            assert seen[-len(lp.rows[k]):] == [int(r) for r in lp.rows[k]]
        assert sorted(seen) == list(range(layer.rows))


def test_position_bands_split_a_few_row_layer():
    """A conv with 3 filters and a budget of 6 PEs: row groups x position bands, every output
    row of every group computed by exactly one PE, and the cycle model drops accordingly."""
    import json

    from admm_hls.backends.rtl.plan import band_ranges, rtl_plan
    from admm_hls.backends.rtl.render import layer_cycles

    graph = _graph()
    (conv,) = graph.nodes_of("conv")
    plan, bands = rtl_plan(graph, pe=6)
    ho = conv.shape[1]
    assert len(bands[conv.name]) > 1 and plan.layers[conv.name].pe * len(bands[conv.name]) <= 6
    assert band_ranges(7, 3) == [(0, 2), (2, 4), (4, 7)]
    engines = json.loads(render_rtl(graph, plan, bands)["rtl/engines.json"])
    mine = [e for e in engines if e["node"] == conv.name]
    assert len(mine) == plan.layers[conv.name].pe * len(bands[conv.name])
    for group in {e["group"] for e in mine}:
        covered = sorted(tuple(e["band"]) for e in mine if e["group"] == group)
        assert covered[0][0] == 0 and covered[-1][1] == ho
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    one = layer_cycles(graph, *rtl_plan(graph, pe=1))
    six = layer_cycles(graph, plan, bands)
    ident = rtl_names(graph)[conv.name]
    assert six[ident] < one[ident] / 2
