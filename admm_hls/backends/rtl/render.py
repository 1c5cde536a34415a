"""Render a packed LayerGraph + BuildPlan into Verilog, memory images and a cocotb testbench.

The RTL reads the SAME packed words and the SAME PE plan as the HLS kernels: PE k of a weighted
layer has the ROM image ``hls.render.layer_words(graph, node, plan)[k]`` and the row pointers
``hls.render.layer_row_ptrs``. Engines: ``admm_wengine`` (one PE of a conv or linear layer,
sparse or dense; P instances side by side), ``admm_pool`` (max or average) and ``admm_eltwise``
(residual add, one input of a concat, standalone ReLU). The top module runs one layer at a time
over on-chip feature-map arrays. Flatten is an alias (NCHW order is the buffer order). Layers the
HLS plan puts in the off-chip blob are on-chip ROMs here.

    files = render_rtl(graph, plan)   # {"rtl/...": bytes}, deterministic

Files: ``rtl/<top>.v``, one ``rtl/<module>.v`` per engine, ``rtl/mem/*.mem`` ($readmemh images,
paths relative to ``rtl/``), ``rtl/engines.json`` (every engine instance and its parameters),
``rtl/tb_<top>.py`` (cocotb tests) and ``rtl/run_cocotb.py`` (cocotb's Python runner;
``python rtl/run_cocotb.py --sim icarus``). The testbench reads the HLS project's test vectors
(``tb/data/input.bin``, ``expected.bin``, ``meta.txt``; see ``hls.render.test_vectors``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ...arith import bits_for, qrange
from ...ir.graph import LayerGraph, Node
from ...resources import template_env
from ...sparse.codebook import signed_width
from ..hls import render as hls_render
from ..hls.render import c_names, tensor_of
from ..hls.plan import BuildPlan

BANNER = hls_render.BANNER
WORD_BITS = 32
WEIGHTED = ("conv", "linear")
SUPPORTED = ("input", "output", "conv", "linear", "maxpool", "avgpool", "add", "concat", "relu", "flatten")
MODULES = ("admm_wengine", "admm_pool", "admm_eltwise")

__all__ = ["render_rtl", "write_rtl", "layer_cycles", "rtl_names", "BANNER", "SUPPORTED"]


def _render(template: str, **ctx: Any) -> bytes:
    return template_env("rtl").get_template(template).render(banner=BANNER, **ctx).encode("utf-8")


def rtl_names(graph: LayerGraph) -> dict[str, str]:
    """Node name -> Verilog identifier (instance, counter and memory-image stem): the same
    names as the HLS kernels, so both projects speak of a layer alike."""
    return c_names(graph)


def _mem(values, bits: int) -> bytes:
    """$readmemh image: one two's-complement value of ``bits`` bits per line (at least one line)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size == 0:
        v = np.zeros(1, dtype=np.int64)
    digits = max(1, -(-bits // 4))
    mask = (1 << bits) - 1
    return ("".join(f"{int(x) & mask:0{digits}x}\n" for x in v.tolist())).encode()


def _row_table(ptr: np.ndarray, pe_rows: np.ndarray, bias: np.ndarray, per_word: int, eb: int, howo: int,
               acc_bits: int, widths: dict[str, int]) -> bytes:
    """A PE's row table ($readmemh, one word per row): {bias, obase, count, off, word} with the
    widths of ``widths`` (WORD_W, 6, COUNT_W, OBASE_W, acc_bits; LSB first as listed last to first):
    the word and bit offset of the row's first entry, its entries, the output address of its
    first output position and its bias (two's complement)."""
    ww, cw, ow = widths["WORD_W"], widths["COUNT_W"], widths["OBASE_W"]
    total = ww + 6 + cw + ow + acc_bits
    fields = zip((ptr[:-1] // per_word).tolist(), ((ptr[:-1] % per_word) * eb).tolist(), np.diff(ptr).tolist(),
                 (pe_rows * howo).tolist(), bias[pe_rows].tolist())
    lines = []
    for word, off, count, obase, b in fields:
        if word >> ww or off >> 6 or count >> cw or obase >> ow:
            raise ValueError("row table field out of its width")  # a compiler bug, never user input
        value = word | off << ww | count << (ww + 6) | obase << (ww + 6 + cw) | (b & ((1 << acc_bits) - 1)) << (ww + 6 + cw + ow)
        lines.append(f"{value:0{-(-total // 4)}x}\n")
    return "".join(lines or ["0\n"]).encode()


def _size(shape) -> int:
    return int(math.prod(shape))


def _act_bits(graph: LayerGraph) -> int:
    return int(graph.meta.get("act_bits", graph.input_node().quant.get("bits", 8)))


def _verilog_params(items: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for k, v in items:
        if isinstance(v, str):
            out.append((k, f'"{v}"'))
        elif k.startswith("M0"):
            out.append((k, f"64'd{int(v)}"))
        else:
            out.append((k, str(int(v))))
    return out


def _weighted(graph: LayerGraph, node: Node, plan: BuildPlan, bands: list[tuple[int, int]] | None, ident: str,
              act_bits: int, files: dict):
    """(instances, comment) of a conv/linear layer: one ``admm_wengine`` per (row group with
    rows, position band)."""
    lp = plan.layers.get(node.name)
    if lp is None:
        raise ValueError(f"the build plan has no entry for weighted layer {node.name}")
    packed = node.packed
    layer = packed.layer
    if packed.format not in ("relative", "dense"):
        raise ValueError(f"{node.where()}: the RTL backend has no engine for weight format '{packed.format}'")
    vb = int(layer.value_bits)
    eb = vb + int(layer.index_bits) if packed.format == "relative" else vb
    levels = np.asarray(packed.codebook.levels, dtype=np.int64)
    q = node.quant
    bias = np.asarray(q["bias"], dtype=np.int64).reshape(-1)
    rows, cols = int(layer.rows), int(layer.cols)
    if bias.size != rows:
        raise ValueError(f"{node.where()}: {bias.size} biases for {rows} rows")
    acc_bits = int(q["acc_bits"])
    # Re-prove the bound from the packed stream (no dense decode): sum |level| per row.
    stream = hls_render._stream(node)
    codes = stream.fields & ((1 << vb) - 1)
    table = np.concatenate([np.zeros(1, np.int64), np.abs(levels)])
    row_of = np.repeat(np.arange(rows), np.diff(stream.ptr))
    sums = np.bincount(row_of, weights=table[codes], minlength=rows).astype(np.int64)
    bound = int((sums * -qrange(act_bits)[0] + np.abs(bias)).max()) if rows else 0
    if bits_for(bound) > acc_bits or acc_bits > 32:
        raise ValueError(f"{node.where()}: accumulator of {acc_bits} bits cannot hold the bound {bound}")
    m = q["multiplier"]
    if not (0 < int(m.m0) < 2**31 and 1 <= int(m.shift) <= 62):
        raise ValueError(f"{node.where()}: multiplier outside the contract")
    level_bits = max(2, signed_width(levels))
    (src,) = graph.inputs(node.name)
    if node.op == "conv":
        cin, h, w = graph[src].shape
        cout, ho, wo = node.shape
        _, _, kh, kw = node.params["weight"].shape
        (sh, sw), (ph, pw) = node.params["stride"], node.params["padding"]
        if cols != cin * kh * kw or rows != cout:
            raise ValueError(f"{node.where()}: packed {rows}x{cols} does not match the conv shape")
        geo = dict(CIN=cin, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo)
        bands = bands or [(0, ho)]
        what = f"conv {cin}x{h}x{w} -> {cout}x{ho}x{wo}, kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}"
    else:
        (fin,) = graph[src].shape
        if cols != fin or rows != node.shape[0]:
            raise ValueError(f"{node.where()}: packed {rows}x{cols} does not match {node.shape[0]}x{fin}")
        geo = dict(CIN=fin, H=1, W=1, KH=1, KW=1, SH=1, SW=1, PH=0, PW=0, HO=1, WO=1)
        bands = bands or [(0, 1)]
        what = f"linear {fin} -> {rows}"
    files[f"rtl/mem/{ident}_codebook.mem"] = _mem(levels, level_bits)
    col_files = []
    if node.op == "conv":  # column -> (input offset, ky, kx): no division in the engine
        col = np.arange(cols, dtype=np.int64)
        ch, ky, kx = col // (kh * kw), (col % (kh * kw)) // kw, col % kw
        for kind, values, bits in (("ofs", ch * h * w + ky * w + kx, bits_for(cin * h * w) + 1),
                                   ("ky", ky, bits_for(kh) + 1), ("kx", kx, bits_for(kw) + 1)):
            files[f"rtl/mem/{ident}_col_{kind}.mem"] = _mem(values, bits)
            col_files.append((f"COL_{kind.upper()}_FILE", f"mem/{ident}_col_{kind}.mem"))
    per_word = WORD_BITS // eb
    howo = geo["HO"] * geo["WO"]
    pe_words = hls_render.layer_words(graph, node.name, plan)
    # row-table field widths (the engine's ROWS_FILE layout)
    widths = {"WORD_W": max(1, max(int(np.asarray(wd).size) for wd in pe_words).bit_length()),
              "COUNT_W": (cols + 1).bit_length(), "OBASE_W": max(1, (rows * howo).bit_length())}
    per_pe = zip(lp.rows, pe_words, hls_render.layer_row_ptrs(graph, node.name, plan))
    instances = []
    for k, (pe_rows, words, ptr) in enumerate(per_pe):
        if len(pe_rows) == 0:
            continue  # more PEs than rows: this one has nothing to compute
        stem = f"mem/{ident}" if lp.pe == 1 else f"mem/{ident}_pe{k}"
        files[f"rtl/{stem}_words.mem"] = _mem(np.asarray(words, dtype=np.int64), 32)
        files[f"rtl/{stem}_rows.mem"] = _row_table(np.asarray(ptr, dtype=np.int64), np.asarray(pe_rows, dtype=np.int64),
                                                   bias, per_word, eb, howo, acc_bits, widths)
        for lo, hi in bands:
            if not 0 <= lo < hi <= geo["HO"]:
                raise ValueError(f"{node.where()}: position band {lo}..{hi} outside 0..{geo['HO']}")
            params = [("ROWS", len(pe_rows)), ("OUT_ROWS", rows), ("COLS", cols), *geo.items(), ("VB", vb),
                      ("EB", eb), ("N_WORDS", max(1, int(np.asarray(words).size))),
                      ("N_LEVELS", max(1, levels.size)), ("LEVEL_BITS", level_bits), ("ACC_BITS", acc_bits),
                      ("ACT_BITS", act_bits), ("M0", int(m.m0)), ("SHIFT", int(m.shift)),
                      ("RELU", int(bool(node.relu))), ("COL_TABLE", int(bool(col_files))), *widths.items(),
                      ("WORDS_FILE", f"{stem}_words.mem"), ("CODEBOOK_FILE", f"mem/{ident}_codebook.mem"),
                      ("ROWS_FILE", f"{stem}_rows.mem"), *col_files, ("OY_LO", lo), ("OY_HI", hi)]
            instances.append(dict(suffix=f"pe{len(instances)}", pe=len(instances), group=k, band=[lo, hi],
                                  module="admm_wengine", params=_verilog_params(params), srcs=[src]))
    if len(instances) == 1:
        instances[0]["suffix"] = None
    entries = int(stream.ptr[-1])
    comment = (f"{node.name}: {what}, {packed.format} weights ({vb}-bit codes"
               + (f", {layer.index_bits}-bit gaps, {entries} entries" if packed.format == "relative" else "")
               + f"), {acc_bits}-bit accumulator" + (", ReLU" if node.relu else "")
               + (f", {len(instances)} PEs" if len(instances) > 1 else "")
               + (f" ({len(instances) // len(bands)} row groups x {len(bands)} position bands)" if len(bands) > 1 else ""))
    return instances, comment


def _pool(graph: LayerGraph, node: Node, act_bits: int, ranges: list[tuple[int, int]] | None):
    """(instances, comment) of a max/average pool: one ``admm_pool`` per channel range."""
    (src,) = graph.inputs(node.name)
    c, h, w = graph[src].shape
    _, ho, wo = node.shape
    p = node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    avg = node.op == "avgpool"
    m = node.quant["multiplier"] if avg else None
    if avg and kh * kw * 2 ** (act_bits - 1) >= 2**31:
        raise ValueError(f"{node.where()}: a {kh}x{kw} window sum does not fit the pool engine's 32 bits")
    params = dict(C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo, ACT_BITS=act_bits,
                  AVG=int(avg), M0=int(m.m0) if avg else 1 << 30, SHIFT=int(m.shift) if avg else 30,
                  RELU=int(bool(node.relu)))
    kind = "average" if avg else "max"
    ranges = ranges or [(0, c)]
    comment = (f"{node.name}: {kind}-pool {kh}x{kw} stride {sh}x{sw} padding {ph}x{pw}, {c}x{h}x{w} -> "
               f"{c}x{ho}x{wo}" + (", ReLU" if node.relu else "")
               + (f", {len(ranges)} instances (channel ranges)" if len(ranges) > 1 else ""))
    insts = []
    for k, (lo, hi) in enumerate(ranges):
        if not 0 <= lo < hi <= c:
            raise ValueError(f"{node.where()}: channel range {lo}..{hi} outside 0..{c}")
        insts.append(dict(suffix=None if len(ranges) == 1 else f"pe{k}", pe=k, module="admm_pool", srcs=[src],
                          params=_verilog_params(list({**params, "C_LO": lo, "C_HI": hi}.items()))))
    return insts, comment


IDENTITY = (1 << 30, 30)  # M0, SHIFT of the exact identity: (x * 2^30 + 2^29) >> 30 == x


def _eltwise(graph: LayerGraph, node: Node, act_bits: int, ranges: list[tuple[int, int]] | None):
    """(instances, comment) of an add or ReLU (one ``admm_eltwise`` per element range) or a
    concat (one per input)."""
    srcs = graph.inputs(node.name)
    size = _size(node.shape)
    base = dict(N=size, START=0, INPUTS=1, OUT_OFFSET=0, ACT_BITS=act_bits, M0A=IDENTITY[0], M0B=0, SHIFT=IDENTITY[1],
                RELU=int(bool(node.relu)))
    if node.op == "relu":
        insts = [dict(base, RELU=1)]
        what = "ReLU"
    elif node.op == "add":
        ma, mb = node.quant["multipliers"]
        if ma.shift != mb.shift:
            raise ValueError(f"{node.where()}: the add's two multipliers must share one shift")
        insts = [dict(base, INPUTS=2, M0A=int(ma.m0), M0B=int(mb.m0), SHIFT=int(ma.shift))]
        what = "residual add" + (", ReLU" if node.relu else "")
    else:  # concat along channels: input k lands after the values of inputs 0..k-1 (NCHW)
        if node.relu:
            raise ValueError(f"{node.where()}: a ReLU fused into concat is not part of the contract")
        insts, offset = [], 0
        for s, mult in zip(srcs, node.quant["multipliers"]):
            n = _size(graph[s].shape)
            insts.append(dict(base, N=n, OUT_OFFSET=offset, M0A=int(mult.m0), SHIFT=int(mult.shift)))
            offset += n
        what = f"channel concat of {len(srcs)} inputs"
    if node.op != "concat" and ranges and len(ranges) > 1:
        (one,) = insts
        if any(not 0 <= lo < hi <= size for lo, hi in ranges):
            raise ValueError(f"{node.where()}: element ranges {ranges} outside 0..{size}")
        insts = [dict(one, START=lo, N=hi) for lo, hi in ranges]
        what += f", {len(ranges)} instances (element ranges)"
    for p in insts:
        if not (0 <= p["M0A"] < 2**31 and 0 <= p["M0B"] < 2**31 and 1 <= p["SHIFT"] <= 62):
            raise ValueError(f"{node.where()}: multiplier outside the contract")
    out = []
    for k, p in enumerate(insts):
        inputs = [srcs[k]] if node.op == "concat" else srcs
        label = f"in{k}" if node.op == "concat" else f"pe{k}"
        out.append(dict(suffix=None if len(insts) == 1 else label, pe=k, module="admm_eltwise",
                        params=_verilog_params(list(p.items())), srcs=list(inputs)))
    return out, f"{node.name}: {what}, {'x'.join(map(str, node.shape))}"


def _engines_json(layers: list[dict]) -> bytes:
    """Every engine instance with its module and Verilog parameter values: what a synthesis run
    of one engine needs (memory-image paths are relative to ``rtl/``)."""
    import json

    rows = [dict(layer=l["id"], node=l["name"], instance=i["id"], pe=i["pe"], module=i["module"],
                 **{k: i[k] for k in ("group", "band") if k in i}, params=dict(i["params"]))
            for l in layers for i in l["insts"]]
    return (json.dumps(rows, indent=1) + "\n").encode()


def render_rtl(graph: LayerGraph, plan: BuildPlan, bands: dict[str, list[tuple[int, int]]] | None = None
               ) -> dict[str, bytes]:
    """Every RTL file of the project, keyed by path under ``rtl/`` (deterministic). ``plan``'s
    PEs of a weighted layer are its row groups; ``bands`` (from ``rtl.plan.rtl_plan``) splits
    each group's output rows over several PEs (default: one band, the plain row plan)."""
    act_bits = _act_bits(graph)
    if not 2 <= act_bits <= 16:
        raise ValueError(f"activation width {act_bits} is not supported by the RTL backend (2..16)")
    for node in graph.topo():
        if node.op not in SUPPORTED:
            raise ValueError(f"{node.where()}: the RTL backend has no engine for op '{node.op}' yet "
                             f"(supported: {', '.join(SUPPORTED)})")
        if node.shape is None:
            raise ValueError(f"{node.where()} has no shape: run infer_shapes first")
    top = plan.top
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top) or top in MODULES:
        raise ValueError(f"top name {top!r} is not a plain identifier or collides with an RTL module name")
    names = rtl_names(graph)
    tensor = tensor_of(graph)
    files: dict[str, bytes] = {}
    buffers, layers = [], []
    for node in graph.topo():
        if tensor[node.name] == node.name:
            buffers.append(dict(name=f"fm_{names[node.name]}", size=_size(node.shape), node=node.name,
                                shape="x".join(map(str, node.shape))))
        ident = names[node.name]
        if node.op in WEIGHTED:
            insts, comment = _weighted(graph, node, plan, (bands or {}).get(node.name), ident, act_bits, files)
        elif node.op in ("maxpool", "avgpool"):
            insts, comment = _pool(graph, node, act_bits, (bands or {}).get(node.name))
        elif node.op in ("add", "concat", "relu"):
            insts, comment = _eltwise(graph, node, act_bits, (bands or {}).get(node.name))
        else:
            continue
        for inst in insts:
            suffix = inst.pop("suffix")
            inst["id"] = ident if suffix is None else f"{ident}_{suffix}"
            inst["srcs"] = [f"fm_{names[tensor[s]]}" for s in inst["srcs"]]
        layers.append(dict(id=ident, name=node.name, comment=comment, insts=insts, dst=f"fm_{ident}",
                           index=len(layers)))
    if not layers:
        raise ValueError("the model has no layer the RTL backend computes")
    if len(layers) > 255:
        raise ValueError(f"{len(layers)} layers: the RTL sequencer counts at most 255")
    inp, outp = graph.input_node(), graph.output_node()
    (last,) = graph.inputs(outp.name)
    stream_bits = 8 * -(-act_bits // 8)
    pad = stream_bits - act_bits
    out_tdata = "out_value" if pad == 0 else "{{" + str(pad) + "{out_value[ACT_BITS-1]}}, out_value}"
    ctx = dict(top=top, model=graph.name, act_bits=act_bits, stream_bits=stream_bits, in_size=_size(inp.shape),
               out_size=_size(graph[last].shape), buffers=buffers, layers=layers,
               in_buf=f"fm_{names[inp.name]}", out_buf=f"fm_{names[tensor[last]]}", out_tdata=out_tdata)
    files[f"rtl/{top}.v"] = _render("top.v.j2", **ctx)
    for module in MODULES:
        files[f"rtl/{module}.v"] = _render(f"{module}.v.j2")
    layer_ids = [l["id"] for l in layers]
    files[f"rtl/tb_{top}.py"] = _render("tb.py.j2", top=top, layers=layer_ids, act_bits=act_bits,
                                        stream_bits=stream_bits)
    files["rtl/engines.json"] = _engines_json(layers)
    files["rtl/run_cocotb.py"] = _render("run_cocotb.py.j2", top=top,
                                         sources=[f"{top}.v", *(f"{m}.v" for m in MODULES)])
    return dict(sorted(files.items()))


def write_rtl(graph: LayerGraph, project_dir, *, top: str | None = None, pe: int = 1,
              pe_layers: dict[str, int] | None = None) -> list[str]:
    """Add ``rtl/`` to an existing project folder (an HLS project from ``admm-hls build`` has the
    test vectors the testbench reads in ``tb/data``), with a PE budget of ``pe`` per layer
    (``pe_layers`` per layer) spent as ``rtl.plan.rtl_plan`` decides. Returns the paths written,
    relative to the project."""
    import json
    from pathlib import Path

    from .plan import rtl_plan

    project = Path(project_dir)
    if top is None:
        manifest = project / "manifest.json"
        top = json.loads(manifest.read_text()).get("top", "admm_top") if manifest.is_file() else "admm_top"
    files = render_rtl(graph, *rtl_plan(graph, pe=pe, pe_layers=pe_layers, top=top))
    for rel, data in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(files)


# Cycles an engine spends beyond its issue slots: start, pipeline drain and done.
ENGINE_OVERHEAD = {"admm_wengine": 8, "admm_pool": 6, "admm_eltwise": 6}


def layer_cycles(graph: LayerGraph, plan: BuildPlan | None = None,
                 bands: dict[str, list[tuple[int, int]]] | None = None) -> dict[str, int]:
    """Exact cycles per layer of the rendered RTL ({Verilog identifier: cycles}), from the packed
    streams, the row groups of ``plan`` and the position ``bands`` alone (one PE per layer
    without them). A conv/linear PE issues one entry per cycle (fillers included; an empty row
    issues one bubble) of each of its rows at every output position of its band, back to back;
    the layer takes as long as its slowest PE. A pool engine issues one window element per
    cycle of its channel range, an element-wise engine one element per cycle of its range (a
    concat's inputs in parallel)."""
    from .plan import row_cycles

    names = rtl_names(graph)
    out = {}
    for node in graph.topo():
        if node.op in WEIGHTED:
            per_row = row_cycles(node.packed)
            ho, wo = (node.shape[1], node.shape[2]) if node.op == "conv" else (1, 1)
            groups = plan.layers[node.name].rows if plan is not None else (np.arange(per_row.size),)
            slowest = max(int(per_row[np.asarray(rows, dtype=np.int64)].sum()) for rows in groups)
            band = max(hi - lo for lo, hi in (bands or {}).get(node.name, [(0, ho)]))
            out[names[node.name]] = band * wo * slowest + ENGINE_OVERHEAD["admm_wengine"]
        elif node.op in ("maxpool", "avgpool"):
            kh, kw = node.params["kernel"]
            c = max(hi - lo for lo, hi in (bands or {}).get(node.name, [(0, node.shape[0])]))
            out[names[node.name]] = c * node.shape[1] * node.shape[2] * kh * kw + ENGINE_OVERHEAD["admm_pool"]
        elif node.op in ("add", "relu"):
            n = max(hi - lo for lo, hi in (bands or {}).get(node.name, [(0, _size(node.shape))]))
            out[names[node.name]] = n + ENGINE_OVERHEAD["admm_eltwise"]
        elif node.op == "concat":
            largest = max(_size(graph[s].shape) for s in graph.inputs(node.name))
            out[names[node.name]] = largest + ENGINE_OVERHEAD["admm_eltwise"]
    return out
