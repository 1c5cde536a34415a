"""The off-chip weight blob: the layers the plan places off-chip, their words step after step,
read by both backends through one AXI4 master port per layer (``blob_port``)."""

from __future__ import annotations

import numpy as np

from .plan import HardwarePlan

__all__ = ["blob_port", "weight_blob"]


def blob_port(ident: str) -> str:
    """The top argument (and m_axi port) of an off-chip layer's words."""
    return f"w_{ident}"


def weight_blob(plan: HardwarePlan) -> bytes:
    """The off-chip weight blob: each blob layer at its offset, step after step, each step the
    word of every group (group 0 first, little-endian) padded with zeros to whole beats."""
    out = bytearray(plan.blob_size())
    for layer in plan.blob_layers():
        per_step = layer.beats_per_step * layer.beat_bits // 32
        steps = np.zeros((layer.steps, per_step), dtype="<u4")
        steps[:, : layer.words.shape[0]] = layer.words.T
        raw = steps.tobytes()
        out[layer.blob_offset:layer.blob_offset + len(raw)] = raw
    return bytes(out)
