"""Fixed sparsity masks during retraining: a pruned weight must never come back.

Masking only the gradient is not enough (momentum and weight decay move masked weights), so the
mask is applied to the gradient before the step AND to the weight after it.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskSet:
    def __init__(self, weights: dict[str, nn.Parameter], masks: dict[str, torch.Tensor]):
        self.weights = weights
        self.masks = {n: m.to(torch.bool) for n, m in masks.items()}

    def mask_gradients(self) -> None:
        for n, w in self.weights.items():
            if w.grad is not None and n in self.masks:
                w.grad.mul_(self.masks[n])

    @torch.no_grad()
    def apply(self) -> None:
        for n, w in self.weights.items():
            if n in self.masks:
                w.mul_(self.masks[n])

    @torch.no_grad()
    def restore(self, values: dict[str, torch.Tensor]) -> None:
        """Write fixed values (frozen quantized weights) where the mask is False."""
        for n, w in self.weights.items():
            if n in self.masks:
                w.copy_(torch.where(self.masks[n], w, values[n]))
