"""Render a packed LayerGraph + BuildPlan into the sources of a Vitis HLS project.

The renderer decides nothing of its own (the plan does): it turns every layer into one C++
function from its kind's Jinja2 template (``templates/hls/``), the graph into a DATAFLOW top
function, and the packed weights into ROM headers or the m_axi weight blob. Packed words are
never decoded to a dense weight matrix: a processing element's stream is the slice of the
layer's entry stream that holds its rows, re-packed at the same entry width.

Public API (the project builder relies on it):

* ``render_project_sources(graph, plan) -> {relative path: bytes}``
* ``weight_blob(graph, plan) -> bytes``
* ``layer_words(graph, node, plan) -> [uint32 words per PE]``
* ``layer_row_ptrs(graph, node, plan) -> [int64 row pointers per PE]``
* ``test_vectors(graph, x_int) -> {relative path: bytes}``
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...arith import bits_for, qrange
from ...ir.graph import LayerGraph, Node
from ...resources import template_env
from ...sparse import pack, unpack
from ...sparse.codebook import signed_width
from .plan import BuildPlan, LayerPlan

BANNER = "admm-hls generated file: do not edit (regenerate with admm-hls)"
WORD_BITS = 32
WEIGHTED = ("conv", "linear")
# Ops that own no buffer and no function: their tensor is their input's tensor.
ALIASES = ("flatten",)
ROM, BLOB = "rom", "blob"

__all__ = [
    "BANNER",
    "render_project_sources",
    "weight_blob",
    "layer_words",
    "layer_row_ptrs",
    "test_vectors",
    "c_names",
]


# -- templates ---------------------------------------------------------------------------------------
def _render(template: str, **ctx: Any) -> bytes:
    text = template_env("hls").get_template(template).render(banner=BANNER, **ctx)
    return text.encode("utf-8")


# -- names ---------------------------------------------------------------------------------------------
def _ident(name: str) -> str:
    """A readable C identifier: no leading/double underscores (reserved in C++)."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    if not s or s[0].isdigit():
        s = "l" + s
    return s


def tensor_of(graph: LayerGraph) -> dict[str, str]:
    """Node name -> the node whose buffer holds its output: alias ops (flatten) and the output
    node share their input's buffer, every other node has its own."""
    tensor: dict[str, str] = {}
    for node in graph.topo():
        if node.op in ALIASES or node.op == "output":
            (src,) = graph.inputs(node.name)
            tensor[node.name] = tensor[src]
        else:
            tensor[node.name] = node.name
    return tensor


def c_names(graph: LayerGraph) -> dict[str, str]:
    """Node name -> unique C identifier (also the kernel/weights header file stem)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for node in graph.topo():
        base = _ident(node.name)
        ident, k = base, 1
        while ident.lower() in taken:
            k += 1
            ident = f"{base}_{k}"
        taken.add(ident.lower())
        out[node.name] = ident
    return out


def _file_name(name: str) -> str:
    """Node name as a data file stem (fx names already are safe)."""
    return name if re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not name.startswith(".") else _ident(name)


# -- packed streams ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stream:
    """A weighted layer's packed stream, unpacked to its fields (entries or dense codes)."""

    format: str  # "relative" or "dense"
    fields: np.ndarray  # int64, one per entry (relative: code | gap << value_bits) or code (dense)
    ptr: np.ndarray  # int64 (rows + 1): row i owns fields ptr[i]:ptr[i+1]
    width: int  # field bits
    value_bits: int
    index_bits: int  # 0 for dense
    rows: int
    cols: int


def _stream(node: Node) -> _Stream:
    packed = node.packed
    if packed is None:
        raise ValueError(f"{node.where()} has no packed weights: run the pack pass first")
    layer = packed.layer
    if int(layer.word_bits) != WORD_BITS:
        raise ValueError(f"{node.where()}: the HLS backend reads {WORD_BITS}-bit words, got {layer.word_bits}")
    if packed.format == "relative":
        width = layer.value_bits + layer.index_bits
        ptr = np.asarray(layer.row_ptr, dtype=np.int64)
        fields = unpack(layer.words, width, int(ptr[-1]), WORD_BITS)
        return _Stream("relative", fields, ptr, width, layer.value_bits, layer.index_bits, layer.rows, layer.cols)
    if packed.format == "dense":
        n = layer.rows * layer.cols
        fields = unpack(layer.words, layer.value_bits, n, WORD_BITS)
        ptr = np.arange(layer.rows + 1, dtype=np.int64) * layer.cols
        return _Stream("dense", fields, ptr, layer.value_bits, layer.value_bits, 0, layer.rows, layer.cols)
    raise ValueError(f"{node.where()}: the HLS backend has no kernel for weight format '{packed.format}'")


def _pe_slices(stream: _Stream, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(field indices, row pointers) of the stream made of ``rows``' fields in order."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = stream.ptr[rows]
    lens = stream.ptr[rows + 1] - starts
    local = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lens, dtype=np.int64)])
    total = int(local[-1])
    idx = np.arange(total, dtype=np.int64) + np.repeat(starts - local[:-1], lens)
    return idx, local


def _layer_plan(graph: LayerGraph, name: str, plan: BuildPlan) -> LayerPlan:
    node = graph[name]
    if node.op not in WEIGHTED:
        raise ValueError(f"{node.where()} has no weights to place")
    lp = plan.layers.get(name)
    if lp is None:
        raise ValueError(f"the build plan has no entry for weighted layer {name}")
    _check_layer_plan(node, lp)
    return lp


def _check_layer_plan(node: Node, lp: LayerPlan) -> None:
    rows = node.packed.layer.rows
    if lp.pe < 1 or len(lp.rows) != lp.pe:
        raise ValueError(f"plan for {node.name}: pe={lp.pe} but {len(lp.rows)} row sets")
    parts = [np.asarray(r, dtype=np.int64).reshape(-1) for r in lp.rows]
    for p, r in enumerate(parts):
        if r.size > 1 and np.any(np.diff(r) <= 0):
            raise ValueError(f"plan for {node.name}: rows of PE {p} are not strictly ascending")
    every = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    if not np.array_equal(every, np.arange(rows)):
        raise ValueError(f"plan for {node.name}: the PEs' rows must cover rows 0..{rows - 1} exactly once")
    if lp.placement not in (ROM, BLOB):
        raise ValueError(f"plan for {node.name}: placement must be '{ROM}' or '{BLOB}', got {lp.placement!r}")
    if lp.placement == BLOB and (lp.blob_offset < 0 or lp.blob_offset % 4):
        raise ValueError(f"plan for {node.name}: blob_offset {lp.blob_offset} is not a multiple of 4 bytes")


def layer_words(graph: LayerGraph, node_name: str, plan: BuildPlan) -> list[np.ndarray]:
    """Per PE: the uint32 words of that PE's stream (its rows' entries, re-packed)."""
    lp = _layer_plan(graph, node_name, plan)
    stream = _stream(graph[node_name])
    return [_pack_words(stream.fields[_pe_slices(stream, rows)[0]], stream.width) for rows in lp.rows]


def layer_row_ptrs(graph: LayerGraph, node_name: str, plan: BuildPlan) -> list[np.ndarray]:
    """Per PE: int64 row pointers (rows of the PE + 1) into that PE's stream, in entries
    (relative index, fillers included) or codes (dense)."""
    lp = _layer_plan(graph, node_name, plan)
    stream = _stream(graph[node_name])
    return [_pe_slices(stream, rows)[1] for rows in lp.rows]


def _pack_words(fields: np.ndarray, width: int) -> np.ndarray:
    return np.asarray(pack(fields, width, WORD_BITS), dtype=np.uint32)


def _blob_layers(graph: LayerGraph, plan: BuildPlan) -> list[Node]:
    return [n for n in graph.nodes_of(*WEIGHTED) if _layer_plan(graph, n.name, plan).placement == BLOB]


def weight_blob(graph: LayerGraph, plan: BuildPlan) -> bytes:
    """The m_axi weight blob: every blob layer's PE streams (PE 0 first) at its blob_offset,
    little-endian uint32 words; bytes between layers are zero."""
    placed: list[tuple[int, bytes, str]] = []
    for node in _blob_layers(graph, plan):
        lp = plan.layers[node.name]
        data = np.concatenate([np.zeros(0, np.uint32), *layer_words(graph, node.name, plan)])
        raw = data.astype("<u4").tobytes()
        if lp.blob_bytes and lp.blob_bytes != len(raw):
            raise ValueError(f"plan for {node.name}: blob_bytes {lp.blob_bytes} but its words take {len(raw)} bytes")
        placed.append((lp.blob_offset, raw, node.name))
    placed.sort()
    end = 0
    out = bytearray()
    for offset, raw, name in placed:
        if offset < end:
            raise ValueError(f"plan: blob layer {name} at byte {offset} overlaps the previous layer (ends at {end})")
        out += bytes(offset - end) + raw
        end = offset + len(raw)
    return bytes(out)


# -- C text helpers ------------------------------------------------------------------------------------
def _c_int_type(bits: int, signed: bool) -> str:
    if signed:
        return "signed char" if bits <= 8 else "short" if bits <= 16 else "int" if bits <= 32 else "long long"
    return "unsigned char" if bits <= 8 else "unsigned short" if bits <= 16 else "unsigned int"


def _rom_type(bits: int, signed: bool) -> str:
    """ROM element type: exact ap_(u)int for synthesis, a plain C integer for g++ (large
    ap_uint initializer lists take g++ minutes: ap types have no constexpr constructors)."""
    bits = max(1, int(bits))
    ap = f"ap_int<{max(bits, 2)}>" if signed else f"ap_uint<{bits}>"
    return f"ADMM_ROM_T({ap}, {_c_int_type(bits, signed)})"


def _c_values(values, *, hexa: bool = False, per_line: int = 16, indent: str = "    ") -> str:
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        v = np.zeros(1, dtype=np.int64)
    if hexa:
        items = [f"0x{int(x):08x}u" for x in v.tolist()]
    else:
        items = [str(int(x)) for x in v.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ("," + "\n" + indent).join(lines)


def _c_table(rows: list, width: int, **kw) -> str:
    """A 2-D initializer, each row padded with zeros to ``width``."""
    parts = []
    for r in rows:
        r = np.asarray(r, dtype=np.int64).reshape(-1)
        padded = np.zeros(max(width, 1), dtype=np.int64)
        padded[: r.size] = r
        parts.append("{" + _c_values(padded, per_line=1 << 30, **kw) + "}")
    return (",\n    ").join(parts)


def _ll(x: int) -> str:
    return f"{int(x)}LL"


# -- per-layer contexts --------------------------------------------------------------------------------
def _size(shape) -> int:
    return int(math.prod(shape))


def _act_bits(graph: LayerGraph) -> int:
    return int(graph.meta.get("act_bits", graph.input_node().quant.get("bits", 8)))


def _mult(m, what: str) -> dict[str, Any]:
    m0, shift = int(m.m0), int(m.shift)
    if not (0 <= m0 < 2**31 and 1 <= shift <= 62):
        raise ValueError(f"{what}: multiplier m0={m0} shift={shift} is outside the contract (m0 < 2^31, 1..62)")
    return {"m0": _ll(m0), "shift": shift}


def _weighted_ctx(graph: LayerGraph, node: Node, lp: LayerPlan, ident: str, act_bits: int,
                  blob_word_base: int) -> dict[str, Any]:
    stream = _stream(node)
    q = node.quant
    cb = node.packed.codebook
    levels = np.asarray(cb.levels, dtype=np.int64)
    bias = np.asarray(q["bias"], dtype=np.int64).reshape(-1)
    if bias.size != stream.rows:
        raise ValueError(f"{node.where()}: {bias.size} biases for {stream.rows} rows")

    pe_words, pe_ptrs = [], []
    for rows in lp.rows:
        idx, local = _pe_slices(stream, rows)
        pe_words.append(_pack_words(stream.fields[idx], stream.width))
        pe_ptrs.append(local)
    rows_list = [np.asarray(r, dtype=np.int64).reshape(-1) for r in lp.rows]
    rmax = max(1, max(r.size for r in rows_list))
    row_len = np.diff(stream.ptr)
    max_row = int(row_len.max()) if row_len.size else 0
    avg_row = int(round(float(row_len.mean()))) if row_len.size else 0

    # Accumulator width, recomputed from the packed stream (no dense decode): per row the sum of
    # |level| over its entries, times the largest input magnitude, plus |bias|.
    mask = (1 << stream.value_bits) - 1
    codes = stream.fields & mask
    table = np.concatenate([np.zeros(1, np.int64), np.abs(levels)])
    if int(codes.max(initial=0)) > levels.size:
        raise ValueError(f"{node.where()}: a code exceeds the codebook's {levels.size} levels")
    row_of = np.repeat(np.arange(stream.rows), row_len)
    # float64 sums are exact: every row sum is far below 2^53
    sums = np.bincount(row_of, weights=table[codes], minlength=stream.rows).astype(np.int64)
    x_peak = -qrange(act_bits)[0]
    bound = int((sums * x_peak + np.abs(bias)).max()) if stream.rows else 0
    acc_bits = max(2, bits_for(bound), int(q.get("acc_bits", 2)))
    if acc_bits > 32:
        raise ValueError(f"{node.where()}: the accumulator needs {acc_bits} bits, more than 32")

    level_bits = max(2, signed_width(levels))
    bias_bits = max(2, signed_width(bias))
    total_entries = int(stream.ptr[-1])
    ptr_bits = max(1, int(max(int(p[-1]) for p in pe_ptrs)).bit_length())
    id_bits = max(1, int(stream.rows - 1).bit_length())
    blob = lp.placement == BLOB
    bases, base = [], blob_word_base
    for w in pe_words:
        bases.append(base)
        base += int(w.size)

    ctx: dict[str, Any] = {
        "id": ident,
        "name": node.name,
        "op": node.op,
        "format": stream.format,
        "pe": lp.pe,
        "rmax": rmax,
        "blob": blob,
        "relu": "true" if node.relu else "false",
        "rows": stream.rows,
        "cols": stream.cols,
        "value_bits": stream.value_bits,
        "index_bits": stream.index_bits,
        "entry_bits": stream.width,
        "per_word": WORD_BITS // stream.width,
        "code_mask": mask,
        "n_levels": int(levels.size),
        "level_bits": level_bits,
        "bias_bits": bias_bits,
        "acc_bits": acc_bits,
        "acc_bound": bound,
        "max_row": max(1, max_row),
        "avg_row": avg_row,
        "total_entries": total_entries,
        "pe_words": [int(w.size) for w in pe_words],
        "pe_entries": [int(p[-1]) for p in pe_ptrs],
        "pe_rows": [int(r.size) for r in rows_list],
        "blob_bases": bases,
        "blob_words": int(base - blob_word_base),
        **_mult(q["multiplier"], node.where()),
        # types and tables
        "word_t": _rom_type(32, False),
        "level_t": _rom_type(level_bits, True),
        "bias_t": _rom_type(bias_bits, True),
        "ptr_t": _rom_type(ptr_bits, False),
        "rowid_t": _rom_type(id_bits, False),
        "words": [] if blob else [_c_values(w, hexa=True, per_line=8) for w in pe_words],
        "codebook": _c_values(levels),
        "nrows": _c_values([r.size for r in rows_list]),
        "row_id": _c_table(rows_list, rmax),
        "row_ptr": _c_table(pe_ptrs, rmax + 1),
        "bias": _c_table([bias[r] for r in rows_list], rmax),
        "blob_base_values": _c_values(bases),
    }
    if node.op == "conv":
        (src,) = graph.inputs(node.name)
        cin, h, w = graph[src].shape
        cout, ho, wo = node.shape
        _, _, kh, kw = node.params["weight"].shape
        (sh, sw), (ph, pw) = node.params["stride"], node.params["padding"]
        if stream.cols != cin * kh * kw or stream.rows != cout:
            raise ValueError(f"{node.where()}: packed {stream.rows}x{stream.cols} does not match the conv shape")
        ctx.update(cin=cin, h=h, w=w, cout=cout, ho=ho, wo=wo, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                   in_size=cin * h * w, out_size=cout * ho * wo)
    else:
        (src,) = graph.inputs(node.name)
        (fin,) = graph[src].shape
        (fout,) = node.shape
        if stream.cols != fin or stream.rows != fout:
            raise ValueError(f"{node.where()}: packed {stream.rows}x{stream.cols} does not match {fout}x{fin}")
        ctx.update(in_size=fin, out_size=fout)
    return ctx


def _pool_ctx(graph: LayerGraph, node: Node, ident: str, act_bits: int) -> dict[str, Any]:
    (src,) = graph.inputs(node.name)
    c, h, w = graph[src].shape
    _, ho, wo = node.shape
    p = node.params
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    ctx = dict(id=ident, name=node.name, op=node.op, c=c, h=h, w=w, ho=ho, wo=wo, kh=kh, kw=kw, sh=sh, sw=sw,
               ph=ph, pw=pw, in_size=c * h * w, out_size=c * ho * wo, relu="true" if node.relu else "false")
    if node.op == "avgpool":
        ctx.update(_mult(node.quant["multiplier"], node.where()))
        ctx["sum_bits"] = bits_for(kh * kw * -qrange(act_bits)[0])
        if ctx["sum_bits"] > 32:
            raise ValueError(f"{node.where()}: a {kh}x{kw} window sum needs more than 32 bits")
    return ctx


def _kernel_ctx(graph: LayerGraph, node: Node, plan: BuildPlan, names: dict[str, str], act_bits: int,
                blob_base: dict[str, int]) -> tuple[str, dict[str, Any]]:
    ident = names[node.name]
    if node.op in WEIGHTED:
        lp = _layer_plan(graph, node.name, plan)
        ctx = _weighted_ctx(graph, node, lp, ident, act_bits, blob_base.get(node.name, 0))
        kind = "conv" if node.op == "conv" else "fc"
        return f"kernel_{kind}_{'sparse' if ctx['format'] == 'relative' else 'dense'}.h.j2", ctx
    if node.op in ("maxpool", "avgpool"):
        return f"kernel_{node.op}.h.j2", _pool_ctx(graph, node, ident, act_bits)
    size = _size(node.shape)
    if node.op == "relu":
        return "kernel_relu.h.j2", dict(id=ident, name=node.name, op="relu", size=size)
    if node.op == "add":
        ma, mb = (_mult(m, node.where()) for m in node.quant["multipliers"])
        if ma["shift"] != mb["shift"]:
            raise ValueError(f"{node.where()}: add multipliers must share one shift")
        return "kernel_add.h.j2", dict(id=ident, name=node.name, op="add", size=size, ma=ma["m0"], mb=mb["m0"],
                                       shift=ma["shift"], relu="true" if node.relu else "false")
    if node.op == "concat":
        parts = []
        offset = 0
        for src, m in zip(graph.inputs(node.name), node.quant["multipliers"]):
            n = _size(graph[src].shape)
            parts.append(dict(size=n, offset=offset, **_mult(m, node.where())))
            offset += n
        if node.relu:
            raise ValueError(f"{node.where()}: a ReLU fused into concat is not part of the contract")
        return "kernel_concat.h.j2", dict(id=ident, name=node.name, op="concat", size=size, parts=parts)
    raise ValueError(f"{node.where()}: the HLS backend has no kernel for op '{node.op}'")


# -- the whole project ---------------------------------------------------------------------------------
def _stream_bits(act_bits: int) -> int:
    return 8 * -(-act_bits // 8)


def _check_graph(graph: LayerGraph) -> None:
    act_bits = _act_bits(graph)
    if not 2 <= act_bits <= 16:
        raise ValueError(f"activation width {act_bits} is not supported by the HLS backend (2..16)")
    for node in graph.topo():
        if node.shape is None:
            raise ValueError(f"{node.where()} has no shape: run infer_shapes first")
        bits = node.quant.get("bits", act_bits)
        if node.op != "output" and bits != act_bits:
            raise ValueError(f"{node.where()}: {bits}-bit activations, the graph uses {act_bits}")


def render_project_sources(graph: LayerGraph, plan: BuildPlan) -> dict[str, bytes]:
    """Every source file of the project: ``firmware/`` (top, types, kernels, ROM weights) and
    ``tb/`` (testbench, compat header, and ``tb/data/weights.bin`` when layers live in the blob)."""
    _check_graph(graph)
    act_bits = _act_bits(graph)
    names = c_names(graph)
    top = plan.top
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top) or "__" in top:
        raise ValueError(f"top function name {top!r} is not a plain C identifier")
    reserved = {"admm_read_input", "admm_write_output", "admm_trace", "admm_requant", "admm_requant2",
                "admm_saturate", "main"}
    if top in reserved or top.startswith(("admm_fork_", "layer_", "fm_")) or any(
            top.startswith(f"{i}_") for i in names.values()):
        raise ValueError(f"top function name {top!r} collides with generated names; choose another")

    # Blob word offsets (in words) of every blob layer.
    blob_nodes = _blob_layers(graph, plan)
    blob_base = {n.name: plan.layers[n.name].blob_offset // 4 for n in blob_nodes}
    blob = weight_blob(graph, plan) if blob_nodes else b""
    blob_words = len(blob) // 4

    files: dict[str, bytes] = {}
    inp, outp = graph.input_node(), graph.output_node()

    tensor = tensor_of(graph)
    readers: dict[str, list[tuple[str, int]]] = {}
    for node in graph.topo():
        if node.op in ALIASES or node.op == "input":
            continue
        for i, src in enumerate(graph.inputs(node.name)):
            readers.setdefault(tensor[src], []).append((node.name, i))

    buffers: list[dict[str, Any]] = []
    arg_of: dict[tuple[str, int], str] = {}
    forks: dict[str, dict[str, Any]] = {}
    for node in graph.topo():
        if tensor[node.name] != node.name:
            continue
        ident = names[node.name]
        main = f"fm_{ident}"
        size = _size(node.shape)
        buffers.append(dict(name=main, size=size, node=node.name))
        rd = readers.get(node.name, [])
        if len(rd) <= 1:
            for r in rd:
                arg_of[r] = main
            continue
        copies = []
        for k, r in enumerate(rd):
            copy = f"{main}_c{k}"
            buffers.append(dict(name=copy, size=size, node=node.name))
            arg_of[r] = copy
            copies.append(copy)
        forks[node.name] = dict(fn=f"admm_fork_{ident}", src=main, copies=copies, size=size)

    processes: list[dict[str, Any]] = []
    kernels: list[str] = []
    weights_files: list[str] = []

    def traces_after(node: Node) -> list[dict[str, Any]]:
        """The node itself, then alias nodes reading it (transitively): they trace the same buffer."""
        out, todo = [], [node.name]
        while todo:
            name = todo.pop(0)
            if graph[name].op == "output":
                continue
            out.append(dict(node=_file_name(name), buf=f"fm_{names[tensor[name]]}", size=_size(graph[name].shape)))
            todo.extend(c for c in graph.consumers(name) if graph[c].op in ALIASES)
        return out

    for node in graph.topo():
        if node.op in ALIASES or node.op == "output":
            continue
        ident = names[node.name]
        out_buf = f"fm_{ident}"
        if node.op == "input":
            call = f"admm_read_input(in, {out_buf});"
        else:
            template, ctx = _kernel_ctx(graph, node, plan, names, act_bits, blob_base)
            ins = [arg_of[(node.name, i)] for i in range(len(graph.inputs(node.name)))]
            args = ins + [out_buf] + (["weights"] if ctx.get("blob") else [])
            call = f"layer_{ident}({', '.join(args)});"
            path = f"firmware/kernels/{ident}.h"
            files[path] = _render(template, k=ctx)
            kernels.append(f"kernels/{ident}.h")
            if node.op in WEIGHTED:
                wpath = f"firmware/weights/{ident}.h"
                files[wpath] = _render("weights.h.j2", k=ctx)
                weights_files.append(wpath)
        processes.append(dict(call=call, traces=traces_after(node), fork=forks.get(node.name)))

    (last,) = graph.inputs(outp.name)
    out_arg = arg_of[(outp.name, 0)]
    in_size, out_size = _size(inp.shape), _size(graph[last].shape)
    lo, hi = qrange(act_bits)
    common = dict(top=top, guard=top.upper(), act_bits=act_bits, stream_bits=_stream_bits(act_bits), act_min=lo,
                  act_max=hi, in_size=in_size, out_size=out_size, blob_words=blob_words, has_blob=bool(blob_nodes),
                  elem_bytes=_elem_bytes(act_bits))
    files["firmware/types.h"] = _render("types.h.j2", **common)
    files[f"firmware/{top}.h"] = _render("top.h.j2", **common)
    files[f"firmware/{top}.cpp"] = _render("top.cpp.j2", **common, kernels=kernels, buffers=buffers,
                                           processes=processes, forks=list(forks.values()), out_arg=out_arg,
                                           n_layers=len(processes))
    files[f"tb/tb_{top}.cpp"] = _render("tb.cpp.j2", **common)
    files["tb/compat/ap_axi_sdata.h"] = _render("compat/ap_axi_sdata.h.j2")
    if blob_nodes:
        files["tb/data/weights.bin"] = blob
    return dict(sorted(files.items()))


# -- test vectors --------------------------------------------------------------------------------------
def _elem_bytes(act_bits: int) -> int:
    return 1 if act_bits <= 8 else 2


def _to_bytes(values: np.ndarray, act_bits: int) -> bytes:
    dtype = "<i1" if _elem_bytes(act_bits) == 1 else "<i2"
    return np.ascontiguousarray(values, dtype=np.int64).astype(dtype).tobytes()


def test_vectors(graph: LayerGraph, x_int: np.ndarray) -> dict[str, bytes]:
    """Testbench data from the reference: ``tb/data/input.bin`` (N images), ``expected.bin``
    (N outputs), ``meta.txt`` (N, sizes, element bytes) and, for the FIRST vector, every
    layer's output in ``tb/data/layers/<node>.bin`` (locates the first failing layer)."""
    from ...reference import run

    act_bits = _act_bits(graph)
    x = np.asarray(x_int)
    inp = graph.input_node()
    if x.dtype.kind not in "iu":
        raise ValueError("test vectors take quantized integer inputs (quantize with reference.quantize_images)")
    if x.shape[1:] != tuple(inp.shape) or x.shape[0] < 1:
        raise ValueError(f"test vectors must have shape (N >= 1, {', '.join(map(str, inp.shape))}), got {x.shape}")
    lo, hi = qrange(act_bits)
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise ValueError(f"test vector values must lie in [{lo}, {hi}]")
    outs = run(graph, x.astype(np.int64), all_outputs=True)
    out_node = graph.output_node()
    n = x.shape[0]
    expected = outs[out_node.name].reshape(n, -1)
    files = {
        "tb/data/input.bin": _to_bytes(x.reshape(n, -1), act_bits),
        "tb/data/expected.bin": _to_bytes(expected, act_bits),
    }
    layers = []
    for node in graph.topo():
        if node.op == "output":
            continue
        stem = _file_name(node.name)
        files[f"tb/data/layers/{stem}.bin"] = _to_bytes(outs[node.name][0].reshape(-1), act_bits)
        layers.append(stem)
    meta = [
        f"# {BANNER}",
        "# test vectors: input.bin holds n inputs, expected.bin n outputs (little-endian signed integers",
        "# of `bytes` bytes each); layers/<node>.bin hold every layer's output for vector 0",
        f"n {n}",
        f"input {_size(inp.shape)}",
        f"output {expected.shape[1]}",
        f"bytes {_elem_bytes(act_bits)}",
        f"act_bits {act_bits}",
        f"layers {' '.join(layers)}",
    ]
    files["tb/data/meta.txt"] = ("\n".join(meta) + "\n").encode()
    return dict(sorted(files.items()))


test_vectors.__test__ = False  # not a pytest test, whatever module imports it
