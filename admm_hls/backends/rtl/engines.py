"""One RTL engine per op: the engine instances of a layer and their memory images, from the plan.

``ENGINES[op](graph, plan, layer, files)`` returns ``(instances, comment)``: each instance names
its module (``admm_wengine``, ``admm_pool``, ``admm_eltwise``), its parameters, the tensors it
reads, and adds its ``$readmemh`` images to ``files``. A new layer kind adds one entry here, its
Verilog engine (``templates/rtl/``) and its HLS kernel (``backends.hls.kernels``).

The lanes are the plan's: lane (g, b) of a conv / linear layer is one ``admm_wengine`` that
reads group g's lockstep words (the words the HLS kernel streams, word for word) through a row
table holding the group's slots; a pool's, add's or ReLU's channel ranges one instance each; a
concat's inputs one instance each.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...arith import bits_for, check_multiplier
from ...hw.layout import conv_taps
from ...hw.plan import HardwarePlan, LayerHW
from ...hw.streams import WORD_BITS
from ...ir.graph import LayerGraph
from ...sparse.codebook import signed_width

__all__ = ["ENGINES", "engines", "mem_image", "row_table", "IDENTITY"]

IDENTITY = (1 << 30, 30)  # M0, SHIFT of the exact identity: (x * 2^30 + 2^29) >> 30 == x


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


def row_table(word, off, count, obase, bias, acc_bits: int, widths: dict[str, int]) -> bytes:
    """A PE's row table ($readmemh, one line per row it computes): {bias, obase, count, off,
    word} with the widths of ``widths`` (WORD_W, 6, COUNT_W, OBASE_W, acc_bits; listed here MSB
    first): the word and bit offset of the row's first entry, its entry count, the output
    address of its first output position and its bias (two's complement)."""
    ww, cw, ow = widths["WORD_W"], widths["COUNT_W"], widths["OBASE_W"]
    total = ww + 6 + cw + ow + acc_bits
    lines = []
    for w, o, c, ob, b in zip(*(np.asarray(a).tolist() for a in (word, off, count, obase, bias))):
        if w >> ww or o >> 6 or c >> cw or ob >> ow:
            raise ValueError("row table field out of its width")  # a compiler bug, never user input
        value = w | o << ww | c << (ww + 6) | ob << (ww + 6 + cw) | (b & ((1 << acc_bits) - 1)) << (ww + 6 + cw + ow)
        lines.append(f"{value:0{-(-total // 4)}x}\n")
    return "".join(lines or ["0\n"]).encode()


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
    (src,) = graph.inputs(node.name)
    rows, cols = st.rows, st.cols
    if node.op == "conv":
        cin, h, w = graph[src].shape
        cout, ho, wo = node.shape
        _, _, kh, kw = node.params["weight"].shape
        (sh, sw), (ph, pw) = node.params["stride"], node.params["padding"]
        if cols != cin * kh * kw or rows != cout:
            raise ValueError(f"{node.where()}: packed {rows}x{cols} does not match the conv shape")
        geo = dict(CIN=cin, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo)
        what = f"conv {cin}x{h}x{w} -> {cout}x{ho}x{wo}, kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}"
    else:
        (fin,) = (int(np.prod(graph[src].shape)),)
        geo = dict(CIN=fin, H=1, W=1, KH=1, KW=1, SH=1, SW=1, PH=0, PW=0, HO=1, WO=1)
        what = f"linear {fin} -> {rows}"
    level_bits = max(2, signed_width(st.levels))
    # every code the value field can hold has a level, zero past the real ones (a flipped code)
    files[f"rtl/mem/{ident}_codebook.mem"] = mem_image(st.codebook, level_bits)
    col_files = []
    if node.op == "conv":  # column -> (input offset, ky, kx): no division in the engine
        ch, ky, kx = conv_taps(cols, kh, kw)
        for kind, values, bits in (("ofs", ch * h * w + ky * w + kx, bits_for(cin * h * w) + 1),
                                   ("ky", ky, bits_for(kh) + 1), ("kx", kx, bits_for(kw) + 1)):
            files[f"rtl/mem/{ident}_col_{kind}.mem"] = mem_image(values, bits)
            col_files.append((f"COL_{kind.upper()}_FILE", f"mem/{ident}_col_{kind}.mem"))
    howo = geo["HO"] * geo["WO"]
    start = s.slot_start
    widths = {"WORD_W": max(1, layer.steps.bit_length()), "COUNT_W": layer.count_bits,
              "OBASE_W": max(1, (rows * howo).bit_length())}
    instances = []
    for g in range(s.groups):
        slots = np.flatnonzero(s.slot_rows[:, g] >= 0)
        rows_g = s.slot_rows[slots, g]
        stem = f"mem/{ident}" if s.groups == 1 else f"mem/{ident}_g{g}"
        files[f"rtl/{stem}_words.mem"] = mem_image(layer.words[g].astype(np.int64), WORD_BITS)
        files[f"rtl/{stem}_rows.mem"] = row_table(start[slots] // st.per_word, (start[slots] % st.per_word) * st.width,
                                                  s.slot_count[slots], rows_g * howo, st.bias[rows_g], st.acc_bits,
                                                  widths)
        for lo, hi in s.bands:
            params = [("ROWS", slots.size), ("OUT_ROWS", rows), ("COLS", cols), *geo.items(),
                      ("VB", st.value_bits), ("EB", st.width), ("ECC_BITS", st.ecc_bits),
                      ("N_WORDS", max(1, layer.steps)),
                      ("N_LEVELS", max(1, st.codebook.size)), ("LEVEL_BITS", level_bits), ("ACC_BITS", st.acc_bits),
                      ("ACT_BITS", plan.act_bits), ("M0", int(m.m0)), ("SHIFT", int(m.shift)),
                      ("RELU", int(bool(node.relu))), ("COL_TABLE", int(bool(col_files))), *widths.items(),
                      ("WORDS_FILE", f"{stem}_words.mem"), ("CODEBOOK_FILE", f"mem/{ident}_codebook.mem"),
                      ("ROWS_FILE", f"{stem}_rows.mem"), *col_files, ("OY_LO", lo), ("OY_HI", hi)]
            instances.append(dict(pe=len(instances), group=g, band=[lo, hi], module="admm_wengine",
                                  params=_params(params), srcs=[src]))
    comment = (f"{node.name}: {what}, {st.format} weights ({st.value_bits}-bit codes"
               + (f", {st.index_bits}-bit gaps" if st.format == "relative" else "")
               + f"), {st.acc_bits}-bit accumulator" + (", ReLU" if node.relu else "")
               + f", {s.groups} row group(s) x {len(s.bands)} band(s) in lockstep, {s.slots} slots")
    return instances, comment


def _pool(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    node = graph[layer.name]
    (src,) = graph.inputs(node.name)
    c, h, w = graph[src].shape
    _, ho, wo = node.shape
    p = node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    avg = node.op == "avgpool"
    m = node.quant["multiplier"] if avg else None
    if avg and kh * kw * 2 ** (plan.act_bits - 1) >= 2**31:
        raise ValueError(f"{node.where()}: a {kh}x{kw} window sum does not fit the pool engine's 32 bits")
    params = dict(C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo, ACT_BITS=plan.act_bits,
                  AVG=int(avg), M0=int(m.m0) if avg else IDENTITY[0], SHIFT=int(m.shift) if avg else IDENTITY[1],
                  RELU=int(bool(node.relu)))
    insts = [dict(pe=k, module="admm_pool", srcs=[src], params=_params(list({**params, "C_LO": lo, "C_HI": hi}.items())))
             for k, (lo, hi) in enumerate(layer.ranges)]
    comment = (f"{node.name}: {'average' if avg else 'max'}-pool {kh}x{kw} stride {sh}x{sw} padding {ph}x{pw}, "
               f"{c}x{h}x{w} -> {c}x{ho}x{wo}" + (", ReLU" if node.relu else "")
               + f", {len(insts)} channel range(s)")
    return insts, comment


def _elementwise(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    """An add or standalone ReLU: one instance per channel range (its elements, NCHW)."""
    node = graph[layer.name]
    srcs = graph.inputs(node.name)
    size = int(np.prod(node.shape))
    per_channel = size // (layer.layout.shape[0])
    base = dict(N=size, START=0, INPUTS=1, OUT_OFFSET=0, ACT_BITS=plan.act_bits, M0A=IDENTITY[0], M0B=0,
                SHIFT=IDENTITY[1], RELU=int(bool(node.relu)))
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
    insts = [dict(pe=k, module="admm_eltwise", srcs=list(srcs),
                  params=_params(list(dict(base, START=lo * per_channel, N=hi * per_channel).items())))
             for k, (lo, hi) in enumerate(layer.ranges)]
    return insts, f"{node.name}: {what}, {'x'.join(map(str, node.shape))}, {len(insts)} channel range(s)"


def _concat(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    """One instance per input: input k's values land after those of inputs 0..k-1 (NCHW)."""
    node = graph[layer.name]
    if node.relu:
        raise ValueError(f"{node.where()}: a ReLU fused into concat is not part of the contract")
    insts, offset = [], 0
    for k, (s, m) in enumerate(zip(graph.inputs(node.name), node.quant["multipliers"])):
        check_multiplier(m.m0, m.shift, node.where())
        n = int(np.prod(graph[s].shape))
        p = dict(N=n, START=0, INPUTS=1, OUT_OFFSET=offset, ACT_BITS=plan.act_bits, M0A=int(m.m0), M0B=0,
                 SHIFT=int(m.shift), RELU=0)
        insts.append(dict(pe=k, module="admm_eltwise", srcs=[s], params=_params(list(p.items())), label=f"in{k}"))
        offset += n
    return insts, f"{node.name}: channel concat of {len(insts)} inputs, {'x'.join(map(str, node.shape))}"


ENGINES: dict[str, Callable] = {"conv": _weighted, "linear": _weighted, "maxpool": _pool, "avgpool": _pool,
                                "add": _elementwise, "relu": _elementwise, "concat": _concat}


def engines(graph: LayerGraph, plan: HardwarePlan, layer: LayerHW, files: dict[str, bytes]):
    make = ENGINES.get(layer.op)
    if make is None:
        raise ValueError(f"node {layer.name}: the RTL backend has no engine for op '{layer.op}' "
                         f"(supported: {', '.join(ENGINES)})")
    return make(graph, plan, layer, files)
