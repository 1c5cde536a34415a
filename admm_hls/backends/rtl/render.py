"""Render a packed LayerGraph + BuildPlan into Verilog, memory images and a cocotb testbench.

The RTL reads the SAME packed words as the HLS kernels: each weighted layer's ROM image is
``hls.render.layer_words(graph, node, plan)`` (one PE), its row pointers
``hls.render.layer_row_ptrs``. One engine per layer (``admm_wengine`` for conv and linear, sparse
or dense; ``admm_maxpool``), run one layer at a time by the top module over on-chip feature-map
arrays. Flatten is an alias (NCHW order is the buffer order).

    files = render_rtl(graph, plan)   # {"rtl/...": bytes}, deterministic

Files: ``rtl/<top>.v``, ``rtl/admm_wengine.v``, ``rtl/admm_maxpool.v``, ``rtl/mem/*.mem``
($readmemh images, paths relative to ``rtl/``), ``rtl/tb_<top>.py`` (cocotb tests) and
``rtl/run_cocotb.py`` (cocotb's Python runner; ``python rtl/run_cocotb.py --sim icarus``).
The testbench reads the HLS project's test vectors (``tb/data/input.bin``, ``expected.bin``,
``meta.txt``; see ``hls.render.test_vectors``).
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
SUPPORTED = ("input", "output", "conv", "linear", "maxpool", "flatten")

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


def _size(shape) -> int:
    return int(math.prod(shape))


def _act_bits(graph: LayerGraph) -> int:
    return int(graph.meta.get("act_bits", graph.input_node().quant.get("bits", 8)))


def _verilog_params(items: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for k, v in items:
        if isinstance(v, str):
            out.append((k, f'"{v}"'))
        elif k == "M0":
            out.append((k, f"64'd{int(v)}"))
        else:
            out.append((k, str(int(v))))
    return out


def _weighted(graph: LayerGraph, node: Node, plan: BuildPlan, ident: str, act_bits: int, files: dict):
    lp = plan.layers.get(node.name)
    if lp is None:
        raise ValueError(f"the build plan has no entry for weighted layer {node.name}")
    if lp.pe != 1:
        raise ValueError(f"{node.where()}: the RTL backend has one PE per layer so far; plan it with pe=1")
    packed = node.packed
    layer = packed.layer
    if packed.format not in ("relative", "dense"):
        raise ValueError(f"{node.where()}: the RTL backend has no engine for weight format '{packed.format}'")
    (words,) = hls_render.layer_words(graph, node.name, plan)
    (ptr,) = hls_render.layer_row_ptrs(graph, node.name, plan)
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
    fields = hls_render._stream(node).fields
    codes = fields & ((1 << vb) - 1)
    table = np.concatenate([np.zeros(1, np.int64), np.abs(levels)])
    row_of = np.repeat(np.arange(rows), np.diff(ptr))
    sums = np.bincount(row_of, weights=table[codes], minlength=rows).astype(np.int64)
    bound = int((sums * -qrange(act_bits)[0] + np.abs(bias)).max()) if rows else 0
    if bits_for(bound) > acc_bits or acc_bits > 32:
        raise ValueError(f"{node.where()}: accumulator of {acc_bits} bits cannot hold the bound {bound}")
    m = q["multiplier"]
    if not (0 < int(m.m0) < 2**31 and 1 <= int(m.shift) <= 62):
        raise ValueError(f"{node.where()}: multiplier outside the contract")
    level_bits = max(2, signed_width(levels))
    stem = f"mem/{ident}"
    files[f"rtl/{stem}_words.mem"] = _mem(np.asarray(words, dtype=np.int64), 32)
    files[f"rtl/{stem}_codebook.mem"] = _mem(levels, level_bits)
    files[f"rtl/{stem}_bias.mem"] = _mem(bias, acc_bits)
    files[f"rtl/{stem}_row_ptr.mem"] = _mem(ptr, 32)
    (src,) = graph.inputs(node.name)
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
        (fin,) = graph[src].shape
        if cols != fin or rows != node.shape[0]:
            raise ValueError(f"{node.where()}: packed {rows}x{cols} does not match {node.shape[0]}x{fin}")
        geo = dict(CIN=fin, H=1, W=1, KH=1, KW=1, SH=1, SW=1, PH=0, PW=0, HO=1, WO=1)
        what = f"linear {fin} -> {rows}"
    params = [("ROWS", rows), ("COLS", cols), *geo.items(), ("VB", vb), ("EB", eb),
              ("PER_WORD", WORD_BITS // eb), ("N_WORDS", max(1, int(np.asarray(words).size))),
              ("N_LEVELS", max(1, levels.size)), ("LEVEL_BITS", level_bits), ("ACC_BITS", acc_bits),
              ("ACT_BITS", act_bits), ("M0", int(m.m0)), ("SHIFT", int(m.shift)), ("RELU", int(bool(node.relu))),
              ("WORDS_FILE", f"{stem}_words.mem"), ("CODEBOOK_FILE", f"{stem}_codebook.mem"),
              ("BIAS_FILE", f"{stem}_bias.mem"), ("PTR_FILE", f"{stem}_row_ptr.mem")]
    comment = (f"{node.name}: {what}, {packed.format} weights ({vb}-bit codes"
               + (f", {layer.index_bits}-bit gaps, {int(ptr[-1])} entries" if packed.format == "relative" else "")
               + f"), {acc_bits}-bit accumulator" + (", ReLU" if node.relu else ""))
    return "admm_wengine", _verilog_params(params), comment


def _maxpool(graph: LayerGraph, node: Node, act_bits: int):
    (src,) = graph.inputs(node.name)
    c, h, w = graph[src].shape
    _, ho, wo = node.shape
    p = node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    if node.relu:
        raise ValueError(f"{node.where()}: a ReLU fused into max-pool is not supported by the RTL backend")
    params = dict(C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo, ACT_BITS=act_bits)
    comment = f"{node.name}: max-pool {kh}x{kw} stride {sh}x{sw} padding {ph}x{pw}, {c}x{h}x{w} -> {c}x{ho}x{wo}"
    return "admm_maxpool", _verilog_params(list(params.items())), comment


def render_rtl(graph: LayerGraph, plan: BuildPlan) -> dict[str, bytes]:
    """Every RTL file of the project, keyed by path under ``rtl/`` (deterministic)."""
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
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top) or top in ("admm_wengine", "admm_maxpool"):
        raise ValueError(f"top name {top!r} is not a plain identifier or collides with an RTL module name")
    names = rtl_names(graph)
    tensor = tensor_of(graph)
    files: dict[str, bytes] = {}
    buffers, layers = [], []
    for node in graph.topo():
        if tensor[node.name] == node.name:
            buffers.append(dict(name=f"fm_{names[node.name]}", size=_size(node.shape), node=node.name,
                                shape="x".join(map(str, node.shape))))
        if node.op in WEIGHTED:
            module, params, comment = _weighted(graph, node, plan, names[node.name], act_bits, files)
        elif node.op == "maxpool":
            module, params, comment = _maxpool(graph, node, act_bits)
        else:
            continue
        (src,) = graph.inputs(node.name)
        layers.append(dict(id=names[node.name], name=node.name, module=module, params=params, comment=comment,
                           src=f"fm_{names[tensor[src]]}", dst=f"fm_{names[node.name]}"))
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
    files["rtl/admm_wengine.v"] = _render("admm_wengine.v.j2")
    files["rtl/admm_maxpool.v"] = _render("admm_maxpool.v.j2")
    layer_ids = [l["id"] for l in layers]
    files[f"rtl/tb_{top}.py"] = _render("tb.py.j2", top=top, layers=layer_ids, act_bits=act_bits,
                                        stream_bits=stream_bits)
    files["rtl/run_cocotb.py"] = _render("run_cocotb.py.j2", top=top,
                                         sources=[f"{top}.v", "admm_wengine.v", "admm_maxpool.v"])
    return dict(sorted(files.items()))


def write_rtl(graph: LayerGraph, project_dir, *, top: str | None = None) -> list[str]:
    """Add ``rtl/`` to an existing project folder (an HLS project from ``admm-hls build`` has the
    test vectors the testbench reads in ``tb/data``). The RTL has one PE per layer whatever the
    HLS plan says: its plan is made here with ``pe=1`` (same packed words). Returns the paths
    written, relative to the project."""
    import json
    from pathlib import Path

    from ..hls.project import make_plan

    project = Path(project_dir)
    if top is None:
        manifest = project / "manifest.json"
        top = json.loads(manifest.read_text()).get("top", "admm_top") if manifest.is_file() else "admm_top"
    files = render_rtl(graph, make_plan(graph, pe=1, top=top, progress=False))
    for rel, data in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(files)


def layer_cycles(graph: LayerGraph) -> dict[str, int]:
    """Exact cycles per layer of the rendered RTL ({Verilog identifier: cycles}), from the packed
    streams alone: a conv/linear engine issues one entry per cycle (fillers included; an empty
    row issues one bubble) at every output position, back to back, plus 7 cycles of start, pipeline
    drain and done; a max-pool one window element per cycle plus 5."""
    names = rtl_names(graph)
    out = {}
    for node in graph.topo():
        if node.op in WEIGHTED:
            layer = node.packed.layer
            if node.packed.format == "relative":
                per_row = np.diff(np.asarray(layer.row_ptr, dtype=np.int64))
            else:
                per_row = np.full(layer.rows, layer.cols, dtype=np.int64)
            positions = node.shape[1] * node.shape[2] if node.op == "conv" else 1
            out[names[node.name]] = positions * int(np.maximum(per_row, 1).sum()) + 7
        elif node.op == "maxpool":
            kh, kw = node.params["kernel"]
            out[names[node.name]] = _size(node.shape) * kh * kw + 5
    return out
