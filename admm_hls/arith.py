"""The exact integer arithmetic contract, defined once.

Every backend (the numpy reference, the HLS C++, the Verilog) implements exactly these rules:

* Activations are signed ``bits``-wide integers with one real scale per tensor:
  real = scale * q, q in [-2^(bits-1), 2^(bits-1) - 1]. Scales come from calibration ranges:
  scale = max(|min|, |max|) / (2^(bits-1) - 1).
* A real multiplier M > 0 is carried as an int32 ``m0`` in [2^30, 2^31) and a ``shift`` with
  M ~= m0 * 2^-shift.
* Requantization: ``out = saturate((acc * m0 + 2^(shift-1)) >> shift)``, computed in signed
  64-bit arithmetic with an arithmetic right shift: one rounding rule, round half up (towards
  +inf), and saturation to the activation range. ReLU is a clamp at zero after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MULTIPLIER_BITS = 31  # m0 is a positive int32: [2^30, 2^31)
MAX_SHIFT = 62


class ScaleError(ValueError):
    """Scales whose ratio no multiplier represents: the checkpoint's ranges or weight scales are
    out of proportion (lowering turns it into a UserError naming the layer)."""


@dataclass(frozen=True)
class Multiplier:
    m0: int
    shift: int

    @property
    def value(self) -> float:
        return self.m0 / 2.0**self.shift


def quantize_multiplier(real: float) -> Multiplier:
    """``real`` as m0 * 2^-shift with m0 in [2^30, 2^31) (gemmlowp's QuantizeMultiplier)."""
    if not (real > 0 and math.isfinite(real)):
        raise ScaleError(f"requantization multiplier must be positive and finite, got {real}")
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    m0 = round(mantissa * 2**MULTIPLIER_BITS)
    shift = MULTIPLIER_BITS - exponent
    if m0 == 2**MULTIPLIER_BITS:
        m0 //= 2
        shift -= 1
    if shift < 1:
        raise ScaleError(f"requantization multiplier {real:g} is too large (>= 2^30)")
    if shift > MAX_SHIFT:
        # Too small to represent at full precision: drop mantissa bits, keep the rule.
        m0 >>= shift - MAX_SHIFT
        shift = MAX_SHIFT
        if m0 == 0:
            raise ScaleError(f"requantization multiplier {real:g} underflows")
    return Multiplier(int(m0), int(shift))


def check_multiplier(m0: int, shift: int, what: str) -> None:
    """A multiplier a backend implements: m0 below 2^31 (it multiplies an int32 accumulator in
    64 bits) and a shift in 1..MAX_SHIFT; anything else is a compiler bug, a ValueError."""
    if not (0 <= int(m0) < 2**MULTIPLIER_BITS and 1 <= int(shift) <= MAX_SHIFT):
        raise ValueError(f"{what}: multiplier m0={m0} shift={shift} is outside the contract "
                         f"(m0 < 2^{MULTIPLIER_BITS}, shift 1..{MAX_SHIFT})")


def qrange(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def activation_scale(lo: float, hi: float, bits: int) -> float:
    peak = max(abs(lo), abs(hi))
    return (peak if peak > 0 else 1.0) / (2 ** (bits - 1) - 1)


def requantize(acc: np.ndarray, mult: Multiplier, bits: int, relu: bool = False) -> np.ndarray:
    """The one rounding + saturation rule (int64 in, int64 out)."""
    acc = np.asarray(acc, dtype=np.int64)
    out = (acc * np.int64(mult.m0) + np.int64(1 << (mult.shift - 1))) >> np.int64(mult.shift)
    lo, hi = qrange(bits)
    if relu:
        lo = 0
    return np.clip(out, lo, hi)


def quantize_input(x: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """Float input to integers: floor(x / scale + 0.5) (round half up, as requantize), saturated."""
    lo, hi = qrange(bits)
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) / scale + 0.5), lo, hi).astype(np.int64)


def bits_for(bound: int) -> int:
    """Signed width that holds every value in [-bound, bound]."""
    return int(bound).bit_length() + 1


def ubits(top: int) -> int:
    """Unsigned width that holds every value in [0, top] (at least one bit)."""
    return max(1, int(top).bit_length())
