"""Projection-only compression: the ADMM Z-step projections applied once to a model's weights,
with no training. It gives large models (AlexNet-size) a checkpoint with exact per-layer
sparsity and codebooks in seconds, e.g. to exercise the compiler at scale."""

from __future__ import annotations

from typing import Any

import torch

from ..calibration import measure_ranges
from ..errors import UserError
from ..model_source import ModelSource, from_spec
from .checkpoint import make_checkpoint
from .projection import project_levels, topk_mask
from .targets import layer_geometry
from .training import prunable_weights


@torch.no_grad()
def project_checkpoint(
    arch: str | ModelSource,
    keep: dict[str, float],
    bits: dict[str, int],
    calibration_inputs: torch.Tensor,
    *,
    arch_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Prune each layer to ``keep`` (fraction kept) and quantize its nonzeros to ``bits``.
    ``arch``: a zoo name or import spec (``model_source.from_spec``, with ``arch_kwargs``), or a
    ``ModelSource``; ``input_shape``: needed when the architecture does not declare one."""
    torch.manual_seed(seed)
    architecture = arch if isinstance(arch, ModelSource) else from_spec(arch, arch_kwargs)
    shape = input_shape or architecture.default_input_shape()
    if shape is None:
        raise UserError(f"{architecture.source} declares no INPUT_SHAPE: pass the input shape, e.g. (3, 32, 32)")
    model = architecture.build().eval()
    weights = prunable_weights(model)
    geometry = layer_geometry(model, shape)
    masks, levels, scales = {}, {}, {}
    for name, w in weights.items():
        masks[name] = topk_mask(w, round(keep[name] * w.numel()))
        projected, levels[name], scales[name] = project_levels(w * masks[name], masks[name], bits[name])
        w.copy_(projected)
    ranges = measure_ranges(model, list(calibration_inputs.split(32)))
    return make_checkpoint(
        architecture, architecture.kwargs, shape, model, geometry, masks=masks, keep=keep, bits=bits, levels=levels,
        scales=scales, accuracy={}, recipe={"projection_only": True, "keep": keep, "bits": bits}, history=[],
        calibration={"ranges": ranges, "batches": 1, "batch_size": len(calibration_inputs)}, dataset=None, seed=seed,
    )
