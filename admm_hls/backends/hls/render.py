"""Render a packed LayerGraph's hardware plan into the sources of a Vitis HLS project.

The renderer decides nothing of its own (``hw.plan`` does): every process of the plan becomes
one C++ function from its op's kernel (``kernels.KERNELS``), the plan's channels become the
DATAFLOW top's local ping-pong buffers, the weighted layers' schedules and words its streams,
and the off-chip layers one m_axi port each, read by one burst-reader process.

    files = render_project_sources(graph, plan)   # {relative path: bytes}, deterministic
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ...arith import qrange
from ...hw.memory import part_memory
from ...hw.names import ALIASES, file_stem
from ...hw.blob import blob_port, weight_blob
from ...hw.plan import STREAM_DEPTH, HardwarePlan
from ...ir.graph import LayerGraph
from ...resources import template_env
from .kernels import BANNER, kernel
RESERVED_PREFIXES = ("layer_", "sched_", "words_", "wread_", "fm_", "s_", "w_")
RESERVED = ("main", "in_stream", "out_stream", "admm_trace", "admm_trace_banked", "admm_requant", "admm_requant2",
            "admm_saturate")
AXI_OUTSTANDING = 16  # read requests in flight (UG1399's default)
AXI_LATENCY = 64  # expected read latency in cycles (UG1399's default)

__all__ = ["BANNER", "render_project_sources", "weight_blob", "blob_port"]


def _render(template: str, **ctx: Any) -> bytes:
    return template_env("hls").get_template(template).render(banner=BANNER, **ctx).encode("utf-8")


def _check_graph(graph: LayerGraph, plan: HardwarePlan) -> None:
    if not 2 <= plan.act_bits <= 16:
        raise ValueError(f"activation width {plan.act_bits} is not supported by the HLS backend (2..16)")
    for node in graph.topo():
        bits = node.quant.get("bits", plan.act_bits)
        if node.op != "output" and bits != plan.act_bits:
            raise ValueError(f"{node.where()}: {bits}-bit activations, the graph uses {plan.act_bits}")
    top = plan.top
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top) or "__" in top:
        raise ValueError(f"top function name {top!r} is not a plain C identifier")
    if top in RESERVED or top.startswith(RESERVED_PREFIXES) or any(
            top.startswith(f"{i}_") for i in plan.names.values()):
        raise ValueError(f"top function name {top!r} collides with generated names; choose another")


def _traces(graph: LayerGraph, plan: HardwarePlan) -> dict[str, list[dict[str, Any]]]:
    """Per process: the nodes whose output it holds (itself, then aliases reading it), traced
    from copy 0 of its first channel in C simulation."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, layer in plan.layers.items():
        chans = plan.writes(name)
        if layer.layout is None or not chans:
            continue
        lay = layer.layout
        base = {"id": layer.ident, "buf": chans[0].name, "bands": len(lay.bands), "bank_size": lay.bank_size,
                "c": lay.shape[0], "h": lay.shape[1], "w": lay.shape[2]}
        todo, nodes = [name], []
        while todo:
            n = todo.pop(0)
            if graph[n].op == "output":
                continue
            nodes.append(dict(base, node=file_stem(n)))
            todo.extend(c for c in graph.consumers(n) if graph[c].op in ALIASES)
        out[name] = nodes
    return out


def render_project_sources(graph: LayerGraph, plan: HardwarePlan) -> dict[str, bytes]:
    """Every source file of the project: ``firmware/`` (top, types, one kernel header per
    process, ROM data) and ``tb/`` (testbench, compat header, ``tb/data/weights.bin`` when layers
    live off-chip)."""
    _check_graph(graph, plan)
    files: dict[str, bytes] = {}
    part = part_memory(plan.part)
    kernels, processes, streams, traces_t = [], [], [], []
    traces = _traces(graph, plan)
    blob_layers = []
    for k, layer in enumerate(plan.blob_layers()):
        blob_layers.append({"id": layer.ident, "name": layer.name, "port": blob_port(layer.ident),
                            "bundle": f"gmem{k}", "offset": layer.blob_offset, "beats": layer.beats,
                            "beat_bits": layer.beat_bits, "burst": min(256, 4096 * 8 // layer.beat_bits),
                            "outstanding": AXI_OUTSTANDING, "latency": AXI_LATENCY})
    for name, layer in plan.layers.items():
        kern = kernel(graph, plan, layer)
        path = f"kernels/{layer.ident}.h"
        files[f"firmware/{path}"] = _render(kern.template, k=kern.ctx)
        for inc, data in kern.data.items():
            files[f"firmware/weights/{inc}"] = data
        kernels.append(path)
        ins = [c.name for c in plan.reads(name)]
        outs = [c.name for c in plan.writes(name)]
        ident = layer.ident
        if layer.kind == "input":
            args = ["in_stream", *outs]
        elif layer.kind == "output":
            args = [*ins, "out_stream"]
        elif layer.kind == "weighted":
            words, slots = layer.fifos
            streams += [{"name": slots, "type": f"{ident}_slot_t", "depth": STREAM_DEPTH,
                         "what": f"{name}: one record per slot"},
                        {"name": words, "type": f"{ident}_step_t", "depth": STREAM_DEPTH,
                         "what": f"{name}: word t of every row group"}]
            processes.append({"call": f"sched_{ident}({slots});", "trace": []})
            if layer.placement == "blob":
                processes.append({"call": f"wread_{ident}({blob_port(ident)}, {words});", "trace": []})
            else:
                processes.append({"call": f"words_{ident}({words});", "trace": []})
            args = [*ins, *outs, words, slots]
        else:
            args = [*ins, *outs]
        processes.append({"call": f"layer_{ident}({', '.join(args)});", "trace": traces.get(name, [])})
        if traces.get(name):
            lay = layer.layout
            traces_t.append({"id": ident, "c": lay.shape[0], "h": lay.shape[1],
                             "group": ", ".join(map(str, lay.group_of.tolist())),
                             "base": ", ".join(map(str, lay.channel_base.tolist())),
                             "band": ", ".join(map(str, lay.band_of.tolist())),
                             "offset": ", ".join(map(str, lay.row_offset.tolist()))})
    channels = []
    for ch in plan.channels:
        channels.append({"name": ch.name, "copies": ch.copies, "groups": ch.layout.groups,
                         "bands": len(ch.layout.bands), "bank_size": ch.layout.bank_size,
                         "impl": "uram" if ch.storage(part).kind == "uram" else "",
                         "what": f"{ch.tensor} -> {ch.consumer}: {ch.copies} copy(ies) of "
                                 f"{ch.layout.banks} bank(s), ping-pong"})
    inp = graph.input_node()
    (last,) = graph.inputs(graph.output_node().name)
    lo, hi = qrange(plan.act_bits)
    common = dict(top=plan.top, guard=plan.top.upper(), act_bits=plan.act_bits, stream_bits=plan.stream_bits,
                  act_min=lo, act_max=hi, in_size=int(np.prod(inp.shape)), out_size=int(np.prod(graph[last].shape)),
                  blob_layers=blob_layers, blob_bytes=plan.blob_size())
    files["firmware/types.h"] = _render("types.h.j2", **common)
    files[f"firmware/{plan.top}.h"] = _render("top.h.j2", **common)
    files[f"firmware/{plan.top}.cpp"] = _render("top.cpp.j2", **common, kernels=kernels, channels=channels,
                                                streams=streams, processes=processes, traces=traces_t)
    files[f"tb/tb_{plan.top}.cpp"] = _render("tb.cpp.j2", **common)
    files["tb/compat/ap_axi_sdata.h"] = _render("compat/ap_axi_sdata.h.j2")
    if blob_layers:
        files["tb/data/weights.bin"] = weight_blob(plan)
    return dict(sorted(files.items()))
