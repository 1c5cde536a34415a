"""Build a project: packed LayerGraph -> hardware plan -> a self-contained folder with the Vitis
HLS project and the RTL of that one plan, test vectors and ``manifest.json``.

``build`` makes the plan (``hw.plan.make_plan``), lets each backend render it
(``backends.hls.render``, ``backends.rtl.render``), checks the HLS code's structure against the
canonical forms (``backends.hls.structure``), adds the reference's test vectors, the tool flows
(``run_hls.tcl``, ``hls_config.cfg``, ``Makefile``), a ``README.md`` and ``manifest.json``.

Writing is atomic and deterministic: everything goes to a temporary sibling folder that is
renamed into place at the end (a failure or Ctrl-C leaves no output folder and no temporary
folder; a kill leaves at most a hidden sibling, never a partial project under the final name;
builds racing into one folder with force leave one of their projects, whole), and the same
graph and options give byte-identical files.

    from admm_hls.build.project import build
    project = build(graph, "hls/", pe=4)
    result = project.csim()            # g++ C simulation: a CsimResult
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..hw.plan import BLOB_ALIGN, DEFAULT_PART, HardwarePlan, make_plan
from ..jsonio import dump_json, plain, read_json, replace_file
from .vectors import DEFAULT_VECTORS, VECTOR_SEED, input_integers, test_vectors

if TYPE_CHECKING:
    from ..ir.graph import LayerGraph

__all__ = ["Project", "build", "open_project", "format_summary", "check_out_dir", "describe_failure",
           "record_resources", "DEFAULT_PART", "DEFAULT_VECTORS", "VECTOR_SEED", "BLOB_ALIGN", "MANIFEST"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "admm-hls-project"
RESOURCES_TXT = "resources.txt"


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    # disable=None: shown on a terminal only
    return tqdm(total=total, desc="admm-hls build", unit="step", disable=None if progress else True, leave=False)


# -- the manifest ---------------------------------------------------------------------------------
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


def _layer_entry(graph: LayerGraph, node, plan: HardwarePlan, report_row: dict | None) -> dict[str, Any]:
    """A layer's graph facts (shape, scales, format, sizes) and its cycles in the plan."""
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
    layer = plan.layers.get(node.name)
    if layer is not None:
        entry["lanes"] = layer.lanes
        entry["cycles_estimate"] = layer.cycles("hls")
    if node.packed is not None:
        packed = node.packed
        entry.update({
            "weight_shape": list(node.params["weight"].shape),
            "format": packed.format,
            "value_bits": int(packed.codebook.value_bits),
            "index_bits": int(getattr(packed.layer, "index_bits", 0)),
            "word_bits": int(packed.layer.word_bits),
            "codebook": [int(v) for v in np.asarray(packed.codebook.levels)],
            "sizes": report_row,
            "placement": layer.placement,
            "ecc_check_bits": layer.ecc_check_bits,  # the entry code's bits in the lanes' streams (0: none)
        })
    return entry


def _manifest(graph: LayerGraph, plan: HardwarePlan, vectors: dict[str, Any], blob_file: str | None,
              rtl: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__
    from ..backends.hls.flow import FLOW_TARGET
    from ..hw.blob import blob_port
    from ..report import graph_report

    report = graph_report(graph)
    rows = dict(zip((n.name for n in graph.nodes_of("conv", "linear")), report["layers"]))
    layers = [_layer_entry(graph, node, plan, rows.get(node.name)) for node in graph.topo()]
    totals = dict(report["totals"])
    totals["cycles_estimate"] = plan.latency("hls")
    totals["interval_estimate"] = plan.interval()
    totals["latency_ms"] = totals["cycles_estimate"] * plan.clock_ns * 1e-6
    totals["images_per_second"] = 1e9 / (plan.interval() * plan.clock_ns) if plan.interval() else 0.0
    totals["ecc_check_bits"] = sum(l.ecc_check_bits for l in plan.weighted())
    inp, out = graph.input_node(), graph.output_node()
    blob_layers = [{"name": l.name, "port": blob_port(l.ident), "offset": l.blob_offset, "bytes": l.blob_bytes,
                    "beat_bits": l.beat_bits, "beats": l.beats} for l in plan.blob_layers()]
    return {
        "format": MANIFEST_FORMAT,
        "model": graph.name,
        "admm_hls_version": __version__,
        "top": plan.top,
        "part": plan.part,
        "clock_ns": plan.clock_ns,
        "flow_target": FLOW_TARGET,
        "onchip_kb": plan.onchip_kb,
        "pe": plan.pe,
        "ecc": any(l.stream.ecc_bits for l in plan.weighted()),
        "interface": {
            "control": "ap_ctrl_chain",
            "ports": ["ap_clk", "ap_rst_n", "ap_start", "ap_done", "ap_idle", "ap_ready", "ap_continue"]
                     + [f"{s}_{sig}" for s in ("in_stream", "out_stream")
                        for sig in ("TDATA", "TVALID", "TREADY", "TLAST", "TKEEP", "TSTRB")],
            "stream_bits": plan.stream_bits,
            "m_axi": [b["port"] for b in blob_layers],
            "s_axilite": ["control"] if blob_layers else [],
        },
        "input": {"name": inp.name, "shape": list(inp.shape), "scale": inp.quant["scale"], "bits": inp.quant["bits"]},
        "output": {"name": out.name, "shape": list(out.shape), "scale": out.quant["scale"], "bits": out.quant["bits"]},
        "weight_blob": ({"file": blob_file, "bytes": plan.blob_size(), "align": BLOB_ALIGN, "layers": blob_layers}
                        if blob_layers else None),
        "vectors": vectors,
        "layers": layers,
        "hardware": plan.to_manifest(),
        "totals": totals,
        "rtl": rtl,
    }


def format_summary(manifest: dict[str, Any]) -> str:
    """The per-layer table the CLI prints after a build."""
    head = ["layer", "op", "output", "format", "bits v/i", "nonzeros", "lanes", "lockstep", "weights", "cycles"]
    hw = {l["name"]: l for l in manifest["hardware"]["layers"]}
    table = []
    for l in manifest["layers"]:
        h = hw.get(l["name"])
        if h is None or h["kind"] in ("input", "output"):
            continue
        if "format" in l:
            lanes = f"{h['groups']}x{len(h['bands'])}"
            table.append([l["name"], l["op"], "x".join(map(str, l["shape"])), l["format"],
                          f"{l['value_bits']}/{l['index_bits']}", f"{l['sizes']['nonzeros']:,}", lanes,
                          f"{h['lockstep_efficiency']:.1%}",
                          h["placement"] + (f"@{h['blob_offset']}" if h["placement"] == "blob" else ""),
                          f"{h['cycles']['hls']:,}"])
        else:
            table.append([l["name"], l["op"], "x".join(map(str, l["shape"])), "", "", "", str(h["lanes"]), "", "",
                          f"{h['cycles']['hls']:,}"])
    widths = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
    left = {0, 1, 2, 3, 8}
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [head] + table]
    t = manifest["totals"]
    mem = manifest["hardware"]["memory"]
    lines.insert(1, "-" * len(lines[0]))
    have = (f" of {mem['available']['bram36']} / {mem['available']['uram']}" if mem["available"]
            else " (part not in the table: not checked)")
    lines.append(f"{manifest['model']}: top {manifest['top']}, part {manifest['part']}, clock {manifest['clock_ns']} ns, "
                 f"--pe {manifest['pe']}: ~{t['cycles_estimate']:,} cycles per image ({t['latency_ms']:.3f} ms), "
                 f"a new image every ~{t['interval_estimate']:,} cycles")
    lines.append(f"on-chip memory: {mem['bram36']:g} BRAM36 / {mem['uram']} URAM{have}; "
                 f"{manifest['vectors']['count']} test vectors ({manifest['vectors']['source']})")
    return "\n".join(lines)


def describe_failure(failure: Any) -> str:
    """One line for a CsimResult.first_failure (a dict of layer/element/expected/got, or text)."""
    if failure is None:
        return "(none reported)"
    if isinstance(failure, dict):
        keys = ("vector", "layer", "element", "index", "expected", "got")
        parts = [f"{k} {failure[k]}" for k in keys if k in failure]
        parts += [f"{k} {v}" for k, v in failure.items() if k not in keys]
        return ", ".join(parts)
    return str(failure)


# -- writing --------------------------------------------------------------------------------------
def _check_rel(path: str) -> str:
    p = Path(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"renderer produced a file outside the project: {path!r}")
    return p.as_posix()


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


SWAP_TRIES = 100  # renames retried while other builds race into the same folder


def _swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder to ``out`` in one step, so ``out`` is never a partial project:
    a build killed at any point leaves at most a hidden ``.NAME.tmp-*`` or ``.NAME.old-*``
    sibling. The rename replaces an absent or empty ``out`` and fails on a non-empty one; with
    ``force`` that one is moved aside and the rename retried (a build racing into the same
    folder may have put its own project there meanwhile: the last rename wins, whole). What
    was moved aside is deleted once the new project is in place, or put back on failure."""
    aside: list[Path] = []
    try:
        for _ in range(SWAP_TRIES):
            try:
                os.rename(tmp, out)
                break
            except OSError as exc:
                if exc.errno == errno.ENOTDIR:
                    raise UserError(f"{out} exists and is not a folder: choose another --out") from None
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if not force:
                    raise UserError(f"{out} exists and is not empty: pass --force to replace it") from None
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()  # a fresh unused name for the rename
            try:
                os.rename(out, old)
            except FileNotFoundError:
                continue  # another build moved it aside first
            aside.append(old)
        else:
            raise UserError(f"{out} kept being replaced by other builds while this one wrote: "
                            "build into another --out")
    except BaseException:
        if aside and not out.exists():  # the folder that was there before this build
            try:
                os.rename(aside.pop(0), out)
            except OSError:
                pass
        raise
    finally:
        for old in aside:
            shutil.rmtree(old, ignore_errors=True)


def _rtl(graph: LayerGraph, plan: HardwarePlan) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The Verilog of the same plan, when the RTL backend covers the model; otherwise no files and
    the reason in the manifest. Layers the plan puts off-chip are ROMs in the RTL."""
    from ..backends.rtl.render import render_rtl

    try:
        files = render_rtl(graph, plan)
    except ValueError as exc:
        return {}, {"written": False, "reason": str(exc)}
    rtl_cycles = plan.cycles("rtl")
    layers = {}
    for layer in plan.weighted():
        s = layer.schedule
        layers[layer.ident] = {"node": layer.name, "row_groups": s.groups, "bands": [list(b) for b in s.bands],
                               "pes": s.lanes, "nonzero_macs": layer.nonzero_macs,
                               "ideal_cycles": -(-layer.nonzero_macs // s.lanes)}  # one nonzero MAC per PE per cycle
    cycles = {plan.names[n]: c for n, c in rtl_cycles.items() if plan.layers[n].kind not in ("input", "output")}
    return files, {"written": True, "simulators": ["icarus", "verilator"],
                   "weights": "axi" if plan.blob_layers() else "rom", "layers": layers,
                   "cycles": cycles, "latency": plan.latency("rtl"), "interval": plan.interval("rtl"),
                   "overlap": True}


def _readme(manifest: dict[str, Any], ctx: dict[str, Any]) -> bytes:
    from ..resources import template_env

    hw = {l["name"]: l for l in manifest["hardware"]["layers"]}
    rows = []
    for l in manifest["layers"]:
        h = hw.get(l["name"])
        if h is None:
            continue
        rows.append({**l, "hw": h})
    chans = manifest["hardware"]["channels"]
    return template_env("hls/project").get_template("README.md.j2").render(
        {**ctx, **plain(manifest), "rows": rows, "channels": chans}).encode()


# -- the project ----------------------------------------------------------------------------------
@dataclass
class Project:
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
        from ..sim import csim

        if x is None:
            return csim.run_csim(self.path, n=n)
        if self.graph is None:
            raise UserError("csim with new inputs needs the model: build the project in this process "
                            "(admm_hls.build.project.build) rather than opening it")
        x_int = input_integers(self.graph, x)
        with tempfile.TemporaryDirectory(prefix="admm-hls-csim-") as scratch:
            copy = Path(scratch) / self.path.name
            shutil.copytree(self.path, copy)
            data: dict[str, bytes] = {}  # overwrites the vectors; the weight blob stays
            _add(data, test_vectors(self.graph, x_int), "test_vectors")
            _write_tree(copy, data)
            return csim.run_csim(copy, n=n)


def open_project(path: str | os.PathLike) -> Project:
    """An existing project folder (for csim, rtlsim, synth); a clear error when it is not one."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{path} is not an admm-hls project (no {MANIFEST}): make one with 'admm-hls build'")
    data = read_json(manifest, "rebuild the project with 'admm-hls build'")
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{manifest} is not an admm-hls project manifest (an older version?): rebuild the project "
                        "with 'admm-hls build --force'")
    return Project(path=path, manifest=data)


def record_resources(project_dir: str | os.PathLike, result: dict[str, Any]) -> list[Path]:
    """Write a synthesis result (``backends.rtl.synth.synth_engines``) into the project:
    ``manifest.json`` gets it (less the seconds) under ``rtl.resources``, ``rtl/resources.txt``
    the table. Each file is replaced atomically."""
    from ..backends.rtl.synth import format_table, without_timing

    project = open_project(project_dir)
    manifest = project.manifest
    rtl_entry = manifest.get("rtl")
    if not isinstance(rtl_entry, dict):
        rtl_entry = manifest["rtl"] = {}
    rtl_entry["resources"] = without_timing(result)
    txt = project.path / "rtl" / RESOURCES_TXT
    replace_file(txt, format_table(result).encode())
    replace_file(project.path / MANIFEST, dump_json(manifest))
    return [project.path / MANIFEST, txt]


def build(
    graph: LayerGraph,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    vectors: np.ndarray | None = None,
    n_vectors: int = DEFAULT_VECTORS,
    vectors_source: str | None = None,
    progress: bool = True,
    memories: dict[str, Any] | None = None,
    **plan_options: Any,
) -> Project:
    """Write the project (Vitis HLS C++ and RTL of one hardware plan) of a packed LayerGraph into
    ``out_dir``.

    ``plan_options``: those of ``hw.plan.make_plan``: ``pe`` (the lanes every layer may use: a
    conv / linear layer spends them as row groups x position bands, a pool or element-wise layer
    as channel ranges), ``pe_layers`` (per layer, by node name or module path), ``onchip_kb`` (a
    layer whose packed words exceed it reads them off-chip through its own m_axi port; the blob
    is ``tb/data/weights.bin``), ``part``, ``clock_ns``, ``top``, ``check_memory`` (False: build
    a design whose on-chip memory exceeds the part), ``offchip``, ``ecc`` (a single-error-correcting
    code on every weight-stream entry, corrected by the lanes). ``vectors``: test inputs
    (float or int, (N, *input shape)); default ``n_vectors`` pseudo-random integers (seed fixed).
    ``vectors_source`` labels them in the manifest. An existing non-empty ``out_dir`` is refused
    unless ``force`` (then it is replaced atomically, only once the new project is complete).
    ``memories``: weight memories to render instead of the plan's own (``faults.memories``: bit
    flips in them), with test vectors from the fault model's reference of what the hardware then
    computes: both backends must still match it bit for bit.
    """
    from ..backends.hls import flow, render, structure

    out = Path(out_dir)
    weighted = graph.nodes_of("conv", "linear")
    if not weighted or any(n.packed is None for n in weighted):
        raise UserError("the model has no packed conv or linear layer: lower it with admm_hls.lower first")
    check_out_dir(out, force)
    x_int = input_integers(graph, vectors, n_vectors)
    source = vectors_source or ("given inputs" if vectors is not None else f"pseudo-random int, seed {VECTOR_SEED}")

    bar = _bar(len(weighted) + 5, progress)  # weighted layers planned, then five build steps

    def step(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update(1)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the project is an ordinary folder
        plan = make_plan(graph, bar=bar, **plan_options)
        evaluate = None
        if memories is not None:
            from ..faults import faulted_evaluator, faulted_plan

            plan = faulted_plan(plan, memories)
            evaluate = faulted_evaluator(memories)
        step("render HLS")
        files: dict[str, bytes] = {}
        _add(files, render.render_project_sources(graph, plan), "hls.render")
        structure.assert_structure(files, plan.top)  # the canonical forms, as code (a bug if not)
        step("render RTL")
        rtl_files, rtl_status = _rtl(graph, plan)
        _add(files, rtl_files, "rtl.render")
        step("reference test vectors")
        _add(files, test_vectors(graph, x_int, evaluate), "test_vectors")
        step("manifest")
        from .. import __version__

        manifest = _manifest(graph, plan, {"count": int(len(x_int)), "source": source}, flow.blob_file(files),
                             rtl_status)
        ctx = flow.flow_context(graph.name, __version__, plan.top, plan.part, plan.clock_ns, files)
        _add(files, flow.flow_files(ctx), "flow")
        _add(files, {"README.md": _readme(manifest, ctx)}, "README.md")
        manifest["files"] = {p: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                             for p, d in sorted(files.items())}
        _add(files, {MANIFEST: dump_json(manifest)}, MANIFEST)
        step("write")
        _write_tree(tmp, files)
        check_out_dir(out, force)  # still true after the (possibly long) render
        _swap_into_place(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return Project(path=out, manifest=json.loads(files[MANIFEST]), graph=graph)
