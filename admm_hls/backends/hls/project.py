"""The HLS project builder: packed LayerGraph -> a self-contained Vitis HLS project folder.

``build`` takes every decision (the BuildPlan: PEs and their rows per layer, where each layer's
weights live), lets ``render`` write the C++ sources, weight blob and test vectors, adds the tool
flows (``run_hls.tcl``, ``hls_config.cfg``, ``Makefile``), a ``README.md`` and ``manifest.json``.

Writing is atomic and deterministic: everything goes to a temporary sibling folder that is
renamed into place at the end (a failure or Ctrl-C leaves no output folder and no temporary
folder), and the same graph and options give byte-identical files.

    from admm_hls.backends.hls.project import build
    project = build(graph, "hls/", pe=4)
    result = project.csim()            # g++ C simulation: a CsimResult
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UserError
from .pe import ROW_OVERHEAD, assign_rows, imbalance, pe_loads, row_entries, row_nonzeros
from .plan import BuildPlan, LayerPlan

if TYPE_CHECKING:
    from ...ir.graph import LayerGraph

__all__ = ["HLSProject", "build", "make_plan", "open_project", "format_summary", "check_out_dir",
           "describe_failure", "input_integers", "DEFAULT_PART",
           "DEFAULT_VECTORS", "VECTOR_SEED", "BLOB_ALIGN", "MANIFEST"]

DEFAULT_PART = BuildPlan.part
DEFAULT_VECTORS = 8
VECTOR_SEED = 20240601  # the deterministic random test inputs
BLOB_ALIGN = 64  # bytes: every blob layer starts on an AXI burst-friendly boundary
FLOW_TARGET = "vivado"  # a Vivado IP, exported to the IP catalog (the tcl and cfg agree)
CFLAGS = "-std=c++14"
MANIFEST = "manifest.json"
BLOB_FILE = "firmware/weights.bin"  # where the blob goes unless the renderer places it itself
MANIFEST_FORMAT = "admm-hls-hls-project"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# -- the plan -------------------------------------------------------------------------------------
def _weighted(graph: LayerGraph):
    return graph.nodes_of("conv", "linear")


def _resolve_pe_layers(graph: LayerGraph, pe_layers: dict[str, int] | None) -> dict[str, int]:
    """{node name: PEs}; keys may be node names or module paths (``features.0``)."""
    out: dict[str, int] = {}
    nodes = _weighted(graph)
    by_name = {n.name: n.name for n in nodes} | {n.module: n.name for n in nodes if n.module}
    for key, value in (pe_layers or {}).items():
        if key not in by_name:
            known = ", ".join(n.name + (f" ({n.module})" if n.module and n.module != n.name else "") for n in nodes)
            raise UserError(f"--pe-layer {key}: no conv or linear layer of that name; the layers are {known}")
        out[by_name[key]] = _check_pe(value, f"--pe-layer {key}")
    return out


def _check_pe(value, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or n != value:
        raise UserError(f"{what}: the PE count must be a whole number >= 1, got {value!r}")
    return n


def _layer_bytes(graph: LayerGraph, name: str, plan: BuildPlan) -> tuple[list[int], int]:
    """(words per PE, packed weight bytes of all PEs) as the renderer lays them out."""
    from . import render

    words = [int(np.asarray(w).size) for w in render.layer_words(graph, name, plan)]
    return words, 4 * sum(words)


def make_plan(graph: LayerGraph, **options) -> BuildPlan:
    """Every decision before rendering: balanced rows per PE, on-chip ROM or off-chip blob.
    Options as ``build``'s (pe, pe_layers, onchip_kb, part, clock_ns, top, progress)."""
    return _make_plan(graph, **options)[0]


def _make_plan(
    graph: LayerGraph,
    *,
    pe: int = 1,
    pe_layers: dict[str, int] | None = None,
    onchip_kb: float = 512.0,
    part: str = DEFAULT_PART,
    clock_ns: float = 5.0,
    top: str = "admm_top",
    progress: bool = True,
    bar=None,
) -> tuple[BuildPlan, dict[str, list[int]]]:
    """(plan, {layer: words per PE}); ``bar``: a tqdm bar advanced once per layer."""
    pe = _check_pe(pe, "--pe")
    per_layer = _resolve_pe_layers(graph, pe_layers)
    nodes = _weighted(graph)
    rows = {}
    for node in nodes:
        n_pe = max(1, min(per_layer.get(node.name, pe), node.packed.layer.rows))  # no PE without rows
        cost = row_entries(node.packed) + ROW_OVERHEAD
        rows[node.name] = LayerPlan(node=node.name, pe=n_pe, rows=assign_rows(cost, n_pe, "balanced"),
                                    placement="rom")
    draft = BuildPlan(top=top, part=part, clock_ns=float(clock_ns), onchip_kb=float(onchip_kb), layers=dict(rows))
    limit = float(onchip_kb) * 1024
    layers, words, offset = {}, {}, 0
    own = bar is None
    if own:
        bar = _bar(len(nodes), progress)
    for node in nodes:
        bar.set_postfix_str(f"plan {node.name}")
        lp = rows[node.name]
        words[node.name], nbytes = _layer_bytes(graph, node.name, draft)
        if nbytes > limit:
            offset = -(-offset // BLOB_ALIGN) * BLOB_ALIGN
            lp = LayerPlan(node=lp.node, pe=lp.pe, rows=lp.rows, placement="blob", blob_offset=offset,
                           blob_bytes=nbytes)
            offset += nbytes
        layers[node.name] = lp
        bar.update(1)
    if own:
        bar.close()
    plan = BuildPlan(top=top, part=part, clock_ns=float(clock_ns), onchip_kb=float(onchip_kb), layers=layers)
    return plan, words


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    # disable=None: shown on a terminal only
    return tqdm(total=total, desc="admm-hls build", unit="step", disable=None if progress else True, leave=False)


# -- the manifest ---------------------------------------------------------------------------------
def _ratio(x: float) -> float | str:
    """A derived ratio at fixed precision (JSON has no infinity)."""
    return round(float(x), 6) if math.isfinite(x) else "inf"


def _plain(obj: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, tuples to lists, non-finite floats to text."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_plain(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")
    return obj


def _multiplier(m) -> dict[str, int]:
    return {"m0": int(m.m0), "shift": int(m.shift)}


def _quant_fields(q: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("scale", "bits", "in_scale", "w_scale", "weight_bits", "acc_bound", "acc_bits", "bias_bits"):
        if key in q:
            out[key] = q[key]
    if "multiplier" in q:
        out["multiplier"] = _multiplier(q["multiplier"])
    if "multipliers" in q:
        out["multipliers"] = [_multiplier(m) for m in q["multipliers"]]
    return out


def _positions(node) -> int:
    return int(node.shape[1] * node.shape[2]) if node.op == "conv" else 1


def _layer_entry(graph: LayerGraph, node, plan: BuildPlan, report_row: dict | None, words: list[int] | None):
    entry: dict[str, Any] = {
        "name": node.name,
        "module": node.module,
        "op": node.op,
        "inputs": graph.inputs(node.name),
        "shape": list(node.shape or ()),
        "relu": bool(node.relu),
        **_quant_fields(node.quant),
    }
    for key in ("kernel", "stride", "padding", "divisor"):
        if key in node.params:
            entry[key] = node.params[key]
    if node.packed is None:
        return entry
    packed, lp = node.packed, plan.layers[node.name]
    entries, nonzeros = row_entries(packed), row_nonzeros(packed)
    cost = entries + ROW_OVERHEAD
    rr = assign_rows(cost, lp.pe, "round_robin")
    loads = pe_loads(cost, lp.rows)
    entry.update({
        "weight_shape": list(node.params["weight"].shape),
        "format": packed.format,
        "value_bits": int(packed.codebook.value_bits),
        "index_bits": int(getattr(packed.layer, "index_bits", 0)),
        "word_bits": int(packed.layer.word_bits),
        "codebook": [int(v) for v in np.asarray(packed.codebook.levels)],
        "sizes": report_row,
        "pe": lp.pe,
        "rows_per_pe": [int(r.size) for r in lp.rows],
        "nonzeros_per_pe": pe_loads(nonzeros, lp.rows),
        "entries_per_pe": pe_loads(entries, lp.rows),
        "words_per_pe": words,
        "imbalance": {"balanced": _ratio(imbalance(loads)), "round_robin": _ratio(imbalance(pe_loads(cost, rr)))},
        "imbalance_nonzeros": {"balanced": _ratio(imbalance(pe_loads(nonzeros, lp.rows))),
                               "round_robin": _ratio(imbalance(pe_loads(nonzeros, rr)))},
        "placement": lp.placement,
        "blob_offset": lp.blob_offset if lp.placement == "blob" else None,
        "blob_bytes": lp.blob_bytes if lp.placement == "blob" else None,
        "output_positions": _positions(node),
        "cycles_estimate": int(loads.max(initial=0)) * _positions(node),
    })
    return entry


def _manifest(graph: LayerGraph, plan: BuildPlan, words: dict[str, list[int]], vectors: dict[str, Any],
              blob_file: str | None):
    from ... import __version__
    from ...report import graph_report

    report = graph_report(graph)
    rows = dict(zip((n.name for n in _weighted(graph)), report["layers"]))
    layers = [_layer_entry(graph, node, plan, rows.get(node.name), words.get(node.name)) for node in graph.topo()]
    totals = dict(report["totals"])
    totals["cycles_estimate"] = sum(l.get("cycles_estimate", 0) for l in layers)
    totals["latency_ms"] = totals["cycles_estimate"] * plan.clock_ns * 1e-6
    inp, out = graph.input_node(), graph.output_node()
    return {
        "format": MANIFEST_FORMAT,
        "model": graph.name,
        "admm_hls_version": __version__,
        "top": plan.top,
        "part": plan.part,
        "clock_ns": plan.clock_ns,
        "flow_target": FLOW_TARGET,
        "onchip_kb": plan.onchip_kb,
        "row_overhead_cycles": ROW_OVERHEAD,
        "input": {"name": inp.name, "shape": list(inp.shape), "scale": inp.quant["scale"], "bits": inp.quant["bits"]},
        "output": {"name": out.name, "shape": list(out.shape), "scale": out.quant["scale"], "bits": out.quant["bits"]},
        "weight_blob": ({"file": blob_file,
                         "bytes": max(lp.blob_offset + lp.blob_bytes for lp in plan.layers.values()
                                      if lp.placement == "blob"),
                         "align": BLOB_ALIGN}
                        if any(lp.placement == "blob" for lp in plan.layers.values()) else None),
        "vectors": vectors,
        "layers": layers,
        "totals": totals,
    }


def _dump_json(obj: Any) -> bytes:
    """Sorted keys, two-space indent, lists of scalars on one line: stable and readable."""

    def fmt(v: Any, depth: int) -> str:
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(v, dict):
            if not v:
                return "{}"
            items = [f"{inner}{json.dumps(k)}: {fmt(v[k], depth + 1)}" for k in sorted(v)]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list):
            if all(not isinstance(i, (dict, list)) for i in v):
                return "[" + ", ".join(json.dumps(i, allow_nan=False) for i in v) + "]"
            return "[\n" + ",\n".join(inner + fmt(i, depth + 1) for i in v) + "\n" + pad + "]"
        return json.dumps(v, allow_nan=False)

    return (fmt(_plain(obj), 0) + "\n").encode()


def format_summary(manifest: dict[str, Any]) -> str:
    """The per-layer table the CLI prints after a build."""
    head = ["layer", "op", "output", "format", "bits v/i", "nonzeros", "PE", "imbalance bal/rr", "weights",
            "est. cycles"]
    table = []
    for l in manifest["layers"]:
        if "pe" not in l:
            continue
        imb = l["imbalance"]
        table.append([l["name"], l["op"], "x".join(map(str, l["shape"])), l["format"],
                      f"{l['value_bits']}/{l['index_bits']}", f"{l['sizes']['nonzeros']:,}", str(l["pe"]),
                      f"{imb['balanced']:.3f}/{imb['round_robin']:.3f}",
                      l["placement"] + (f"@{l['blob_offset']}" if l["placement"] == "blob" else ""),
                      f"{l['cycles_estimate']:,}"])
    widths = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
    left = {0, 1, 2, 3, 8}
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + table]
    t = manifest["totals"]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"{manifest['model']}: top {manifest['top']}, part {manifest['part']}, "
                 f"clock {manifest['clock_ns']} ns, ~{t['cycles_estimate']:,} cycles/input ({t['latency_ms']:.3f} ms), "
                 f"{manifest['vectors']['count']} test vectors ({manifest['vectors']['source']})")
    return "\n".join(lines)


def describe_failure(failure: Any) -> str:
    """One line for a CsimResult.first_failure (a dict of layer/element/expected/got, or text)."""
    if failure is None:
        return "(none reported)"
    if isinstance(failure, dict):
        parts = [f"{k} {failure[k]}" for k in ("vector", "layer", "element", "index", "expected", "got")
                 if k in failure]
        parts += [f"{k} {v}" for k, v in failure.items() if k not in ("vector", "layer", "element", "index",
                                                                       "expected", "got")]
        return ", ".join(parts)
    return str(failure)


# -- templates ------------------------------------------------------------------------------------
def _templates():
    from ...resources import template_env

    return template_env("hls/project")


def _flow_context(manifest: dict[str, Any], files: dict[str, bytes], plan: BuildPlan) -> dict[str, Any]:
    syn = sorted(p for p in files if p.startswith("firmware/") and p.endswith(".cpp"))
    tb_sources = sorted(p for p in files if p.startswith("tb/") and p.endswith(".cpp"))
    tb_files = sorted(p for p in files if p.startswith("tb/data/"))
    blob = _blob_file(files)
    if blob is not None and blob not in tb_files:
        tb_files.append(blob)
    from ...sim import csim

    return {
        "model": manifest["model"], "version": manifest["admm_hls_version"], "top": plan.top,
        "part": plan.part, "clock_ns": _num(plan.clock_ns), "flow_target": FLOW_TARGET, "cflags": CFLAGS,
        # make csim compiles as admm_hls.sim.csim.run_csim does
        "cxxflags": " ".join(csim.CXXFLAGS), "defines": " ".join(csim.DEFINES), "build_dir": csim.BUILD_DIR,
        "syn_files": syn, "tb_sources": tb_sources, "tb_files": tb_files,
        # Tcl adds the data folder whole (add_files -tb takes folders); the cfg lists every file
        # (UG1399: "one statement per file")
        "tcl_tb_files": ["tb/data"] + [f for f in tb_files if not f.startswith("tb/data/")],
        # the test bench's main(n, data folder, outputs file): an absolute data folder in the
        # vendor flows, whatever folder they run it from
        "argv_option": ' -argv "-1 ${root}/tb/data"',
    }


def _num(x: float) -> str:
    """5.0 -> '5', 3.3 -> '3.3': the clock as a tool reads it."""
    return f"{float(x):g}"


# -- inputs ---------------------------------------------------------------------------------------
def input_integers(graph: LayerGraph, x: np.ndarray | None, n: int = DEFAULT_VECTORS) -> np.ndarray:
    """Test inputs as the graph's input integers, (N, *input shape) int64.

    ``x``: float inputs (quantized with the input scale, as ``reference.run`` does), integer
    inputs (checked against the activation range), or None for ``n`` deterministic pseudo-random
    integers (seed ``VECTOR_SEED``)."""
    from ...arith import qrange
    from ...reference import quantize_images

    inp = graph.input_node()
    shape = tuple(inp.shape)
    lo, hi = qrange(inp.quant["bits"])
    if x is None:
        if int(n) < 1:
            raise UserError(f"--vectors must be >= 1, got {n}")
        rng = np.random.default_rng(VECTOR_SEED)
        return rng.integers(lo, hi + 1, size=(int(n), *shape), dtype=np.int64)
    x = np.asarray(x)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape or x.shape[0] < 1:
        raise UserError(f"test inputs must have shape (N, {', '.join(map(str, shape))}), got {x.shape}")
    if x.dtype.kind == "f":
        return quantize_images(graph, x).astype(np.int64)
    if x.dtype.kind not in "iu":
        raise UserError(f"test inputs must be float or integer arrays, got dtype {x.dtype}")
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise UserError(f"integer test inputs must lie in {lo}..{hi} (the {inp.quant['bits']}-bit input range), "
                        f"got {int(x.min())}..{int(x.max())}")
    return x.astype(np.int64)


# -- writing --------------------------------------------------------------------------------------
def _blob_file(files: dict[str, bytes]) -> str | None:
    """The weight blob among the files (the renderer may put it where its test bench reads it)."""
    found = sorted(p for p in files if p.rsplit("/", 1)[-1] == "weights.bin")
    return found[0] if found else None


def _check_rel(path: str) -> str:
    p = Path(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"renderer produced a file outside the project: {path!r}")
    return p.as_posix()


def _rtl(graph: LayerGraph, plan: BuildPlan, pe: int, pe_layers: dict[str, int] | None
         ) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The Verilog of the same packed weights under rtl/, with the same PE budget per layer
    (spent as row groups x position bands: ``rtl.plan``), when the RTL backend covers the model;
    otherwise no files and the reason in the manifest. Blob layers are on-chip ROMs in the RTL
    (it has no m_axi master)."""
    from ..rtl.plan import rtl_plan
    from ..rtl.render import layer_cycles, render_rtl, rtl_names

    try:
        rplan, bands = rtl_plan(graph, pe=pe, pe_layers=pe_layers, top=plan.top, part=plan.part,
                                clock_ns=plan.clock_ns)
        files = render_rtl(graph, rplan, bands)
    except ValueError as exc:
        return {}, {"written": False, "reason": str(exc)}
    names = rtl_names(graph)
    layers = {}
    for node in _weighted(graph):
        groups, node_bands = rplan.layers[node.name].pe, bands[node.name]
        macs = _positions(node) * int(row_nonzeros(node.packed).sum())
        # ideal: one nonzero MAC per PE per cycle
        layers[names[node.name]] = {"node": node.name, "row_groups": groups, "bands": [list(b) for b in node_bands],
                                    "pes": groups * len(node_bands), "nonzero_macs": macs,
                                    "ideal_cycles": -(-macs // (groups * len(node_bands)))}
    return files, {"written": True, "simulators": ["icarus", "verilator"], "weights": "rom",
                   "layers": layers, "cycles": layer_cycles(graph, rplan, bands)}


def _add(files: dict[str, bytes], new: dict[str, bytes], what: str) -> None:
    for path, data in new.items():
        path = _check_rel(path)
        if path in files:
            raise ValueError(f"{what} writes {path} twice")
        files[path] = bytes(data)


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an output path that is a file, or a non-empty folder unless ``force``."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UserError(f"{out} exists and is not a folder: choose another --out")
        if any(out.iterdir()) and not force:
            raise UserError(f"{out} exists and is not empty: pass --force to replace it")


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for path in sorted(files):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[path])


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an existing folder is moved aside first and
    deleted only once the new one is in place (restored if the rename fails)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- the project ----------------------------------------------------------------------------------
@dataclass
class HLSProject:
    """A built project folder. ``graph`` is set when it was built in this process (needed only
    to run new inputs through ``csim``)."""

    path: Path
    manifest: dict[str, Any]
    graph: LayerGraph | None = field(default=None, repr=False)

    def csim(self, x: np.ndarray | None = None, n: int | None = None):
        """C-simulate with g++ (``admm_hls.sim.csim.run_csim``) and return its ``CsimResult``:
        ``passed``, ``n``, ``mismatches``, ``first_failure``, ``outputs`` (the integer outputs of
        the C++), ``seconds``. A mismatch is reported in the result, not raised.

        ``x`` (float or integer inputs, (N, *input shape)) runs new inputs: the project is copied
        to a scratch folder whose tb/data is regenerated from the reference; the project itself is
        left untouched. ``n``: simulate only the first n vectors."""
        from ...sim import csim

        if x is None:
            return csim.run_csim(self.path, n=n)
        if self.graph is None:
            raise UserError("csim with new inputs needs the model: build the project in this process "
                            "(admm_hls.backends.hls.project.build) rather than opening it")
        from . import render

        x_int = input_integers(self.graph, x)
        with tempfile.TemporaryDirectory(prefix="admm-hls-csim-") as scratch:
            copy = Path(scratch) / self.path.name
            shutil.copytree(self.path, copy)
            data: dict[str, bytes] = {}  # overwrites the vectors; the weight blob stays
            _add(data, render.test_vectors(self.graph, x_int), "render.test_vectors")
            _write_tree(copy, data)
            return csim.run_csim(copy, n=n)


def read_json(path: Path, fix: str) -> Any:
    """A JSON file of a project; unreadable or invalid: a UserError that ends with ``fix``."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}): {fix}") from None


def open_project(path: str | os.PathLike) -> HLSProject:
    """An existing project folder (for csim); a clear error when it is not one."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{path} is not an admm-hls HLS project (no {MANIFEST}): make one with 'admm-hls build'")
    data = read_json(manifest, "rebuild the project with 'admm-hls build'")
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{manifest} is not an admm-hls HLS manifest: rebuild the project with 'admm-hls build'")
    return HLSProject(path=path, manifest=data)


def build(
    graph: LayerGraph,
    out_dir: str | os.PathLike,
    *,
    pe: int = 1,
    pe_layers: dict[str, int] | None = None,
    onchip_kb: float = 512.0,
    part: str = DEFAULT_PART,
    clock_ns: float = 5.0,
    top: str = "admm_top",
    force: bool = False,
    vectors: np.ndarray | None = None,
    n_vectors: int = DEFAULT_VECTORS,
    vectors_source: str | None = None,
    progress: bool = True,
) -> HLSProject:
    """Write the Vitis HLS project of a packed LayerGraph into ``out_dir``.

    ``pe``: processing elements per conv/linear layer (``pe_layers`` overrides it per layer, by
    node name or module path; never more PEs than rows). A layer whose packed weights (all PEs)
    exceed ``onchip_kb`` KiB goes to the m_axi weight blob (64-byte aligned offsets; the file is
    where the renderer's test bench reads it, ``tb/data/weights.bin``, else ``firmware/weights.bin``),
    else it is a ROM in the sources. ``vectors``: test inputs (float or int, (N, *input shape)); default
    ``n_vectors`` pseudo-random integers (seed fixed). ``vectors_source`` labels them in the
    manifest. An existing non-empty ``out_dir`` is refused unless ``force`` (then it is replaced
    atomically, only once the new project is complete).
    """
    from . import render

    out = Path(out_dir)
    if not _IDENT.match(top or ""):
        raise UserError(f"--top {top!r} is not a C identifier: use letters, digits and _ (not first a digit)")
    if not (isinstance(clock_ns, (int, float)) and math.isfinite(clock_ns) and clock_ns > 0):
        raise UserError(f"--clock must be a positive period in ns, got {clock_ns!r}")
    if not (isinstance(onchip_kb, (int, float)) and onchip_kb >= 0):
        raise UserError(f"--onchip-kb must be >= 0, got {onchip_kb!r}")
    if not part or any(c.isspace() for c in part):
        raise UserError(f"--part {part!r} is not a part name (e.g. {DEFAULT_PART})")
    if not _weighted(graph) or any(n.packed is None for n in _weighted(graph)):
        raise UserError("the model has no packed conv or linear layer: lower it with admm_hls.lower first")
    check_out_dir(out, force)
    x_int = input_integers(graph, vectors, n_vectors)
    source = vectors_source or ("given inputs" if vectors is not None else f"pseudo-random int, seed {VECTOR_SEED}")

    bar = _bar(len(_weighted(graph)) + 4, progress)  # layers planned, then four build steps

    def step(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update(1)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the project is an ordinary folder
        plan, words = _make_plan(graph, pe=pe, pe_layers=pe_layers, onchip_kb=onchip_kb, part=part,
                                 clock_ns=clock_ns, top=top, bar=bar)
        bar.set_postfix_str("render sources")
        files: dict[str, bytes] = {}
        _add(files, render.render_project_sources(graph, plan), "render.render_project_sources")
        if any(lp.placement == "blob" for lp in plan.layers.values()) and _blob_file(files) is None:
            _add(files, {BLOB_FILE: render.weight_blob(graph, plan)}, "render.weight_blob")
        rtl_files, rtl_status = _rtl(graph, plan, pe, pe_layers)
        _add(files, rtl_files, "rtl.render_rtl")
        step("reference test vectors")
        _add(files, render.test_vectors(graph, x_int), "render.test_vectors")
        step("manifest")
        manifest = _manifest(graph, plan, words, {"count": int(len(x_int)), "source": source}, _blob_file(files))
        manifest["rtl"] = rtl_status
        step("write")
        env = _templates()
        ctx = _flow_context(manifest, files, plan)
        for name in ("run_hls.tcl", "hls_config.cfg", "Makefile"):
            _add(files, {name: env.get_template(f"{name}.j2").render(**ctx).encode()}, name)
        readme_ctx = {**ctx, **_plain(manifest), "row_overhead": ROW_OVERHEAD,
                      "blob_layers": [n for n, lp in plan.layers.items() if lp.placement == "blob"]}
        _add(files, {"README.md": env.get_template("README.md.j2").render(**readme_ctx).encode()}, "README.md")
        manifest["files"] = {p: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                             for p, d in sorted(files.items())}
        _add(files, {MANIFEST: _dump_json(manifest)}, MANIFEST)
        _write_tree(tmp, files)
        check_out_dir(out, force)  # still true after the (possibly long) render
        _swap_into_place(tmp, out)
        step("done")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return HLSProject(path=out, manifest=json.loads(files[MANIFEST]), graph=graph)
