"""One HLS kernel per op: its template and its context, from the hardware plan.

``KERNELS[op](graph, plan, layer)`` returns a ``Kernel``: the template (``templates/hls/``), the
context it renders with, and the ROM data files it includes (``firmware/weights/*.inc``). A new
layer kind adds one entry here, its template, and its RTL engine (``backends.rtl.engines``).

Tables a kernel reads its input through (``hw.layout``): per channel the bank group and the
channel's base address in the bank, per input row the band and the row's offset. Table entries
are unsigned bit fields packed into one integer; the context names each field's bit range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...arith import bits_for, check_multiplier, qrange, ubits
from ...hw.layout import Layout, conv_taps, shape3
from ...hw.memory import part_memory, rom_impl
from ...hw.plan import Channel, HardwarePlan, LayerHW
from ...ir.graph import LayerGraph
from ...sparse.codebook import signed_width
from ...sparse.ecc import data_positions, syndrome_masks

__all__ = ["Kernel", "KERNELS", "kernel", "c_values", "BANNER"]

BANNER = "admm-hls generated file: do not edit (regenerate with admm-hls)"


@dataclass
class Kernel:
    template: str
    ctx: dict[str, Any]
    data: dict[str, bytes] = field(default_factory=dict)  # firmware/weights/<name> -> contents


# -- C text ------------------------------------------------------------------------------------------
def rom_type(bits: int, signed: bool) -> str:
    """ROM element type: the exact ap_(u)int for synthesis, a plain C integer of the same value
    for g++ (large ap_uint initializer lists take g++ minutes: ap types have no constexpr
    constructors)."""
    bits = max(1, int(bits))
    if signed:
        ap, c = f"ap_int<{max(bits, 2)}>", "int" if bits <= 32 else "long long"
    else:
        ap, c = f"ap_uint<{bits}>", "unsigned int" if bits <= 32 else "unsigned long long"
    return f"ADMM_ROM_T({ap}, {c})"


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_items(v: np.ndarray, wide: bool, per_line: int) -> str:
    """Fixed-width hex literals ("0x0000abcdu"), ``per_line`` to a line: vectorized, a ROM can
    hold a million words."""
    u = v.astype(np.uint64)
    digits = max(1, (int(u.max(initial=0)).bit_length() + 3) // 4)
    suffix = b"ull" if wide else b"u"
    width = 2 + digits + len(suffix) + 2  # "0x", digits, suffix, separator
    text = np.empty((u.size, width), dtype=np.uint8)
    text[:, :2] = np.frombuffer(b"0x", dtype=np.uint8)
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    text[:, 2:2 + digits] = _HEX[((u[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    text[:, 2 + digits:2 + digits + len(suffix)] = np.frombuffer(suffix, dtype=np.uint8)
    text[:, -2:] = np.frombuffer(b", ", dtype=np.uint8)
    text[per_line - 1::per_line, -1] = ord("\n")
    return text.tobytes().decode()[:-2]


def c_values(values, *, hexa: bool = False, per_line: int = 16, wide: bool = False) -> str:
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        v = np.zeros(1, dtype=np.int64)
    if hexa:
        return _hex_items(v, wide, per_line)
    items = [f"{int(x)}{'ll' if wide and not -2**31 <= int(x) < 2**31 else ''}" for x in v.tolist()]
    return ",\n".join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def _inc_1d(values, **kw) -> bytes:
    """An initializer list's body (a ROM's contents), for #include inside the braces."""
    return (f"// {BANNER}\n" + c_values(values, **kw) + "\n").encode()


def _inc_2d(rows, **kw) -> bytes:
    return (f"// {BANNER}\n" + ",\n".join("{" + c_values(r, **kw) + "}" for r in rows) + "\n").encode()


def _pack(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, tuple[int, int]], int]:
    """Unsigned fields packed LSB first in the given order: (values, {name: (lo, hi)}, bits)."""
    out, ranges, lo = None, {}, 0
    for name, col in columns.items():
        col = np.asarray(col, dtype=np.int64)
        if col.size and int(col.min()) < 0:
            raise ValueError(f"table field {name} is negative")  # a compiler bug, never user input
        width = ubits(int(col.max(initial=0)))
        ranges[name] = (lo, lo + width - 1)
        part = col.astype(np.uint64) << np.uint64(lo)
        out = part if out is None else out | part
        lo += width
    return out, ranges, lo


def _mult(m, what: str) -> dict[str, Any]:
    check_multiplier(m.m0, m.shift, what)
    return {"m0": f"{int(m.m0)}LL", "shift": int(m.shift)}


# -- channels ----------------------------------------------------------------------------------------
def _channel(ch: Channel) -> dict[str, Any]:
    lay = ch.layout
    return {"copies": ch.copies, "groups": lay.groups, "bands": len(lay.bands), "bank_size": lay.bank_size}


def _channel_tables(lay: Layout) -> dict[str, Any]:
    """Per channel (group, base) and per row (band, offset) of a layout, packed, with their types."""
    chan, f_chan, chan_bits = _pack({"ig": lay.group_of, "base": lay.channel_base})
    row, f_row, row_bits = _pack({"band": lay.band_of, "ofs": lay.row_offset})
    return {"chan": chan, "row": row, "chan_bits": chan_bits, "row_bits": row_bits,
            "chan_t": rom_type(chan_bits, False), "row_t": rom_type(row_bits, False),
            "f_ig": f_chan["ig"], "f_base": f_chan["base"], "f_band": f_row["band"], "f_ofs": f_row["ofs"],
            "c": lay.shape[0], "h": lay.shape[1], "w": lay.shape[2]}


def _outputs(plan: HardwarePlan, layer: LayerHW) -> dict[str, Any]:
    outs = [{"arg": f"out{i}", "copies": c.copies} for i, c in enumerate(plan.writes(layer.name))]
    lay = layer.layout
    return {"outs": outs, "groups_out": lay.groups, "bands_out": len(lay.bands), "bank_out": lay.bank_size}


def _ranges_text(ranges) -> str:
    text = ", ".join(f"{lo}..{hi - 1}" for lo, hi in ranges[:6])
    return text + (", ..." if len(ranges) > 6 else "")


def _geometry(node) -> str:
    """'kernel 3x3, stride 1x1, padding 1x1' of a conv (kernel from its weights) or a pool."""
    p = node.params
    kh, kw = p["kernel"] if "kernel" in p else p["weight"].shape[2:]
    (sh, sw), (ph, pw) = p["stride"], p["padding"]
    return f"kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}"


# -- kernels -----------------------------------------------------------------------------------------
def _input(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    ctx = {"id": layer.ident, "name": layer.name, "size": layer.iterations, **_outputs(plan, layer)}
    return Kernel("kernel_input.h.j2", ctx)


def _output(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    (ch,) = plan.reads(layer.name)
    t = _channel_tables(ch.layout)
    ctx = {"id": layer.ident, "name": layer.name, "size": ch.layout.size, "input": _channel(ch), **t,
           "chans": c_values(t["chan"], hexa=True, wide=t["chan_bits"] > 32),
           "rows": c_values(t["row"], hexa=True, wide=t["row_bits"] > 32)}
    return Kernel("kernel_output.h.j2", ctx)


def _weighted(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    node = graph[layer.name]
    (ch,) = plan.reads(layer.name)
    s, st = layer.schedule, layer.stream
    ident = layer.ident
    conv = node.op == "conv"
    data: dict[str, bytes] = {}
    count_bits = layer.count_bits
    bias = np.zeros((s.groups, s.slots), dtype=np.int64)
    valid = s.slot_rows >= 0
    bias.T[valid] = st.bias[s.slot_rows[valid]]
    data[f"{ident}_count.inc"] = _inc_1d(s.slot_count)
    data[f"{ident}_bias.inc"] = _inc_2d(bias)
    lay_in = ch.layout
    if conv:
        cin, h, w = lay_in.shape
        _, _, kh, kw = node.params["weight"].shape
        (sh, sw), (ph, pw) = node.params["stride"], node.params["padding"]
        if st.cols != cin * kh * kw:
            raise ValueError(f"{node.where()}: packed {st.rows}x{st.cols} does not match the conv shape")
        chan, ky, kx = conv_taps(st.cols, kh, kw)
        cols, f_col, col_bits = _pack({"ig": lay_in.group_of[chan], "base": lay_in.channel_base[chan], "ky": ky,
                                       "kx": kx})
        t = _channel_tables(lay_in)  # the row table: every lane its own copy
        data[f"{ident}_rows.inc"] = _inc_2d([t["row"]] * s.lanes, hexa=True, wide=t["row_bits"] > 32)
        geo = {"h": h, "w": w, "sh": sh, "sw": sw, "ph": ph, "pw": pw, "wo": s.wo,
               "band_iy": [lo * sh for lo, _ in s.bands], "row_bits": t["row_bits"], "row_t": t["row_t"],
               "f_ig": f_col["ig"], "f_base": f_col["base"], "f_ky": f_col["ky"], "f_kx": f_col["kx"],
               "f_band": t["f_band"], "f_ofs": t["f_ofs"]}
        what = (f"conv {node.name}: {cin}x{h}x{w} -> {'x'.join(map(str, node.shape))}, {_geometry(node)}, "
                f"{st.format} weights")
    else:
        if st.cols != lay_in.size:
            raise ValueError(f"{node.where()}: packed {st.rows}x{st.cols} does not match {node.shape[0]}x{lay_in.size}")
        ig, band, local = lay_in.locate(np.arange(st.cols))
        cols, f_col, col_bits = _pack({"ig": ig, "band": band, "local": local})
        geo = {"f_ig": f_col["ig"], "f_band": f_col["band"], "f_local": f_col["local"]}
        what = f"linear {node.name}: {st.cols} -> {st.rows}, {st.format} weights"
    data[f"{ident}_cols.inc"] = _inc_2d([cols] * s.groups, hexa=True, wide=col_bits > 32)
    level_bits = max(2, signed_width(st.levels))
    ctx: dict[str, Any] = {
        "id": ident, "name": node.name, "op": node.op, "conv": conv, "what": what,
        "groups": s.groups, "bands": len(s.bands), "lanes": s.lanes, "slots": s.slots, "positions": s.positions,
        "iterations": s.iterations, "relative": st.format == "relative", "value_bits": st.value_bits,
        "entry_bits": st.width, "code_mask": (1 << st.value_bits) - 1, "cols": st.cols,
        "count_bits": count_bits, "acc_bits": st.acc_bits, "rec_bits": layer.slot_bits, "step_bits": layer.step_bits,
        "count_t": rom_type(count_bits, False), "bias_t": rom_type(st.acc_bits, True),
        # every code the value field can hold has a level (zero past the real ones)
        "level_bits": level_bits, "level_t": rom_type(level_bits, True), "n_levels": max(1, st.codebook.size),
        "codebook": c_values(st.codebook if st.codebook.size else [0]),
        "ecc_bits": st.ecc_bits, "data_bits": st.data_bits, "ecc_masks": syndrome_masks(st.data_bits),
        "ecc_positions": data_positions(st.data_bits),
        "col_bits": col_bits, "col_t": rom_type(col_bits, False),
        "relu": "true" if node.relu else "false", **_mult(node.quant["multiplier"], node.where()),
        "input": _channel(ch), **_outputs(plan, layer), **geo,
        "blob": layer.placement == "blob", "steps": layer.steps, "buf_words": layer.slot_words,
    }
    if layer.placement == "blob":
        ctx.update(beat_bits=layer.beat_bits, beats=layer.beats, beats_per_step=layer.beats_per_step)
    else:
        ctx.update(word_t=rom_type(32, False), rom_impl=rom_impl(layer.steps, 32, part_memory(plan.part)))
        data[f"{ident}_words.inc"] = _inc_2d(layer.words, hexa=True, per_line=8)
    return Kernel("kernel_weighted.h.j2", ctx, data)


def _ranged_inputs(plan: HardwarePlan, layer: LayerHW, data: dict[str, bytes]) -> list[dict[str, Any]]:
    """The inputs of a lane-per-channel-range process, with the per-lane channel tables (channel
    lo[r] + cc for cc < the widest range; past a lane's range: entry 0) and row tables."""
    span = max(hi - lo for lo, hi in layer.ranges)
    inputs = []
    for i, ch in enumerate(plan.reads(layer.name)):
        t = _channel_tables(ch.layout)
        chans = np.zeros((len(layer.ranges), span), dtype=np.uint64)
        for r, (lo, hi) in enumerate(layer.ranges):
            chans[r, : hi - lo] = t["chan"][lo:hi]
        suffix = "" if layer.kind == "window" else str(i)
        data[f"{layer.ident}_chans{suffix}.inc"] = _inc_2d(chans, hexa=True, wide=t["chan_bits"] > 32)
        data[f"{layer.ident}_rows{suffix}.inc"] = _inc_2d([t["row"]] * len(layer.ranges), hexa=True,
                                                         wide=t["row_bits"] > 32)
        inputs.append({**_channel(ch), **{k: v for k, v in t.items() if k not in ("chan", "row")}})
    return inputs


def _window(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    node = graph[layer.name]
    (src,) = graph.inputs(node.name)
    c, h, w = shape3(graph[src].shape)
    _, ho, wo = node.shape
    p = node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    data: dict[str, bytes] = {}
    (inp,) = _ranged_inputs(plan, layer, data)
    avg = node.op == "avgpool"
    kind = "average" if avg else "max"
    ctx = {"id": layer.ident, "name": node.name, "op": node.op, "avg": avg, "lanes": layer.lanes,
           "span": max(hi - lo for lo, hi in layer.ranges), "ranges_text": _ranges_text(layer.ranges),
           "iterations": layer.iterations, "h": h, "w": w, "ho": ho, "wo": wo, "kh": kh, "kw": kw, "sh": sh, "sw": sw,
           "ph": ph, "pw": pw, "relu": "true" if node.relu else "false", "input": inp, **_outputs(plan, layer),
           **{k: inp[k] for k in ("chan_t", "row_t", "chan_bits", "row_bits", "f_ig", "f_base", "f_band", "f_ofs")},
           "what": f"{kind}-pool {node.name}: {c}x{h}x{w} -> {c}x{ho}x{wo}, {_geometry(node)}, {layer.lanes} lane(s)"}
    if avg:
        ctx.update(_mult(node.quant["multiplier"], node.where()))
        ctx["sum_bits"] = bits_for(kh * kw * -qrange(plan.act_bits)[0])
        if ctx["sum_bits"] > 32:
            raise ValueError(f"{node.where()}: a {kh}x{kw} window sum needs more than 32 bits")
    return Kernel("kernel_window.h.j2", ctx, data)


def _elementwise(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    node = graph[layer.name]
    c, h, w = shape3(node.shape)
    data: dict[str, bytes] = {}
    inputs = _ranged_inputs(plan, layer, data)
    ctx: dict[str, Any] = {"id": layer.ident, "name": node.name, "op": node.op, "lanes": layer.lanes,
                           "span": max(hi - lo for lo, hi in layer.ranges), "ranges_text": _ranges_text(layer.ranges),
                           "iterations": layer.iterations, "h": h, "w": w, "inputs": inputs,
                           "relu": "true" if node.relu else "false", **_outputs(plan, layer)}
    if node.op == "add":
        ma, mb = (_mult(m, node.where()) for m in node.quant["multipliers"])
        if ma["shift"] != mb["shift"]:
            raise ValueError(f"{node.where()}: add multipliers must share one shift")
        ctx.update(ma=ma["m0"], mb=mb["m0"], shift=ma["shift"])
        what = "residual add" + (" with ReLU" if node.relu else "")
    else:
        what = "ReLU"
    ctx["what"] = f"{what} {node.name}: {'x'.join(map(str, node.shape))}, {layer.lanes} lane(s)"
    return Kernel("kernel_elementwise.h.j2", ctx, data)


def _concat(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    node = graph[layer.name]
    if node.relu:
        raise ValueError(f"{node.where()}: a ReLU fused into concat is not part of the contract")
    c, h, w = shape3(node.shape)
    inputs = []
    for ch, m in zip(plan.reads(layer.name), node.quant["multipliers"]):
        t = _channel_tables(ch.layout)
        inputs.append({**_channel(ch), **{k: v for k, v in t.items() if k not in ("chan", "row")},
                       "chans": c_values(t["chan"], hexa=True, wide=t["chan_bits"] > 32),
                       "rows": c_values(t["row"], hexa=True, wide=t["row_bits"] > 32),
                       "size": ch.layout.size, **_mult(m, node.where())})
    ctx = {"id": layer.ident, "name": node.name, "op": "concat", "iterations": layer.iterations, "h": h, "w": w,
           "inputs": inputs, "sizes": [i["size"] for i in inputs], **_outputs(plan, layer),
           "what": f"concat {node.name}: {len(inputs)} inputs along channels -> {'x'.join(map(str, node.shape))}, "
                   "each requantized"}
    return Kernel("kernel_concat.h.j2", ctx)


KERNELS: dict[str, Callable[[LayerGraph, HardwarePlan, LayerHW], Kernel]] = {
    "input": _input, "output": _output, "conv": _weighted, "linear": _weighted, "maxpool": _window,
    "avgpool": _window, "add": _elementwise, "relu": _elementwise, "concat": _concat,
}


def kernel(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW) -> Kernel:
    make = KERNELS.get(layer.op)
    if make is None:
        raise ValueError(f"node {layer.name}: the HLS backend has no kernel for op '{layer.op}' "
                         f"(supported: {', '.join(KERNELS)})")
    return make(graph, plan, layer)
