"""One RTL engine per op: the engine instances of a layer and their memory images, from the plan.

``ENGINES[op](graph, plan, layer, files)`` returns ``(instances, comment)``: each instance names
its module (``admm_wengine``, ``admm_pool``, ``admm_eltwise``), its parameters, the input ports
of the layer it reads (``plan.reads``: a lane reads its own copy of each, ``admm_fm_copy``), and
adds its ``$readmemh`` images to ``files``. A new layer kind adds one entry here, its
Verilog engine (``templates/rtl/``) and its HLS kernel (``backends.hls.kernels``).

The lanes are the plan's: lane (g, b) of a conv / linear layer is one ``admm_wengine`` that
reads group g's lockstep words (the words the HLS kernel streams, word for word) through a row
table holding the group's slots; a pool's, add's or ReLU's channel ranges one instance each; a
concat's inputs one instance each.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...arith import check_multiplier, ubits
from ...hw.layout import Layout, conv_taps
from ...hw.plan import HardwarePlan, LayerHW
from ...hw.streams import WORD_BITS
from ...ir.graph import LayerGraph
from ...sparse.codebook import signed_width

__all__ = ["ENGINES", "engines", "mem_image", "row_table", "read_tables", "packed_table", "word_buffer_depth",
           "IDENTITY", "RD_LAT"]

IDENTITY = (1 << 30, 30)  # M0, SHIFT of the exact identity: (x * 2^30 + 2^29) >> 30 == x
RD_LAT = 6  # cycles from a feature-map read request to its data (admm_fm_copy)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def mem_image(values, bits: int) -> bytes:
    """$readmemh image: one two's-complement value of ``bits`` (<= 63) bits per line, at least
    one line. Vectorized: a large layer's ROM is a million lines."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size == 0:
        v = np.zeros(1, dtype=np.int64)
    digits = max(1, -(-bits // 4))
    u = (v & ((1 << bits) - 1)).astype(np.uint64)
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    text = np.empty((v.size, digits + 1), dtype=np.uint8)
    text[:, :digits] = _HEX[((u[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    text[:, digits] = ord("\n")
    return text.tobytes()


def row_table(word, slot, count, obase, bias, acc_bits: int, widths: dict[str, int]) -> bytes:
    """A PE's row table ($readmemh, one line per row it computes): {bias, obase, count, slot,
    word} with the widths of ``widths`` (WORD_W, 6, COUNT_W, OBASE_W, acc_bits; listed here MSB
    first): the word of the row's first entry and its entry slot in that word, its entry count,
    the address of its first output position in the lane's output bank and its bias (two's
    complement)."""
    ww, cw, ow = widths["WORD_W"], widths["COUNT_W"], widths["OBASE_W"]
    total = ww + 6 + cw + ow + acc_bits
    lines = []
    for w, o, c, ob, b in zip(*(np.asarray(a).tolist() for a in (word, slot, count, obase, bias))):
        if w >> ww or o >> 6 or c >> cw or ob >> ow:
            raise ValueError("row table field out of its width")  # a compiler bug, never user input
        value = w | o << ww | c << (ww + 6) | ob << (ww + 6 + cw) | (b & ((1 << acc_bits) - 1)) << (ww + 6 + cw + ow)
        lines.append(f"{value:0{-(-total // 4)}x}\n")
    return "".join(lines or ["0\n"]).encode()


def packed_table(fields: list[tuple[np.ndarray, int]], lines: int | None = None) -> bytes:
    """$readmemh image of a table whose line i packs ``fields`` (values, width), the first at
    the LSB; padded with zero lines to ``lines``."""
    value = np.zeros(len(fields[0][0]), dtype=np.int64)
    shift = 0
    for values, width in fields:
        v = np.asarray(values, dtype=np.int64)
        if v.size and (v.min() < 0 or v.max() >> width):
            raise ValueError("table field out of its width")  # a compiler bug, never user input
        value |= v << shift
        shift += width
    if lines is not None and lines > value.size:
        value = np.concatenate([value, np.zeros(lines - value.size, dtype=np.int64)])
    return mem_image(value, shift)


def read_tables(layout: Layout) -> tuple[dict[str, int], bytes, bytes]:
    """The two tables through which a reader finds element (ch, y, x) of a banked feature map
    (``admm_fm_copy``): per channel {base, group}, per row {offset, band}; and their widths."""
    widths = {"GROUP_W": ubits(layout.groups - 1), "BASE_W": ubits(int(layout.channel_base.max())),
              "BAND_W": ubits(len(layout.bands) - 1), "ROFF_W": ubits(int(layout.row_offset.max()))}
    ch = packed_table([(layout.group_of, widths["GROUP_W"]), (layout.channel_base, widths["BASE_W"])])
    row = packed_table([(layout.band_of, widths["BAND_W"]), (layout.row_offset, widths["ROFF_W"])])
    return widths, ch, row


def _params(items: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for k, v in items:
        if isinstance(v, str):
            out.append((k, f'"{v}"'))
        elif k.startswith("M0"):
            out.append((k, f"64'd{int(v)}"))
        else:
            out.append((k, str(int(v))))
    return out


def _weighted(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    node = graph[layer.name]
    s, st = layer.schedule, layer.stream
    ident = layer.ident
    m = node.quant["multiplier"]
    check_multiplier(m.m0, m.shift, node.where())
    lay_in = plan.reads(layer.name)[0].layout
    cin, h, w = lay_in.shape
    rows, cols = st.rows, st.cols
    if node.op == "conv":
        cout, ho, wo = node.shape
        _, _, kh, kw = node.params["weight"].shape
        (sh, sw), (ph, pw) = node.params["stride"], node.params["padding"]
        if cols != cin * kh * kw or rows != cout:
            raise ValueError(f"{node.where()}: packed {rows}x{cols} does not match the conv shape")
        what = f"conv {cin}x{h}x{w} -> {cout}x{ho}x{wo}, kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}"
    else:  # a conv whose kernel covers the whole (flattened) input: one output position
        kh, kw, sh, sw, ph, pw, ho, wo = h, w, 1, 1, 0, 0, 1, 1
        if cols != cin * h * w:
            raise ValueError(f"{node.where()}: packed {rows}x{cols} does not match the {cin * h * w} inputs")
        what = f"linear {cols} -> {rows}"
    geo = dict(CIN=cin, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo)
    level_bits = max(2, signed_width(st.levels))
    # every code the value field can hold has a level, zero past the real ones (a flipped code)
    files[f"rtl/mem/{ident}_codebook.mem"] = mem_image(st.codebook, level_bits)
    ch, ky, kx = conv_taps(cols, kh, kw)  # column -> (channel, ky, kx): no division in the engine
    col_w = ubits(cols - 1)
    ch_w, k_w = ubits(cin - 1), ubits(max(kh, kw) - 1)
    files[f"rtl/mem/{ident}_cols.mem"] = packed_table([(ch, ch_w), (ky, k_w), (kx, k_w)], lines=1 << col_w)
    lay_out = layer.layout
    start = s.slot_start
    widths = {"WORD_W": max(1, layer.steps.bit_length()), "COUNT_W": layer.count_bits,
              "OBASE_W": ubits(lay_out.bank_size - 1)}
    blob = layer.placement == "blob"
    instances = []
    for g in range(s.groups):
        slots = np.flatnonzero(s.slot_rows[:, g] >= 0)
        rows_g = s.slot_rows[slots, g]
        stem = f"mem/{ident}" if s.groups == 1 else f"mem/{ident}_g{g}"
        if not blob:
            files[f"rtl/{stem}_words.mem"] = mem_image(layer.words[g].astype(np.int64), WORD_BITS)
        files[f"rtl/{stem}_rows.mem"] = row_table(start[slots] // st.per_word, start[slots] % st.per_word,
                                                  s.slot_count[slots], lay_out.channel_base[rows_g], st.bias[rows_g],
                                                  st.acc_bits, widths)
        for lo, hi in s.bands:
            params = [("ROWS", slots.size), ("COLS", cols), *geo.items(),
                      ("VB", st.value_bits), ("EB", st.width), ("ECC_BITS", st.ecc_bits),
                      ("N_WORDS", max(1, layer.steps)),
                      ("N_LEVELS", max(1, st.codebook.size)), ("LEVEL_BITS", level_bits), ("ACC_BITS", st.acc_bits),
                      ("ACT_BITS", plan.act_bits), ("M0", int(m.m0)), ("SHIFT", int(m.shift)),
                      ("RELU", int(bool(node.relu))), ("COL_W", col_w), ("CH_W", ch_w), ("K_W", k_w),
                      *widths.items(), ("RD_LAT", RD_LAT), ("BLOB", int(blob)), ("BUF_DEPTH", word_buffer_depth(layer)),
                      ("WORDS_FILE", f"{stem}_words.mem" if not blob else "none"),
                      ("CODEBOOK_FILE", f"mem/{ident}_codebook.mem"),
                      ("ROWS_FILE", f"{stem}_rows.mem"), ("COL_FILE", f"mem/{ident}_cols.mem"),
                      ("OY_LO", lo), ("OY_HI", hi)]
            instances.append(dict(pe=len(instances), group=g, band=[lo, hi], module="admm_wengine",
                                  params=_params(params), ports=[0]))
    comment = (f"{node.name}: {what}, {st.format} weights ({st.value_bits}-bit codes"
               + (f", {st.index_bits}-bit gaps" if st.format == "relative" else "")
               + f"), {st.acc_bits}-bit accumulator" + (", ReLU" if node.relu else "")
               + f", {s.groups} row group(s) x {len(s.bands)} band(s) in lockstep, {s.slots} slots"
               + (", words from off-chip (AXI)" if blob else ""))
    return instances, comment


def word_buffer_depth(layer: LayerHW) -> int:
    """Words of an off-chip layer's per-lane circular buffer: a power of two that holds a whole
    slot's words (replayed at every position) twice over, so the next slot's words stream in
    while the current one is replayed."""
    if layer.placement != "blob":
        return 2
    return 1 << max(1, (2 * layer.slot_words - 1).bit_length())


def _pool(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    node = graph[layer.name]
    c, h, w = plan.reads(layer.name)[0].layout.shape
    _, ho, wo = node.shape
    p = node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    avg = node.op == "avgpool"
    m = node.quant["multiplier"] if avg else None
    if avg and kh * kw * 2 ** (plan.act_bits - 1) >= 2**31:
        raise ValueError(f"{node.where()}: a {kh}x{kw} window sum does not fit the pool engine's 32 bits")
    params = dict(C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo, ACT_BITS=plan.act_bits,
                  AVG=int(avg), M0=int(m.m0) if avg else IDENTITY[0], SHIFT=int(m.shift) if avg else IDENTITY[1],
                  RELU=int(bool(node.relu)), RD_LAT=RD_LAT)
    insts = [dict(pe=k, module="admm_pool", ports=[0], params=_params(list({**params, "C_LO": lo, "C_HI": hi}.items())))
             for k, (lo, hi) in enumerate(layer.ranges)]
    comment = (f"{node.name}: {'average' if avg else 'max'}-pool {kh}x{kw} stride {sh}x{sw} padding {ph}x{pw}, "
               f"{c}x{h}x{w} -> {c}x{ho}x{wo}" + (", ReLU" if node.relu else "")
               + f", {len(insts)} channel range(s)")
    return insts, comment


def _elementwise(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    """An add or standalone ReLU: one instance per channel range."""
    node = graph[layer.name]
    reads = plan.reads(layer.name)
    shape = layer.layout.shape
    if any(ch.layout.shape != shape for ch in reads):
        raise ValueError(f"{node.where()}: the RTL backend reads an element-wise layer's inputs in its output's "
                         f"shape {'x'.join(map(str, shape))}, and an input has another")
    c, h, w = shape
    base = dict(H=h, W=w, INPUTS=1, ACT_BITS=plan.act_bits, M0A=IDENTITY[0], M0B=0, SHIFT=IDENTITY[1],
                RELU=int(bool(node.relu)), RD_LAT=RD_LAT)
    if node.op == "relu":
        base.update(RELU=1)
        what = "ReLU"
    else:
        ma, mb = node.quant["multipliers"]
        if ma.shift != mb.shift:
            raise ValueError(f"{node.where()}: the add's two multipliers must share one shift")
        base.update(INPUTS=2, M0A=int(ma.m0), M0B=int(mb.m0), SHIFT=int(ma.shift))
        what = "residual add" + (", ReLU" if node.relu else "")
    check_multiplier(base["M0A"], base["SHIFT"], node.where())
    check_multiplier(base["M0B"], base["SHIFT"], node.where())
    insts = [dict(pe=k, module="admm_eltwise", ports=list(range(len(reads))),
                  params=_params(list(dict(base, C_LO=lo, C_HI=hi).items())))
             for k, (lo, hi) in enumerate(layer.ranges)]
    return insts, f"{node.name}: {what}, {'x'.join(map(str, node.shape))}, {len(insts)} channel range(s)"


def _concat(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    """One lane per input: lane k copies input k, requantized, into output bank k."""
    node = graph[layer.name]
    if node.relu:
        raise ValueError(f"{node.where()}: a ReLU fused into concat is not part of the contract")
    insts = []
    for k, (ch, m) in enumerate(zip(plan.reads(layer.name), node.quant["multipliers"])):
        check_multiplier(m.m0, m.shift, node.where())
        c, h, w = ch.layout.shape
        p = dict(C_LO=0, C_HI=c, H=h, W=w, INPUTS=1, ACT_BITS=plan.act_bits, M0A=int(m.m0), M0B=0,
                 SHIFT=int(m.shift), RELU=0, RD_LAT=RD_LAT)
        insts.append(dict(pe=k, module="admm_eltwise", ports=[k], params=_params(list(p.items())), label=f"in{k}"))
    return insts, f"{node.name}: channel concat of {len(insts)} inputs, {'x'.join(map(str, node.shape))}"


ENGINES: dict[str, Callable] = {"conv": _weighted, "linear": _weighted, "maxpool": _pool, "avgpool": _pool,
                                "add": _elementwise, "relu": _elementwise, "concat": _concat}


def engines(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    make = ENGINES.get(layer.op)
    if make is None:
        raise ValueError(f"node {layer.name}: the RTL backend has no engine for op '{layer.op}' "
                         f"(supported: {', '.join(ENGINES)})")
    return make(graph, plan, layer, files)
