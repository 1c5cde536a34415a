"""The backend-neutral hardware plan: lockstep schedules, the per-group streams, feature-map
banking, placement, the memory budget and the cycle model (no compiler, no simulator)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from admm_hls.calibration import measure_ranges
from admm_hls.errors import UserError
from admm_hls.hw.layout import range_layout, weighted_layout
from admm_hls.hw.memory import part_memory, storage
from admm_hls.hw.plan import make_plan
from admm_hls.hw.schedule import Schedule, band_ranges, best_schedule, deal_rows
from admm_hls.hw.streams import lockstep_fields, weight_stream
from admm_hls.ir.lower import lower_model
from admm_hls.sparse import decode_relative, encode_relative

entries_st = st.lists(st.integers(0, 60), min_size=1, max_size=80).map(lambda v: np.array(v, dtype=np.int64))


# -- schedules ----------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(entries_st, st.integers(1, 20))
def test_every_row_in_exactly_one_slot(entries, groups):
    slot_rows, count = deal_rows(entries, groups)
    rows = slot_rows[slot_rows >= 0]
    assert sorted(rows.tolist()) == list(range(entries.size))
    assert slot_rows.shape == (-(-entries.size // groups), groups)
    for s in range(slot_rows.shape[0]):  # a slot lasts as long as its longest row, at least a cycle
        mine = slot_rows[s][slot_rows[s] >= 0]
        assert count[s] == max(1, int(entries[mine].max()))
    assert (np.diff(count) <= 0).all()  # longest rows first


@settings(max_examples=200, deadline=None)
@given(entries_st, st.integers(1, 8), st.randoms(use_true_random=False))
def test_sorted_slots_pad_least(entries, groups, rnd):
    """Chunking the sorted rows minimizes the sum of slot maxima (the lockstep cycles) over
    every way of putting the rows into slots of ``groups``."""
    _, count = deal_rows(entries, groups)
    order = list(range(entries.size))
    rnd.shuffle(order)
    other = sum(max(1, int(entries[order[i:i + groups]].max())) for i in range(0, len(order), groups))
    assert int(count.sum()) <= other


@settings(max_examples=200, deadline=None)
@given(entries_st, st.integers(1, 12), st.integers(1, 12), st.integers(1, 24))
def test_best_schedule_within_budget_and_monotone(entries, ho, wo, budget):
    s = best_schedule(entries, ho, wo, budget)
    assert s.lanes <= max(1, budget) and s.groups <= entries.size and len(s.bands) <= ho
    assert s.iterations == int(s.slot_count.sum()) * s.band_rows * wo
    assert best_schedule(entries, ho, wo, budget + 1).iterations <= s.iterations  # more lanes never slower
    lo = [b[0] for b in s.bands]
    assert lo[0] == 0 and s.bands[-1][1] == ho and all(a[1] == b[0] for a, b in zip(s.bands, s.bands[1:]))


def test_band_ranges():
    assert band_ranges(7, 3) == ((0, 2), (2, 4), (4, 7))
    assert band_ranges(4, 4) == ((0, 1), (1, 2), (2, 3), (3, 4))


# -- streams --------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 40), st.floats(0.0, 0.6), st.integers(1, 4), st.integers(1, 5),
       st.integers(0, 2**31))
def test_lockstep_streams_hold_every_row(rows, cols, density, index_bits, groups, seed):
    """Group g's lockstep stream holds, at the start of each slot, its row's entries verbatim, then
    zero entries up to the slot's count: decoding them gives back the row's codes."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((rows, cols)) < density, rng.integers(1, 4, (rows, cols)), 0)
    layer = encode_relative(codes, 2, index_bits, 32, n_levels=3)
    ptr = np.asarray(layer.row_ptr)
    fields = np.asarray(layer.entries)
    entries = np.diff(ptr)
    slot_rows, count = deal_rows(entries, groups)
    sched = Schedule(groups, ((0, 1),), 1, slot_rows, count)
    stream = _fake_stream(fields, ptr, layer.value_bits + layer.index_bits, rows, cols)
    lock = lockstep_fields(stream, sched)
    start = np.concatenate([[0], np.cumsum(count)])[:-1]
    assert lock.shape == (groups, int(count.sum()))
    for s in range(sched.slots):
        for g in range(groups):
            seg = lock[g, start[s]:start[s] + count[s]]
            r = slot_rows[s, g]
            n = int(entries[r]) if r >= 0 else 0
            assert (seg[n:] == 0).all()
            if r >= 0:
                np.testing.assert_array_equal(seg[:n], fields[ptr[r]:ptr[r + 1]])
                one = dataclasses.replace(layer, rows=1, row_ptr=np.array([0, count[s]]),
                                          words=_pack(seg, layer.value_bits + layer.index_bits))
                decoded = decode_relative(dataclasses.replace(one, cols=cols + int(count[s])))
                np.testing.assert_array_equal(decoded[0, :cols], codes[r])
                assert not decoded[0, cols:].any()


def _pack(fields, width):
    from admm_hls.sparse import pack

    return np.asarray(pack(np.asarray(fields, dtype=np.int64), width, 32), dtype=np.uint32)


def _fake_stream(fields, ptr, width, rows, cols):
    from admm_hls.hw.streams import WeightStream

    return WeightStream("relative", np.asarray(fields, np.int64), np.asarray(ptr, np.int64), width, 2, width - 2,
                        rows, cols, np.array([1, 2, 3]), np.zeros(rows, np.int64), 0, 2)


# -- layouts --------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.integers(1, 9), st.integers(1, 7), st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**31))
def test_weighted_layout_is_what_the_lanes_write(c, h, w, budget, seed):
    """Lane (g, b) of a conv writes its output (row o, oy, ox) to bank (g, b) at slot * band_rows
    * W + (oy - band_lo) * W + ox (its running output counter); the layout's tables find every
    element there, each bank address used at most once."""
    rng = np.random.default_rng(seed)
    sched = best_schedule(rng.integers(0, 30, c), h, w, budget)
    lay = weighted_layout((c, h, w), sched)
    g_of, b_of, local = lay.locate(np.arange(c * h * w))
    assert (local < lay.bank_size).all() and (local >= 0).all()
    assert len(set(zip(g_of.tolist(), b_of.tolist(), local.tolist()))) == c * h * w
    for s in range(sched.slots):
        for g in range(sched.groups):
            o = sched.slot_rows[s, g]
            if o < 0:
                continue
            for b, (lo, hi) in enumerate(sched.bands):
                for oy in range(lo, hi):
                    for ox in range(w):
                        flat = (o * h + oy) * w + ox
                        q = s * sched.positions + (oy - lo) * w + ox
                        assert (g_of[flat], b_of[flat], local[flat]) == (g, b, q)
    banks = np.zeros((lay.groups, len(lay.bands), lay.bank_size), dtype=np.int64)
    banks[g_of, b_of, local] = np.arange(c * h * w)
    np.testing.assert_array_equal(banks[lay.locate(np.arange(c * h * w))], np.arange(c * h * w))


def test_range_layout():
    lay = range_layout((5, 2, 3), ((0, 2), (2, 4), (4, 5)))
    assert lay.banks == 3 and lay.bank_size == 2 * 2 * 3
    g, b, local = lay.locate(np.arange(30))
    assert g.tolist() == [0] * 12 + [1] * 12 + [2] * 6 and not b.any()
    assert local.tolist() == list(range(12)) * 2 + list(range(6))


# -- memory ---------------------------------------------------------------------------------------------
def test_storage_units():
    zu9 = part_memory("xczu9eg-ffvb1156-2-e")
    assert zu9.bram36 == 912 and zu9.uram == 0
    assert part_memory("xcu250-figd2104-2l-e").uram == 1280 and part_memory("nonsense") is None
    assert storage(64, 8, zu9).kind == "lutram"  # 512 bits
    assert storage(2048, 9, zu9).bram36 == 0.5  # one RAMB18
    assert storage(4096, 8, zu9).bram36 == 1.0  # 4K x 9 twice... or 4K x 4 twice: one RAMB36
    u250 = part_memory("xcu250")
    assert storage(16384, 72, u250).kind == "uram" and storage(16384, 72, u250).uram == 4
    assert storage(16384, 72, u250, rom=True).kind == "bram"  # UltraScale+ UltraRAM holds no initial contents
    assert storage(16384, 8, u250).kind == "bram"  # 8 of 72 bits used: block RAM is cheaper


def _big_conv():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU()).eval()
    x = torch.randn(2, 3, 224, 224)
    return lower_model(model, (3, 224, 224), measure_ranges(model, [x]), name="big")


def test_a_design_that_cannot_fit_is_refused():
    """A 64x224x224 feature map (3.2 MB, twice for ping-pong) is beyond an xczu9eg's 32 Mbit:
    a clear error with the numbers, unless the user asks to build it anyway."""
    graph = _big_conv()
    with pytest.raises(UserError) as info:
        make_plan(graph)
    msg = str(info.value)
    assert "BRAM36" in msg and "xczu9eg" in msg and "--ignore-memory" in msg and "\n" not in msg
    plan = make_plan(graph, check_memory=False)
    assert plan.memory.fits is False and plan.memory.bram36 > 912
    assert make_plan(graph, part="xcu250-figd2104-2l-e").memory.fits  # a larger part holds it
    assert make_plan(graph, part="my-own-board", check_memory=True).memory.fits is None  # unknown: unchecked


# -- the plan -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet():
    import admm_hls
    from admm_hls.resources import resource_dir

    return admm_hls.lower(resource_dir("models") / "lenet5_mnist.pt")


@pytest.mark.parametrize("pe", [1, 3, 4, 16])
def test_pe_is_one_budget_for_every_layer(lenet, pe):
    plan = make_plan(lenet, pe=pe)
    for layer in plan.layers.values():
        assert 1 <= layer.lanes <= pe
        if layer.schedule is not None:
            assert layer.lanes == layer.schedule.groups * len(layer.schedule.bands)
        for ch in plan.reads(layer.name):  # every reader lane has its own copy of the banks
            assert ch.copies == layer.reader_lanes and ch.layout is plan.layers[ch.tensor].layout


def test_cycle_model(lenet):
    one, four = make_plan(lenet, pe=1), make_plan(lenet, pe=4)
    for plan in (one, four):
        hls, rtl = plan.cycles("hls"), plan.cycles("rtl")
        for name, layer in plan.layers.items():
            assert hls[name] > layer.iterations and rtl[name] >= layer.iterations
        assert plan.latency("hls") == sum(hls.values())  # LeNet-5 is a chain of processes
        assert plan.latency("rtl") == sum(rtl.values())
        assert plan.interval("hls") == max(hls.values()) and plan.interval("rtl") >= max(rtl.values())
    assert four.latency("hls") <= 0.3 * one.latency("hls")
    conv1 = lenet.nodes_of("conv")[0]
    s = four.layers[conv1.name].schedule
    assert four.layers[conv1.name].iterations == int(s.slot_count.sum()) * s.band_rows * conv1.shape[2]


def test_placement(lenet):
    plan = make_plan(lenet, onchip_kb=0)
    assert [l.placement for l in plan.weighted()] == ["blob"] * 4
    offsets = [(l.blob_offset, l.blob_bytes) for l in plan.blob_layers()]
    assert all(o % 64 == 0 for o, _ in offsets) and all(a[0] + a[1] <= b[0] for a, b in zip(offsets, offsets[1:]))
    assert plan.blob_size() == offsets[-1][0] + offsets[-1][1]
    some = make_plan(lenet, onchip_kb=2)
    big = {l.name for l in some.weighted() if 4 * l.schedule.groups * l.steps > 2048}
    assert {l.name for l in some.blob_layers()} == big and big and len(big) < 4
    for l in make_plan(lenet, pe=16, onchip_kb=0).blob_layers():
        assert l.beat_bits >= 32 * l.schedule.groups or l.beat_bits == 512
        assert l.beats == l.steps * l.beats_per_step


def test_weight_stream_decodes_once_and_proves_the_accumulator(lenet):
    for node in lenet.nodes_of("conv", "linear"):
        s = weight_stream(node, 8)
        assert s.acc_bits >= node.quant["acc_bits"] and s.acc_bound <= node.quant["acc_bound"]
        assert int(s.nonzeros.sum()) == int(np.count_nonzero(node.params["weight"]))
        assert s.fields.size == int(s.ptr[-1]) == int(s.entries.sum())
