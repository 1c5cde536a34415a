"""Render a packed LayerGraph's hardware plan into Verilog, memory images and a cocotb testbench.

The RTL reads the SAME lockstep words, schedules and lanes as the HLS kernels (``hw.plan``):
engines per op come from ``engines.ENGINES``. The top module has one stage per process of the
plan (the input load, every layer, the output send) connected by the plan's channels: each
channel is banked as the plan lays it out (``hw.layout``: lane k of the producer writes bank k)
with one copy per reader lane (``admm_fm_copy``: simple dual-port memories, so block RAM at any
PE count) and two halves, ping-pong, so successive images overlap; credits start each stage.
Layers the plan puts off-chip read their words through an AXI4 read master each
(``admm_axi_words``), from the same weight blob and offsets as the HLS build. The ports are those
a Vitis HLS export of the HLS top has: ``ap_ctrl_chain`` control, AXI4-Stream ``in_stream`` /
``out_stream``, and ``m_axi_<port>_*`` read channels with a ``<port>_offset`` input.

    files = render_rtl(graph, plan)   # {"rtl/...": bytes}, deterministic

Files: ``rtl/<top>.v``, one ``rtl/<module>.v`` per module, ``rtl/mem/*.mem`` ($readmemh images,
paths relative to ``rtl/``), ``rtl/engines.json`` (every engine instance and its parameters),
``rtl/design.json`` (the top module and every Verilog source, top first), ``rtl/tb_<top>.py``
(cocotb tests) and ``rtl/run_cocotb.py`` (cocotb's Python runner;
``python rtl/run_cocotb.py --sim icarus``). The testbench reads the project's test vectors
(``tb/data/input.bin``, ``expected.bin``, ``meta.txt``, ``weights.bin``; see ``build.vectors``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ...hw.plan import HardwarePlan
from ...ir.graph import LayerGraph
from ...resources import template_env
from ...hw.streams import WORD_BITS
from .axi import AXI_SIGNALS, axi_params, blob_port
from .engines import ENGINES, RD_LAT, engines, read_tables, word_buffer_depth

BANNER = "admm-hls generated file: do not edit (regenerate with admm-hls)"  # as the HLS files say
MODULES = ("admm_wengine", "admm_pool", "admm_eltwise", "admm_requant", "admm_fm_copy", "admm_axi_words")
SUPPORTED = ("input", "output", "flatten", *ENGINES)

__all__ = ["render_rtl", "BANNER", "SUPPORTED", "MODULES"]


def _render(template: str, **ctx: Any) -> bytes:
    return template_env("rtl").get_template(template).render(banner=BANNER, **ctx).encode("utf-8")


def _size(shape) -> int:
    return int(math.prod(shape))


def _engines_json(layers: list[dict]) -> bytes:
    """Every engine instance: its layer, module and parameter values: what a synthesis run
    of one engine needs (memory-image paths are relative to ``rtl/``)."""
    rows = [dict(layer=l["id"], node=l["name"], instance=i["id"], pe=i["pe"], module=i["module"],
                 **{k: i[k] for k in ("group", "band") if k in i}, params=dict(i["params"]))
            for l in layers for i in l["insts"]]
    return (json.dumps(rows, indent=1) + "\n").encode()


def _check_ident(name: str, taken: set[str]) -> None:
    if name in taken:
        raise ValueError(f"RTL identifier {name!r} is used twice (a layer named like a stage of the top)")
    taken.add(name)


def render_rtl(graph: LayerGraph, plan: HardwarePlan) -> dict[str, bytes]:
    """Every RTL file of the project, keyed by path under ``rtl/`` (deterministic)."""
    act_bits = plan.act_bits
    if not 2 <= act_bits <= 16:
        raise ValueError(f"activation width {act_bits} is not supported by the RTL backend (2..16)")
    for node in graph.topo():
        if node.op not in SUPPORTED:
            raise ValueError(f"{node.where()}: the RTL backend has no engine for op '{node.op}' yet "
                             f"(supported: {', '.join(SUPPORTED)})")
    top = plan.top
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top) or top in MODULES:
        raise ValueError(f"top name {top!r} is not a plain identifier or collides with an RTL module name")
    files: dict[str, bytes] = {}
    procs = list(plan.layers.values())
    # stage identifiers: the input process loads, the output process sends, a layer is its ident
    stage_id = {l.name: ("load" if l.kind == "input" else "send" if l.kind == "output" else l.ident) for l in procs}
    taken: set[str] = set()
    for ident in stage_id.values():
        _check_ident(ident, taken)

    # feature maps: read tables per producer, one admm_fm_copy per channel and reader lane
    table_widths = {}  # per producer: its tables' field widths, shared by all its channels' copies
    for l in procs:
        if l.layout is not None and plan.writes(l.name):
            table_widths[l.name], ch_tab, row_tab = read_tables(l.layout)
            files[f"rtl/mem/{stage_id[l.name]}_chtab.mem"] = ch_tab
            files[f"rtl/mem/{stage_id[l.name]}_rowtab.mem"] = row_tab
    channels, readers = [], {}
    for c in plan.channels:
        lay = c.layout
        widths = table_widths[c.tensor]
        prod = stage_id[c.tensor]
        params = [("C", lay.shape[0]), ("H", lay.shape[1]), ("W", lay.shape[2]), ("GROUPS", lay.groups),
                  ("BANDS", len(lay.bands)), ("BANK_SIZE", lay.bank_size), *widths.items(),
                  ("CH_FILE", f'"mem/{prod}_chtab.mem"'), ("ROW_FILE", f'"mem/{prod}_rowtab.mem"')]
        rows = []
        for r in range(c.copies):
            rid = f"{c.name}_c{r}" if c.copies > 1 else c.name
            _check_ident(rid, taken)
            rows.append(dict(id=rid))
            readers[(c.name, r)] = rid
        channels.append(dict(name=c.name, prod=prod, cons=stage_id[c.consumer], params=params, readers=rows,
                             what=(f"{c.tensor} -> {c.consumer}: {'x'.join(map(str, lay.shape))} in "
                                   f"{lay.banks} bank(s) of {lay.bank_size}, {c.copies} reader cop"
                                   + ("ies" if c.copies > 1 else "y"))))

    producers, layers, blobs = [], [], []
    for l in procs:
        if l.layout is not None and plan.writes(l.name):
            producers.append(dict(id=stage_id[l.name], lanes=l.layout.banks,
                                  what=f"{l.name} ({l.layout.groups} group(s) x {len(l.layout.bands)} band(s))"))
        if l.op not in ENGINES:
            continue
        node = graph[l.name]
        ident = l.ident
        insts, comment = engines(graph, plan, l, files)
        if len(insts) != l.layout.banks:
            raise ValueError(f"{node.where()}: {len(insts)} lanes for {l.layout.banks} output banks")
        reads = plan.reads(l.name)
        for inst in insts:
            label = inst.pop("label", f"pe{inst['pe']}")
            inst["id"] = ident if len(insts) == 1 else f"{ident}_{label}"
            if inst["id"] != ident:
                _check_ident(inst["id"], taken)
            inst["reads"] = [readers[(reads[p].name, inst["pe"] if reads[p].copies > 1 else 0)]
                             for p in inst.pop("ports")]
            if inst["module"] == "admm_wengine":
                if l.placement == "blob":
                    inst.update(buf_we=f"{ident}_take", buf_addr=f"{ident}_words_in",
                                buf_data=f"{ident}_step[{inst['group'] * WORD_BITS} +: {WORD_BITS}]",
                                words_in=f"{ident}_words_in")
                else:
                    inst.update(buf_we="1'b0", buf_addr="32'd0", buf_data="32'd0", words_in="32'd0")
        blob = None
        if l.placement == "blob":
            port = blob_port(l)
            blob = dict(port=port, step_bits=l.step_bits, depth=word_buffer_depth(l), params=axi_params(l))
            blobs.append(dict(name=l.name, port=port, beat_bits=l.beat_bits))
        layers.append(dict(id=ident, name=l.name, comment=comment, insts=insts, blob=blob))
    if not layers:
        raise ValueError("the model has no layer the RTL backend computes")
    seen = [r for layer in layers for inst in layer["insts"] for r in inst["reads"]]
    inp, outp = graph.input_node(), graph.output_node()
    (out_ch,) = plan.reads(outp.name)
    seen.append(readers[(out_ch.name, 0)])
    if sorted(seen) != sorted(readers.values()):
        raise ValueError("a feature-map copy has no reader or two")  # a compiler bug
    stages = [dict(id=stage_id[l.name], ins=[c.name for c in plan.reads(l.name)],
                   outs=[c.name for c in plan.writes(l.name)]) for l in procs]
    stream_bits = plan.stream_bits
    pad = stream_bits - act_bits
    out_tdata = "out_value" if pad == 0 else "{{" + str(pad) + "{out_value[ACT_BITS-1]}}, out_value}"
    # images in flight: at most two per channel along the longest path; a power of two
    ts_bits = max(1, (2 * len(procs)).bit_length())
    c_out, h_out, w_out = out_ch.layout.shape
    ctx = dict(top=top, model=graph.name, act_bits=act_bits, stream_bits=stream_bits, in_size=_size(inp.shape),
               out_size=c_out * h_out * w_out, out_h=h_out, out_w=w_out, stages=stages, channels=channels,
               producers=producers, layers=layers, blobs=blobs, in_id="load", out_reader=readers[(out_ch.name, 0)],
               out_tdata=out_tdata, rd_lat=RD_LAT, ts_bits=ts_bits, ts_depth=1 << ts_bits, axi_signals=AXI_SIGNALS)
    files[f"rtl/{top}.v"] = _render("top.v.j2", **ctx)
    for module in MODULES:
        files[f"rtl/{module}.v"] = _render(f"{module}.v.j2")
    files[f"rtl/tb_{top}.py"] = _render("tb.py.j2", top=top, layers=[l["id"] for l in layers], act_bits=act_bits,
                                        stream_bits=stream_bits, blobs=blobs)
    files["rtl/engines.json"] = _engines_json(layers)
    # One source list for simulation and for whole-design synthesis (rtl/design.json).
    sources = [f"{top}.v", *(f"{m}.v" for m in MODULES)]
    files["rtl/design.json"] = (json.dumps({"sources": sources, "top": top}, indent=1, sort_keys=True) + "\n").encode()
    files["rtl/run_cocotb.py"] = _render("run_cocotb.py.j2", top=top, sources=sources)
    return dict(sorted(files.items()))
