"""`admm-hls inspect`: lower a checkpoint and report, per layer and in total, what it holds and
what the hardware will store (see ``admm_hls.report``)."""

from __future__ import annotations

from typing import Any

from .report import format_report, graph_report
from .sparse.ecc import ecc_cost


def inspect_graph(graph, ecc: bool = False) -> dict[str, Any]:
    """The report of a lowered checkpoint with its model name and accuracies (which lowering
    keeps in ``graph.meta``); ``ecc``: with what the single-error-correcting entry code
    (``build --ecc``) adds per layer."""
    report = graph_report(graph)
    report["arch"] = graph.meta["arch"]
    report["accuracy"] = graph.meta.get("accuracy") or {}
    report["balance_pe"] = int(graph.meta.get("balance_pe") or 0)
    if ecc:
        report["ecc"] = ecc_report(graph)
    return report


def ecc_report(graph) -> dict[str, Any]:
    """Per conv / linear layer and in total: the entry code's check bits and the packed stream
    with and without them (the format's stream; lockstep padding at several PEs comes on top)."""
    layers = {}
    for node in graph.nodes_of("conv", "linear"):
        layer = node.packed.layer
        relative = node.packed.format == "relative"
        entries = int(layer.row_ptr[-1]) if relative else layer.rows * layer.cols
        data = layer.value_bits + (layer.index_bits if relative else 0)
        layers[node.name] = {"entry_bits": data, **ecc_cost(entries, data, layer.word_bits)}
    total = {k: sum(v[k] for v in layers.values()) for k in ("check_bits", "stream_bits", "stream_bits_ecc")}
    return {"layers": layers, "total": total}


def format_inspection(report: dict[str, Any]) -> str:
    lines = [format_report(report)]
    source = (report.get("arch") or {}).get("source")
    if source:
        lines.append(f"model class: {source}, kwargs {report['arch'].get('kwargs') or {}}")
    lines.append("break-even pruning ratios (relative index cheaper above): "
                 + ", ".join(f"{r['layer']} {r['break_even']:.2f}x" for r in report["layers"]))
    if report["accuracy"]:
        lines.append("accuracy (float, from compression): "
                     + ", ".join(f"{k} {v:.2%}" for k, v in report["accuracy"].items()))
    if report.get("ecc"):
        e = report["ecc"]
        lines.append("entry code (--ecc): " + ", ".join(
            f"{n} {v['entry_bits']}+{v['check_bits_per_entry']} bits" for n, v in e["layers"].items())
            + f"; {e['total']['check_bits']:,} check bits, packed streams {e['total']['stream_bits']:,} -> "
            f"{e['total']['stream_bits_ecc']:,} bits")
    if report.get("balance_pe"):
        lines.append(f"pruned to balance {report['balance_pe']} PEs: every row of a lockstep slot holds the same "
                     f"count, so 'build' defaults to --pe {report['balance_pe']} and to streams without fillers")
    return "\n".join(lines)
