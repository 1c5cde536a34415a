"""ADMM-NN-style figures of a lowered, packed LayerGraph, per layer and in total.

Every storage number is read from what the pack pass stores (entries, fillers, row pointers,
codebooks, biases, word padding) and compared with 32-bit float dense weights and biases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .ir.graph import LayerGraph
from .sparse import decode_dense

FLOAT_BITS = 32


def code_stats(packed) -> tuple[int, list[int]]:
    """(nonzeros, levels used) read from the packed stream; a relative-index layer is never
    expanded to a dense matrix (AlexNet's fc6 would take 300 MB as int64)."""
    if packed.format == "relative":
        codes = packed.layer.entry_codes
        codes = codes[codes != 0]  # fillers carry code 0
    else:
        codes = decode_dense(packed.layer).reshape(-1)
        codes = codes[codes != 0]
    used = np.unique(codes)
    return int(codes.size), sorted(int(v) for v in packed.codebook.levels[used.astype(np.intp) - 1])


def layer_rows(graph: LayerGraph) -> list[dict[str, Any]]:
    rows = []
    for node in graph.nodes_of("conv", "linear"):
        weights = int(np.prod(node.params["weight"].shape))
        nnz, used = code_stats(node.packed)
        positions = node.shape[1] * node.shape[2] if node.op == "conv" else 1
        rep = node.packed.report
        value_bits = node.packed.codebook.value_bits
        rows.append({
            "layer": node.module or node.name,
            "kind": node.op,
            "shape": list(node.params["weight"].shape),
            "weights": weights,
            "nonzeros": nnz,
            "pruning_ratio": weights / nnz if nnz else math.inf,
            "bits": int(node.quant["weight_bits"]),
            "levels_used": used,
            "acc_bits": int(node.quant["acc_bits"]),
            "macs_dense": weights * positions,
            "macs_sparse": nnz * positions,
            "format": node.packed.format,
            "index_bits": getattr(node.packed.layer, "index_bits", 0),
            "reason": node.packed.reason,
            "break_even": node.packed.break_even,
            # "values": the nonzero values alone (ADMM-NN's weight data); the rest is all stored.
            "bits_values": nnz * value_bits,
            **{f"bits_{k}": int(v) for k, v in rep.items()},
            "bits_dense_float": FLOAT_BITS * (weights + node.shape[0]),
        })
    return rows


def graph_report(graph: LayerGraph) -> dict[str, Any]:
    rows = layer_rows(graph)

    def total(key: str, kind: str | None = None) -> int:
        return sum(r[key] for r in rows if kind in (None, r["kind"]))

    weights = total("weights")
    totals: dict[str, Any] = {
        "weights": weights,
        "nonzeros": total("nonzeros"),
        "pruning_ratio": weights / max(1, total("nonzeros")),
        "average_bits": sum(r["bits"] * r["nonzeros"] for r in rows) / max(1, total("nonzeros")),
    }
    for kind, label in (("conv", "conv"), ("linear", "fc"), (None, "total")):
        dense, sparse = total("macs_dense", kind), total("macs_sparse", kind)
        totals[f"macs_dense_{label}"], totals[f"macs_sparse_{label}"] = dense, sparse
        totals[f"mac_reduction_{label}"] = dense / sparse if sparse else math.inf
    for key in ("values", "entries", "fillers", "row_ptr", "codebook", "bias", "padding", "weight_data", "overall"):
        totals[f"bits_{key}"] = total(f"bits_{key}")
    float_weights = FLOAT_BITS * weights
    totals["reduction_values"] = float_weights / max(1, totals["bits_values"])
    totals["reduction_weight_data"] = float_weights / max(1, totals["bits_weight_data"])
    totals["reduction_overall"] = total("bits_dense_float") / max(1, totals["bits_overall"])
    return {"model": graph.name, "layers": rows, "totals": totals}


def _kbit(bits: int) -> str:
    return f"{bits / 1000:.1f}k" if bits >= 1000 else str(bits)


def format_report(report: dict[str, Any]) -> str:
    head = ["layer", "shape", "nonzeros", "pruned", "bits", "levels", "MACs dense", "MACs sparse", "format",
            "entries", "fillers", "ptrs", "codebook", "bias", "overall", "reduction"]
    table = []
    for r in report["layers"]:
        lv = r["levels_used"]
        table.append([r["layer"], "x".join(map(str, r["shape"])), f"{r['nonzeros']:,}", f"{r['pruning_ratio']:.1f}x",
                      str(r["bits"]), f"{len(lv)}" if lv else "0", f"{r['macs_dense']:,}", f"{r['macs_sparse']:,}",
                      r["format"] + (f" r={r['index_bits']}" if r["format"] == "relative" else ""),
                      _kbit(r["bits_entries"]), _kbit(r["bits_fillers"]), _kbit(r["bits_row_ptr"]),
                      _kbit(r["bits_codebook"]), _kbit(r["bits_bias"]), _kbit(r["bits_overall"]),
                      f"{r['bits_dense_float'] / max(1, r['bits_overall']):.0f}x"])
    t = report["totals"]
    table.append(["total", "", f"{t['nonzeros']:,}", f"{t['pruning_ratio']:.1f}x", f"{t['average_bits']:.2f}", "",
                  f"{t['macs_dense_total']:,}", f"{t['macs_sparse_total']:,}", "", _kbit(t["bits_entries"]),
                  _kbit(t["bits_fillers"]), _kbit(t["bits_row_ptr"]), _kbit(t["bits_codebook"]), _kbit(t["bits_bias"]),
                  _kbit(t["bits_overall"]), f"{t['reduction_overall']:.0f}x"])
    widths = [max(len(row[i]) for row in [head] + table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in (0, 1, 8) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [head] + table]
    rule = "-" * len(lines[0])
    out = [f"model: {report['model']} (storage in bits)", lines[0], rule, *lines[1:-1], rule, lines[-1], ""]
    out.append(f"MAC reduction: conv {t['mac_reduction_conv']:.1f}x, fc {t['mac_reduction_fc']:.1f}x, "
               f"total {t['mac_reduction_total']:.1f}x")
    out.append(f"storage reduction vs 32-bit float: weight values {t['reduction_values']:.0f}x, "
               f"packed weight data {t['reduction_weight_data']:.0f}x, overall {t['reduction_overall']:.0f}x "
               "(index, fillers, pointers, codebooks, biases included)")
    out.append("formats:")
    out += [f"  {r['layer']}: {r['reason']}" for r in report["layers"]]
    return "\n".join(out)
