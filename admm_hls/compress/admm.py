"""The ADMM W/Z/U iteration of ADMM-NN, generic over the constraint set.

Problem: minimize f(W) subject to W_i in S_i. ADMM splits it into
  W-step: minimize f(W) + sum_i rho_i/2 * ||W_i - Z_i + U_i||_F^2   (SGD, Z and U held constant)
  Z-step: Z_i = Proj_{S_i}(W_i + U_i)                               (exact Euclidean projection)
  U-step: U_i = U_i + W_i - Z_i
with rho_i raised by a multiplicative schedule after each iteration. The penalty is the squared
Frobenius norm (not the norm itself, a common mistake in public ports).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Projector = Callable[[str, torch.Tensor], torch.Tensor]


class ADMM:
    """Holds Z, U and rho for a set of named weights and a projection onto their sets S_i."""

    def __init__(self, weights: dict[str, nn.Parameter], project: Projector, rho: dict[str, float]):
        self.weights = weights
        self.project = project
        self.rho = dict(rho)
        with torch.no_grad():
            # Z starts as the projection of W (a feasible point), not as W itself.
            self.Z = {n: project(n, w.detach().clone()) for n, w in weights.items()}
            self.U = {n: torch.zeros_like(w) for n, w in weights.items()}

    def penalty(self) -> torch.Tensor:
        """sum_i rho_i/2 * ||W_i - Z_i + U_i||_F^2; Z and U carry no gradient."""
        total = torch.zeros(())
        for n, w in self.weights.items():
            total = total + 0.5 * self.rho[n] * (w - self.Z[n] + self.U[n]).pow(2).sum()
        return total

    @torch.no_grad()
    def update(self) -> None:
        """Z-step then U-step."""
        for n, w in self.weights.items():
            self.Z[n] = self.project(n, w.detach() + self.U[n])
            self.U[n] += w.detach() - self.Z[n]

    def scale_rho(self, factor: float) -> None:
        self.rho = {n: r * factor for n, r in self.rho.items()}

    @torch.no_grad()
    def residuals(self) -> dict[str, float]:
        """Primal residual ||W_i - Z_i|| / ||W_i|| per layer: it must fall as ADMM converges."""
        out = {}
        for n, w in self.weights.items():
            norm = float(w.norm())
            out[n] = float((w - self.Z[n]).norm()) / norm if norm > 0 else 0.0
        return out
