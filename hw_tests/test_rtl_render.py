"""RTL rendering without a simulator: deterministic output, the plan's lanes and words (the same
words the HLS kernels stream), clear refusals."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from rtl_designs import lower, prune

from admm_hls.backends.hls.render import render_project_sources
from admm_hls.backends.rtl.render import render_rtl
from admm_hls.hw.plan import make_plan


def _graph():
    torch.manual_seed(1)
    model = prune(nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4)),
                  keep=0.4, seed=1)
    return lower(model, torch.randn(32, 1, 8, 8))


def _mem(files, path) -> list[int]:
    return [int(v, 16) for v in files[path].decode().split()]


def _inc(files, path) -> list[list[int]]:
    """The rows of a ROM initializer (.inc) the HLS kernels include."""
    body = "\n".join(l for l in files[path].decode().splitlines() if not l.startswith("//"))
    return [[int(v.rstrip("uUlL"), 0) for v in row.split(",") if v.strip()] for row in re.findall(r"\{([^}]*)\}", body)]


def test_render_is_deterministic_and_reads_the_plan_words():
    graph = _graph()
    plan = make_plan(graph, pe=1)
    a, b = render_rtl(graph, plan), render_rtl(graph, make_plan(graph, pe=1))
    assert a == b
    assert {"rtl/admm_top.v", "rtl/admm_wengine.v", "rtl/admm_pool.v", "rtl/admm_eltwise.v", "rtl/run_cocotb.py",
            "rtl/tb_admm_top.py"} <= set(a)
    hls = render_project_sources(graph, plan)
    for layer in plan.weighted():
        (words,) = layer.words
        assert _mem(a, f"rtl/mem/{layer.ident}_words.mem") == [int(w) for w in words]
        assert _inc(hls, f"firmware/weights/{layer.ident}_words.inc") == [[int(w) for w in words]]


def test_unsupported_op_is_named():
    graph = _graph()
    plan = make_plan(graph, pe=1)
    (flat,) = graph.nodes_of("flatten")
    flat.op = "softmax"
    with pytest.raises(ValueError, match="no engine for op 'softmax'"):
        render_rtl(graph, plan)


def test_each_lane_reads_its_group_stream():
    """Lane (g, b)'s ROM image is group g's lockstep stream (the HLS kernel's ROM row g), and its
    row table (first word and entry slot, entry count, output base in the lane's bank, bias of
    each row) lists the slots in which group g has a row."""
    graph = _graph()
    plan = make_plan(graph, pe=2)
    files = render_rtl(graph, plan)
    hls = render_project_sources(graph, plan)
    engines = {e["instance"]: e for e in json.loads(files["rtl/engines.json"])}
    for layer in plan.weighted():
        node, s, st = graph[layer.name], layer.schedule, layer.stream
        assert s.lanes == 2
        lay = layer.layout
        start = np.concatenate([[0], np.cumsum(s.slot_count)])[:-1]
        rom = _inc(hls, f"firmware/weights/{layer.ident}_words.inc")
        seen = []
        mine = [e for e in engines.values() if e["layer"] == layer.ident]
        assert len(mine) == s.lanes
        for e in mine:
            g, p = e["group"], e["params"]
            stem = f"rtl/mem/{layer.ident}" + (f"_g{g}" if s.groups > 1 else "")
            assert _mem(files, f"{stem}_words.mem") == [int(w) for w in layer.words[g]] == rom[g]
            ww, cw, ow, ab = (int(p[key]) for key in ("WORD_W", "COUNT_W", "OBASE_W", "ACC_BITS"))
            slots = np.flatnonzero(s.slot_rows[:, g] >= 0)
            table = _mem(files, f"{stem}_rows.mem")
            assert len(table) == slots.size == int(p["ROWS"])
            for slot, row in zip(slots, table):
                word, k = row & ((1 << ww) - 1), (row >> ww) & 63
                count, obase = (row >> (ww + 6)) & ((1 << cw) - 1), (row >> (ww + 6 + cw)) & ((1 << ow) - 1)
                bias = row >> (ww + 6 + cw + ow)
                out_row = s.slot_rows[slot, g]
                assert word * st.per_word + k == start[slot] and k < st.per_word
                assert count == s.slot_count[slot] >= st.entries[out_row]
                # the row's first output in the lane's bank: its slot x band rows x output width
                assert obase == slot * lay.band_rows * lay.shape[2] == lay.channel_base[out_row]
                assert lay.group_of[out_row] == g
                assert bias == int(st.bias[out_row]) & ((1 << ab) - 1)
                if list(e["band"]) == list(s.bands[0]):
                    seen.append(out_row)
        assert sorted(seen) == list(range(st.rows))


def test_position_bands_split_a_few_row_layer():
    """A conv with 3 filters and a budget of 6 lanes: row groups x position bands, every output
    row of every group computed by exactly one lane, and the cycle model drops accordingly."""
    graph = _graph()
    (conv,) = graph.nodes_of("conv")
    plan = make_plan(graph, pe=6)
    s = plan.layers[conv.name].schedule
    ho = conv.shape[1]
    assert len(s.bands) > 1 and s.lanes <= 6
    engines = json.loads(render_rtl(graph, plan)["rtl/engines.json"])
    mine = [e for e in engines if e["node"] == conv.name]
    assert len(mine) == s.lanes
    for group in {e["group"] for e in mine}:
        covered = sorted(tuple(e["band"]) for e in mine if e["group"] == group)
        assert covered[0][0] == 0 and covered[-1][1] == ho
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    one = make_plan(graph, pe=1).cycles("rtl")[conv.name]
    assert plan.cycles("rtl")[conv.name] < one / 2


def test_one_plan_drives_both_backends():
    """Both backends render the plan's data, not their own: a changed word in the plan shows up
    in the HLS ROM and in the RTL image alike, and a changed lane count changes both designs."""
    graph = _graph()
    plan = make_plan(graph, pe=1)
    fc = plan.weighted()[-1]
    words = fc.words.copy()
    words[0, 0] ^= 1
    changed = replace(plan, layers={**plan.layers, fc.name: replace(fc, words=words)})
    hls_a, hls_b = render_project_sources(graph, plan), render_project_sources(graph, changed)
    rtl_a, rtl_b = render_rtl(graph, plan), render_rtl(graph, changed)
    inc, mem = f"firmware/weights/{fc.ident}_words.inc", f"rtl/mem/{fc.ident}_words.mem"
    assert {p for p in hls_a if hls_a[p] != hls_b[p]} == {inc}
    assert {p for p in rtl_a if rtl_a[p] != rtl_b[p]} == {mem}
    assert _inc(hls_b, inc)[0][0] == _mem(rtl_b, mem)[0] == int(words[0, 0])
    wider = make_plan(graph, pe=1, pe_layers={fc.name: 2})
    assert render_project_sources(graph, wider)[f"firmware/kernels/{fc.ident}.h"] != hls_a[f"firmware/kernels/{fc.ident}.h"]
    assert render_rtl(graph, wider)["rtl/engines.json"] != rtl_a["rtl/engines.json"]
