"""HardwarePlan: every hardware decision of a build, made once, rendered by both backends.

``make_plan(graph, pe=4)`` decides, from the packed LayerGraph and the user's options:

* lanes (PEs) per layer: a conv / linear layer spends its budget as G row groups x B position
  bands in lockstep (``schedule``), with one padded weight stream per group (``streams``); a
  pool or element-wise layer splits its channels into ranges, a concat runs its inputs side by
  side. ``--pe N`` is that budget for every layer; ``pe_layers`` overrides it per layer.
* the banking of every feature map (``layout``): each lane of a producer writes its own bank,
  and each consumer lane gets its own copy of the banks (its own read port);
* where each conv / linear layer's words live: an on-chip ROM, or, when they exceed
  ``onchip_kb`` KiB, the off-chip weight blob read over AXI (its own m_axi port);
* the on-chip memory of the whole design in the part's units (``memory``), checked against the
  part: a design that cannot fit is a ``UserError`` unless ``check_memory=False``;
* the cycles of every process in both backends (``cycles``).

Neither backend decides anything the plan decides; the manifest records the plan.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arith import ubits
from ..errors import UserError
from ..ir.graph import LayerGraph, Node
from .cycles import overhead, restart
from .layout import Layout, range_layout, shape3, weighted_layout
from .memory import PartMemory, Storage, part_memory, storage
from .names import ALIASES, layer_names, tensor_of
from .schedule import Schedule, best_schedule, range_split
from .streams import WORD_BITS, WeightStream, lockstep_words, weight_stream, with_ecc

__all__ = ["HardwarePlan", "LayerHW", "Channel", "MemoryUse", "make_plan", "DEFAULT_PART", "BLOB_ALIGN", "STREAM_DEPTH",
           "resolve_pe_layers", "check_pe", "check_options", "column_table_bits"]

DEFAULT_PART = "xczu9eg-ffvb1156-2-e"
BLOB_ALIGN = 64  # bytes: every blob layer starts on an AXI burst-friendly boundary
MAX_BEAT_BITS = 512  # widest m_axi port the plan asks for
STREAM_DEPTH = 2  # FIFO depth of the weight and schedule streams (they only run ahead)


@dataclass(frozen=True, eq=False)
class LayerHW:
    """One process of the design (every node but aliases)."""

    name: str  # node name
    ident: str  # its C / Verilog identifier
    op: str
    kind: str  # input, output, weighted (conv, linear), window (pools), elementwise (add, relu), concat
    lanes: int  # parallel lanes (PEs)
    iterations: int  # issue cycles of its pipelined loop
    layout: Layout | None  # banks of its output (None: the output process)
    ranges: tuple[tuple[int, int], ...] = ()  # window / elementwise: channel ranges; concat: per input
    schedule: Schedule | None = None  # conv / linear
    stream: WeightStream | None = None
    words: np.ndarray | None = None  # (groups, steps) uint32, lockstep
    kernel: tuple[int, int] = (1, 1)  # conv: (KH, KW)
    placement: str = ""  # conv / linear: "rom" or "blob"
    blob_offset: int = 0
    beat_bits: int = 0  # blob: m_axi data width
    beats: int = 0  # blob: beats read per inference

    @property
    def steps(self) -> int:
        return int(self.words.shape[1]) if self.words is not None else 0

    @property
    def blob_bytes(self) -> int:
        return self.beats * self.beat_bits // 8

    @property
    def count_bits(self) -> int:
        """Bits of a slot's entry count."""
        return ubits(int(self.schedule.slot_count.max()))

    @property
    def step_bits(self) -> int:
        """Width of the weight stream: word t of every group."""
        return WORD_BITS * self.schedule.groups

    @property
    def slot_bits(self) -> int:
        """Width of the schedule stream: the slot's entry count and the bias of each group's row."""
        return self.count_bits + self.schedule.groups * self.stream.acc_bits

    @property
    def ecc_check_bits(self) -> int:
        """Check bits of the entry code in its lanes' streams (0: no code)."""
        return int(self.stream.ecc_bits) * self.schedule.groups * self.schedule.entries

    @property
    def slot_words(self) -> int:
        """Words a slot's entries span at most (its first word may be the previous slot's last):
        the row buffer a conv layer replays its slot from."""
        s, per_word = self.schedule, self.stream.per_word
        return max(1, int(((s.slot_start % per_word + s.slot_count - 1) // per_word + 1).max()))

    @property
    def beats_per_step(self) -> int:
        return -(-self.step_bits // self.beat_bits) if self.beat_bits else 0

    @property
    def fifos(self) -> tuple[str, str]:
        """The C names of its (words, schedule) streams."""
        return f"s_words_{self.ident}", f"s_slots_{self.ident}"

    @property
    def nonzero_macs(self) -> int:
        """Nonzero multiply-accumulates of one inference."""
        c, h, w = self.layout.shape
        return int(self.stream.nonzeros.sum()) * h * w

    @property
    def lockstep_efficiency(self) -> float:
        """Real entries over the entries its lanes issue (the padding lockstep costs)."""
        s = self.schedule
        return int(self.stream.entries.sum()) / max(1, s.entries * s.groups)

    @property
    def reader_lanes(self) -> int:
        """Read ports this process needs on each input: one per lane (a concat lane reads one
        input only)."""
        return 1 if self.kind in ("concat", "output", "input") else self.lanes

    def cycles(self, backend: str) -> int:
        return self.iterations + overhead(self.kind, backend, blob=self.placement == "blob")


@dataclass(frozen=True, eq=False)
class Channel:
    """A ping-pong buffer between two processes: one writer, one reader, one copy of the
    producer's banks per reader lane."""

    name: str  # C identifier
    tensor: str  # the producing process (node name)
    consumer: str  # the reading process (node name)
    port: int  # argument position at the consumer
    copies: int
    layout: Layout
    bits: int  # bits per element

    def storage(self, part: PartMemory | None) -> Storage:
        return storage(self.layout.bank_size, self.bits, part)


@dataclass(frozen=True)
class MemoryUse:
    items: tuple[dict[str, Any], ...]  # what, kind, count, bram36, uram, bits
    bram36: float
    uram: int
    lutram_bits: int
    part: PartMemory | None

    @property
    def fits(self) -> bool | None:
        if self.part is None:
            return None
        return self.bram36 <= self.part.bram36 and self.uram <= self.part.uram


@dataclass(frozen=True, eq=False)
class HardwarePlan:
    top: str
    part: str
    clock_ns: float
    pe: int
    onchip_kb: float
    act_bits: int
    layers: dict[str, LayerHW]  # every process, in topological order
    channels: tuple[Channel, ...]
    names: dict[str, str]  # node name -> identifier (aliases included)
    tensor: dict[str, str]  # node name -> the process whose output holds its tensor
    memory: MemoryUse | None = None

    @property
    def stream_bits(self) -> int:
        """AXI4-Stream TDATA bits of one activation (whole bytes), in and out."""
        return 8 * -(-self.act_bits // 8)

    # -- queries -----------------------------------------------------------------------------------
    def weighted(self) -> list[LayerHW]:
        return [l for l in self.layers.values() if l.kind == "weighted"]

    def blob_layers(self) -> list[LayerHW]:
        return [l for l in self.weighted() if l.placement == "blob"]

    def reads(self, name: str) -> list[Channel]:
        """The channels process ``name`` reads, in argument order."""
        return sorted((c for c in self.channels if c.consumer == name), key=lambda c: c.port)

    def writes(self, name: str) -> list[Channel]:
        return [c for c in self.channels if c.tensor == name]

    def cycles(self, backend: str) -> dict[str, int]:
        return {n: l.cycles(backend) for n, l in self.layers.items()}

    def latency(self, backend: str = "hls") -> int:
        """Cycles of one inference in ``backend``: the longest path of process cycles (a
        process starts when its producers finish; ``hw.cycles``)."""
        cycles = self.cycles(backend)
        done: dict[str, int] = {}
        for name in self.layers:
            before = [done[c.tensor] for c in self.reads(name)]
            done[name] = max(before, default=0) + cycles[name]
        return max(done.values(), default=0)

    def interval(self, backend: str = "hls") -> int:
        """Cycles between images with images in flight (ping-pong channels): the slowest process
        (with the cycles it takes to start again, ``hw.cycles.restart``)."""
        cycles = self.cycles(backend)
        return max((c + restart(self.layers[n].kind, backend) for n, c in cycles.items()), default=0)

    def blob_size(self) -> int:
        return max((l.blob_offset + l.blob_bytes for l in self.blob_layers()), default=0)

    def to_manifest(self) -> dict[str, Any]:
        """The plan as the manifest records it (plain JSON types)."""
        layers = []
        hls, rtl = self.cycles("hls"), self.cycles("rtl")
        for l in self.layers.values():
            entry: dict[str, Any] = {"name": l.name, "ident": l.ident, "op": l.op, "kind": l.kind, "lanes": l.lanes,
                                     "iterations": l.iterations, "cycles": {"hls": hls[l.name], "rtl": rtl[l.name]}}
            if l.layout is not None:
                entry["banks"] = {"groups": l.layout.groups, "bands": [list(b) for b in l.layout.bands],
                                  "bank_size": l.layout.bank_size}
            if l.ranges:
                entry["ranges"] = [list(r) for r in l.ranges]
            if l.schedule is not None:
                s, st = l.schedule, l.stream
                entry.update({
                    "groups": s.groups, "bands": [list(b) for b in s.bands], "slots": s.slots,
                    "slot_entries": [int(c) for c in s.slot_count],
                    "rows_per_group": [int(s.group_rows(g).size) for g in range(s.groups)],
                    "nonzeros_per_group": [int(st.nonzeros[s.group_rows(g)].sum()) for g in range(s.groups)],
                    "entries": int(st.entries.sum()), "lockstep_entries": s.entries * s.groups,
                    "lockstep_efficiency": round(l.lockstep_efficiency, 6), "nonzero_macs": l.nonzero_macs,
                    "acc_bits": st.acc_bits, "acc_bound": st.acc_bound,
                    "words_per_group": l.steps, "placement": l.placement,
                })
                if l.placement == "blob":
                    entry.update({"blob_offset": l.blob_offset, "blob_bytes": l.blob_bytes, "beat_bits": l.beat_bits,
                                  "beats": l.beats})
            layers.append(entry)
        channels = [{"name": c.name, "from": c.tensor, "to": c.consumer, "kind": "pipo", "copies": c.copies,
                     "banks": c.layout.banks, "bank_size": c.layout.bank_size, "bits": c.bits,
                     "storage": c.storage(part_memory(self.part)).kind} for c in self.channels]
        for l in self.weighted():  # the weight and schedule FIFOs of each conv / linear layer
            words, slots = l.fifos
            channels += [{"name": words, "from": f"words of {l.name}", "to": l.name, "kind": "stream",
                          "bits": l.step_bits, "depth": STREAM_DEPTH, "storage": "lutram"},
                         {"name": slots, "from": f"schedule of {l.name}", "to": l.name, "kind": "stream",
                          "bits": l.slot_bits, "depth": STREAM_DEPTH, "storage": "lutram"}]
        mem = self.memory
        return {
            "pe": self.pe, "part": self.part, "clock_ns": self.clock_ns, "onchip_kb": self.onchip_kb,
            "layers": layers, "channels": channels,
            "memory": None if mem is None else {
                "bram36": mem.bram36, "uram": mem.uram, "lutram_bits": mem.lutram_bits,
                "available": None if mem.part is None else {"bram36": mem.part.bram36, "uram": mem.part.uram},
                "fits": mem.fits, "items": list(mem.items)},
            "cycles": {"hls_latency": self.latency("hls"), "hls_interval": self.interval("hls"),
                       "rtl_latency": self.latency("rtl"), "rtl_interval": self.interval("rtl")},
        }


# -- options -------------------------------------------------------------------------------------------
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_options(top: str, clock_ns, onchip_kb, part: str) -> None:
    """The build options a plan takes, each a one-line UserError when wrong."""
    if not isinstance(top, str) or not _IDENT.match(top):
        raise UserError(f"--top {top!r} is not a C identifier: use letters, digits and _ (not first a digit)")
    if not (isinstance(clock_ns, (int, float)) and math.isfinite(clock_ns) and clock_ns > 0):
        raise UserError(f"--clock must be a positive period in ns, got {clock_ns!r}")
    if not (isinstance(onchip_kb, (int, float)) and onchip_kb >= 0):
        raise UserError(f"--onchip-kb must be >= 0, got {onchip_kb!r}")
    if not part or not isinstance(part, str) or any(c.isspace() for c in part):
        raise UserError(f"--part {part!r} is not a part name (e.g. {DEFAULT_PART})")


def check_pe(value, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or n != value:
        raise UserError(f"{what}: the PE count must be a whole number >= 1, got {value!r}")
    return n


LANED = ("conv", "linear", "maxpool", "avgpool", "add", "relu")


def resolve_pe_layers(graph: LayerGraph, pe_layers: dict[str, int] | None) -> dict[str, int]:
    """{node name: PEs}; keys may be node names or module paths (``features.0``)."""
    out: dict[str, int] = {}
    nodes = graph.nodes_of(*LANED)
    by_name = {n.name: n.name for n in nodes} | {n.module: n.name for n in nodes if n.module}
    for key, value in (pe_layers or {}).items():
        if key not in by_name:
            known = ", ".join(n.name + (f" ({n.module})" if n.module and n.module != n.name else "") for n in nodes)
            raise UserError(f"--pe-layer {key}: no layer with PEs of that name; the layers are {known}")
        out[by_name[key]] = check_pe(value, f"--pe-layer {key}")
    return out


# -- per-op planners ----------------------------------------------------------------------------------
def _weighted(node: Node, graph: LayerGraph, budget: int, act_bits: int, ident: str,
              ecc: bool = False) -> LayerHW:
    stream = weight_stream(node, act_bits)
    if ecc:
        stream = with_ecc(stream, node.where())
    _, ho, wo = shape3(node.shape) if node.op == "conv" else (0, 1, 1)
    schedule = best_schedule(stream.entries, ho, wo, budget)
    kernel = tuple(int(k) for k in node.params["weight"].shape[2:]) if node.op == "conv" else (1, 1)
    return LayerHW(node.name, ident, node.op, "weighted", schedule.lanes, schedule.iterations,
                   weighted_layout(node.shape, schedule), schedule=schedule, stream=stream,
                   words=lockstep_words(stream, schedule), kernel=kernel)


def _window(node: Node, graph: LayerGraph, budget: int, act_bits: int, ident: str,
            ecc: bool = False) -> LayerHW:
    c, ho, wo = shape3(node.shape)
    kh, kw = node.params["kernel"]
    ranges = range_split(c, budget)
    span = max(hi - lo for lo, hi in ranges)
    return LayerHW(node.name, ident, node.op, "window", len(ranges), span * ho * wo * kh * kw,
                   range_layout(node.shape, ranges), ranges=ranges)


def _elementwise(node: Node, graph: LayerGraph, budget: int, act_bits: int, ident: str,
                 ecc: bool = False) -> LayerHW:
    c, h, w = shape3(node.shape)
    ranges = range_split(c, budget)
    span = max(hi - lo for lo, hi in ranges)
    return LayerHW(node.name, ident, node.op, "elementwise", len(ranges), span * h * w,
                   range_layout(node.shape, ranges), ranges=ranges)


def _concat(node: Node, graph: LayerGraph, budget: int, act_bits: int, ident: str,
            ecc: bool = False) -> LayerHW:
    spans, lo = [], 0
    for src in graph.inputs(node.name):
        c = shape3(graph[src].shape)[0]
        spans.append((lo, lo + c))
        lo += c
    largest = max(int(np.prod(graph[s].shape)) for s in graph.inputs(node.name))
    return LayerHW(node.name, ident, node.op, "concat", len(spans), largest, range_layout(node.shape, tuple(spans)),
                   ranges=tuple(spans))


def _input(node: Node, graph: LayerGraph, budget: int, act_bits: int, ident: str,
           ecc: bool = False) -> LayerHW:
    c = shape3(node.shape)[0]
    return LayerHW(node.name, ident, "input", "input", 1, int(np.prod(node.shape)),
                   range_layout(node.shape, ((0, c),)))


def _output(node: Node, graph: LayerGraph, budget: int, act_bits: int, ident: str,
            ecc: bool = False) -> LayerHW:
    return LayerHW(node.name, ident, "output", "output", 1, int(np.prod(node.shape)), None)


PLANNERS = {"input": _input, "output": _output, "conv": _weighted, "linear": _weighted, "maxpool": _window,
            "avgpool": _window, "add": _elementwise, "relu": _elementwise, "concat": _concat}


# -- placement and memory -----------------------------------------------------------------------------
def _place(layer: LayerHW, limit_bytes: float, offset: int, offchip: bool) -> tuple[LayerHW, int]:
    """ROM, or the blob at ``offset`` (returns the next free offset)."""
    from dataclasses import replace

    if not offchip and layer.step_bits * layer.steps // 8 <= limit_bytes:
        return replace(layer, placement="rom"), offset
    offset = -(-offset // BLOB_ALIGN) * BLOB_ALIGN
    placed = replace(layer, placement="blob", blob_offset=offset,
                     beat_bits=min(MAX_BEAT_BITS, 1 << max(5, (layer.step_bits - 1).bit_length())))
    placed = replace(placed, beats=layer.steps * placed.beats_per_step)
    return placed, offset + placed.blob_bytes


def column_table_bits(layer: LayerHW, lay_in: Layout) -> int:
    """Bits of a conv / linear layer's column-table entry (the HLS kernel's): conv: the input
    channel's bank group and base, ky, kx; linear: the input element's group, band and address."""
    if layer.op == "conv":
        kh, kw = layer.kernel
        return ubits(lay_in.groups - 1) + ubits(int(lay_in.channel_base.max())) + ubits(kh - 1) + ubits(kw - 1)
    return ubits(lay_in.groups - 1) + ubits(len(lay_in.bands) - 1) + ubits(lay_in.bank_size - 1)


def _memory(layers: dict[str, LayerHW], channels: tuple[Channel, ...], part: PartMemory | None) -> MemoryUse:
    items: list[dict[str, Any]] = []

    def add(what: str, count: int, depth: int, width: int, rom: bool) -> None:
        if depth <= 0 or count <= 0:
            return
        s = storage(depth, width, part, rom=rom)
        items.append({"what": what, "kind": s.kind, "count": count, "depth": depth, "width": width,
                      "bram36": s.bram36 * count, "uram": s.uram * count, "bits": s.bits * count})

    for c in channels:  # ping-pong: two buffers per bank and copy
        add(f"channel {c.name}", 2 * c.copies * c.layout.banks, c.layout.bank_size, c.bits, rom=False)
    for l in layers.values():
        if l.kind != "weighted":
            continue
        s, st = l.schedule, l.stream
        if l.placement == "rom":
            add(f"{l.ident} weight ROM", s.groups, l.steps, WORD_BITS, rom=True)
        add(f"{l.ident} schedule ROM", 1, s.slots, l.count_bits, rom=True)
        add(f"{l.ident} bias ROM", s.groups, s.slots, st.acc_bits, rom=True)
        lay_in = next(c.layout for c in channels if c.consumer == l.name)
        add(f"{l.ident} column tables", s.groups, st.cols, column_table_bits(l, lay_in), rom=True)
        add(f"{l.ident} stream FIFOs", 1, STREAM_DEPTH, l.step_bits + l.slot_bits, rom=False)
        if s.positions > 1:  # the slot's words, replayed at every output position
            add(f"{l.ident} row buffers", s.groups, l.slot_words, WORD_BITS, rom=False)
    bram = sum(i["bram36"] for i in items)
    return MemoryUse(tuple(items), bram, sum(i["uram"] for i in items),
                     sum(i["bits"] for i in items if i["kind"] == "lutram"), part)


# -- the plan -----------------------------------------------------------------------------------------
def make_plan(
    graph: LayerGraph,
    *,
    pe: int | None = None,
    pe_layers: dict[str, int] | None = None,
    onchip_kb: float = 512.0,
    part: str = DEFAULT_PART,
    clock_ns: float = 5.0,
    top: str = "admm_top",
    check_memory: bool = True,
    offchip: tuple[str, ...] = (),
    ecc: bool = False,
    bar=None,
) -> HardwarePlan:
    """The plan of a packed LayerGraph (see the module docstring). ``offchip``: conv / linear
    layers (node names) whose words go off-chip whatever their size; ``bar``: a tqdm bar
    advanced once per weighted layer. ``pe`` None: the PE count the checkpoint was pruned to
    balance (``graph.meta["balance_pe"]``), else 1. ``ecc``: every weight-stream entry carries a single-error-correcting
    Hamming code (``sparse.ecc``) that the lanes decode before they use it."""
    check_options(top, clock_ns, onchip_kb, part)
    if pe is None:
        pe = graph.meta.get("balance_pe") or 1
    budget = check_pe(pe, "--pe")
    unknown = set(offchip) - {n.name for n in graph.nodes_of("conv", "linear")}
    if unknown:
        raise UserError(f"off-chip layers {', '.join(sorted(unknown))}: no conv or linear layer of that name")
    per_layer = resolve_pe_layers(graph, pe_layers)
    act_bits = graph.act_bits()
    names = layer_names(graph)
    tensor = tensor_of(graph)
    layers: dict[str, LayerHW] = {}
    limit = float(onchip_kb) * 1024
    offset = 0
    for node in graph.topo():
        if node.op in ALIASES:
            continue
        planner = PLANNERS.get(node.op)
        if planner is None:
            raise ValueError(f"{node.where()}: no hardware for op '{node.op}' (supported: {', '.join(PLANNERS)})")
        if node.shape is None:
            raise ValueError(f"{node.where()} has no shape: run infer_shapes first")
        if bar is not None:
            bar.set_postfix_str(f"plan {node.name}")
        layer = planner(node, graph, per_layer.get(node.name, budget), act_bits, names[node.name], ecc)
        if layer.kind == "weighted":
            layer, offset = _place(layer, limit, offset, node.name in offchip)
        layers[node.name] = layer
        if bar is not None and layer.kind == "weighted":
            bar.update(1)

    # Channels: one per (producer, consumer, port), a copy of the producer's banks per reader lane.
    readings: dict[str, list[tuple[str, int]]] = {}
    for node in graph.topo():
        if node.name in layers and node.op != "input":
            for port, src in enumerate(graph.inputs(node.name)):
                readings.setdefault(tensor[src], []).append((node.name, port))
    channels = []
    for producer, readers in readings.items():
        for consumer, port in readers:
            name = f"fm_{names[producer]}"
            if len(readers) > 1:
                name += f"_{names[consumer]}" + (f"_{port}" if sum(r[0] == consumer for r in readers) > 1 else "")
            channels.append(Channel(name, producer, consumer, port, layers[consumer].reader_lanes,
                                    layers[producer].layout, act_bits))
    channels_t = tuple(channels)
    memory = _memory(layers, channels_t, part_memory(part))
    plan = HardwarePlan(top=top, part=part, clock_ns=float(clock_ns), pe=budget, onchip_kb=float(onchip_kb),
                        act_bits=act_bits, layers=layers, channels=channels_t, names=names, tensor=tensor,
                        memory=memory)
    if check_memory and memory.fits is False:
        worst = max(memory.items, key=lambda i: i["bram36"] + 8 * i["uram"])
        raise UserError(
            f"the design needs {memory.bram36:g} BRAM36 and {memory.uram} URAM, {part} has {memory.part.bram36} and "
            f"{memory.part.uram} (largest: {worst['what']}, {worst['bram36']:g} BRAM36 / {worst['uram']} URAM): "
            "use fewer PEs, a lower --onchip-kb, a larger --part, or --ignore-memory to build it anyway")
    return plan


