"""`admm-hls inspect`: lower a checkpoint and report, per layer and in total, what it holds and
what the hardware will store (see ``admm_hls.report``)."""

from __future__ import annotations

from typing import Any

from .report import format_report, graph_report


def inspect_graph(graph) -> dict[str, Any]:
    """The report of a lowered checkpoint with its model name and accuracies (which lowering
    keeps in ``graph.meta``)."""
    report = graph_report(graph)
    report["arch"] = graph.meta["arch"]
    report["accuracy"] = graph.meta.get("accuracy") or {}
    report["balance_pe"] = int(graph.meta.get("balance_pe") or 0)
    return report


def format_inspection(report: dict[str, Any]) -> str:
    lines = [format_report(report)]
    lines.append("break-even pruning ratios (relative index cheaper above): "
                 + ", ".join(f"{r['layer']} {r['break_even']:.2f}x" for r in report["layers"]))
    if report["accuracy"]:
        lines.append("accuracy (float, from compression): "
                     + ", ".join(f"{k} {v:.2%}" for k, v in report["accuracy"].items()))
    if report.get("balance_pe"):
        lines.append(f"pruned to balance {report['balance_pe']} PEs: every row of a lockstep slot holds the same "
                     f"count, so 'build' defaults to --pe {report['balance_pe']} and to streams without fillers")
    return "\n".join(lines)
