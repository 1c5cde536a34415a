"""Render a packed LayerGraph's hardware plan into Verilog, memory images and a cocotb testbench.

The RTL reads the SAME lockstep words, schedules and lanes as the HLS kernels (``hw.plan``):
engines per op come from ``engines.ENGINES``. The top module runs one layer at a time over
on-chip feature-map arrays (flat NCHW; flatten is an alias), with the ports a Vitis HLS export
of the HLS top has: ``ap_ctrl_chain`` control and AXI4-Stream ``in_stream`` / ``out_stream``.
Layers the plan puts off-chip are on-chip ROMs here (the RTL has no AXI master).

    files = render_rtl(graph, plan)   # {"rtl/...": bytes}, deterministic

Files: ``rtl/<top>.v``, one ``rtl/<module>.v`` per engine, ``rtl/mem/*.mem`` ($readmemh images,
paths relative to ``rtl/``), ``rtl/engines.json`` (every engine instance and its parameters),
``rtl/tb_<top>.py`` (cocotb tests) and ``rtl/run_cocotb.py`` (cocotb's Python runner;
``python rtl/run_cocotb.py --sim icarus``). The testbench reads the project's test vectors
(``tb/data/input.bin``, ``expected.bin``, ``meta.txt``; see ``build.vectors``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ...hw.plan import HardwarePlan
from ...ir.graph import LayerGraph
from ...resources import template_env
from .engines import ENGINES, engines

BANNER = "admm-hls generated file: do not edit (regenerate with admm-hls)"  # as the HLS files say
MODULES = ("admm_wengine", "admm_pool", "admm_eltwise")
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
    names, tensor = plan.names, plan.tensor
    files: dict[str, bytes] = {}
    buffers, layers = [], []
    for node in graph.topo():
        if tensor[node.name] == node.name:
            buffers.append(dict(name=f"fm_{names[node.name]}", size=_size(node.shape), node=node.name,
                                shape="x".join(map(str, node.shape))))
        if node.op not in ENGINES:
            continue
        ident = names[node.name]
        insts, comment = engines(graph, plan, plan.layers[node.name], files)
        for inst in insts:
            label = inst.pop("label", f"pe{inst['pe']}")
            inst["id"] = ident if len(insts) == 1 else f"{ident}_{label}"
            inst["srcs"] = [f"fm_{names[tensor[s]]}" for s in inst["srcs"]]
        layers.append(dict(id=ident, name=node.name, comment=comment, insts=insts, dst=f"fm_{ident}",
                           index=len(layers)))
    if not layers:
        raise ValueError("the model has no layer the RTL backend computes")
    if len(layers) > 255:
        raise ValueError(f"{len(layers)} layers: the RTL sequencer counts at most 255")
    inp, outp = graph.input_node(), graph.output_node()
    (last,) = graph.inputs(outp.name)
    stream_bits = plan.stream_bits
    pad = stream_bits - act_bits
    out_tdata = "out_value" if pad == 0 else "{{" + str(pad) + "{out_value[ACT_BITS-1]}}, out_value}"
    ctx = dict(top=top, model=graph.name, act_bits=act_bits, stream_bits=stream_bits, in_size=_size(inp.shape),
               out_size=_size(graph[last].shape), buffers=buffers, layers=layers,
               in_buf=f"fm_{names[inp.name]}", out_buf=f"fm_{names[tensor[last]]}", out_tdata=out_tdata)
    files[f"rtl/{top}.v"] = _render("top.v.j2", **ctx)
    for module in MODULES:
        files[f"rtl/{module}.v"] = _render(f"{module}.v.j2")
    files[f"rtl/tb_{top}.py"] = _render("tb.py.j2", top=top, layers=[l["id"] for l in layers], act_bits=act_bits,
                                        stream_bits=stream_bits)
    files["rtl/engines.json"] = _engines_json(layers)
    files["rtl/run_cocotb.py"] = _render("run_cocotb.py.j2", top=top,
                                         sources=[f"{top}.v", *(f"{m}.v" for m in MODULES)])
    return dict(sorted(files.items()))
