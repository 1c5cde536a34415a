"""Projection-only compression: the ADMM Z-step projections applied once to a model's weights,
with no training. It gives large models (AlexNet-size) a checkpoint with exact per-layer
sparsity and codebooks in seconds, e.g. to exercise the compiler at scale."""

from __future__ import annotations

from typing import Any

import torch

from ..calibration import measure_ranges
from ..zoo import build_model, input_shape
from .checkpoint import make_checkpoint
from .projection import project_levels, topk_mask
from .targets import layer_geometry
from .training import prunable_weights


@torch.no_grad()
def project_checkpoint(
    arch: str,
    keep: dict[str, float],
    bits: dict[str, int],
    calibration_inputs: torch.Tensor,
    *,
    arch_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Prune each layer to ``keep`` (fraction kept) and quantize its nonzeros to ``bits``."""
    torch.manual_seed(seed)
    arch_kwargs = arch_kwargs or {}
    model = build_model(arch, **arch_kwargs).eval()
    weights = prunable_weights(model)
    geometry = layer_geometry(model, input_shape(arch))
    masks, levels, scales = {}, {}, {}
    for name, w in weights.items():
        masks[name] = topk_mask(w, round(keep[name] * w.numel()))
        projected, levels[name], scales[name] = project_levels(w * masks[name], masks[name], bits[name])
        w.copy_(projected)
    ranges = measure_ranges(model, list(calibration_inputs.split(32)))
    return make_checkpoint(
        arch, arch_kwargs, input_shape(arch), model, geometry, masks=masks, keep=keep, bits=bits, levels=levels,
        scales=scales, accuracy={}, recipe={"projection_only": True, "keep": keep, "bits": bits}, history=[],
        calibration={"ranges": ranges, "batches": 1, "batch_size": len(calibration_inputs)}, dataset=None, seed=seed,
    )
