"""The arithmetic contract: multiplier encoding, the one rounding rule, saturation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admm_hls.arith import Multiplier, bits_for, quantize_input, quantize_multiplier, requantize


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0**-32, max_value=1e8, allow_nan=False))
def test_multiplier_is_normalized_and_accurate(real):
    """From 2^-32 up, shift <= 62 holds every multiplier at full precision."""
    m = quantize_multiplier(real)
    assert 2**30 <= m.m0 < 2**31
    assert 1 <= m.shift <= 62
    assert math.isclose(m.value, real, rel_tol=2**-30)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0**-62, max_value=2.0**-32, exclude_max=True))
def test_multiplier_below_full_precision_drops_low_bits(real):
    """Below 2^-32 the shift stops at 62 and m0 is the full-precision m0 with the bits below
    2^-62 dropped: real * 2^k (exact in floating point) encodes the same mantissa at full
    precision, at k more shift; m0 is that, shifted right by the bits past 62."""
    m = quantize_multiplier(real)
    assert m.shift == 62
    k = -31 - math.frexp(real)[1]  # real * 2^k lies in [2^-32, 2^-31): full precision
    full = quantize_multiplier(real * 2.0**k)
    assert k >= 1 and 2**30 <= full.m0 < 2**31
    assert m.m0 == full.m0 >> (full.shift + k - 62)
    assert 0 < m.m0 <= 2**30  # never zero from 2^-62 up


def test_multiplier_below_full_precision_examples():
    assert quantize_multiplier(2.0**-40) == Multiplier(2**22, 62)  # exact: 2^22 * 2^-62
    assert quantize_multiplier(3 * 2.0**-41) == Multiplier(3 * 2**21, 62)
    assert quantize_multiplier(2.0**-62) == Multiplier(1, 62)  # the last representable power of two
    assert quantize_multiplier(2.0**-32 * (1 - 2.0**-40)) == Multiplier(2**30, 62)  # rounds up to 2^-32


def test_multiplier_refuses_nonsense():
    for bad in (0.0, -1.0, float("inf"), 2.0**40):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)
    with pytest.raises(ValueError, match="underflows"):  # below 2^-62 nothing is left of m0
        quantize_multiplier(2.0**-64)


def test_requantize_rounds_half_up_and_saturates():
    half = Multiplier(2**30, 31)  # exactly 0.5
    acc = np.array([-5, -3, -1, 1, 3, 5, 1000, -1000])
    # x * 0.5 rounded half up: -2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2, 2.5 -> 3
    assert requantize(acc, half, 8).tolist() == [-2, -1, 0, 1, 2, 3, 127, -128]
    assert requantize(acc, half, 8, relu=True).tolist() == [0, 0, 0, 1, 2, 3, 127, 0]
    assert requantize(acc, half, 4).tolist() == [-2, -1, 0, 1, 2, 3, 7, -8]


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**31) + 1, 2**31 - 1), st.floats(1e-6, 1.0))
def test_requantize_matches_exact_rational_rounding(acc, real):
    m = quantize_multiplier(real)
    got = int(requantize(np.array([acc]), m, 32)[0])
    # floor(acc * m0 / 2^shift + 1/2) computed exactly with Python integers.
    want = (acc * m.m0 + (1 << (m.shift - 1))) >> m.shift
    assert got == max(-(2**31), min(2**31 - 1, want))


def test_input_quantization_and_widths():
    assert quantize_input(np.array([0.24, 0.25, -0.25, 100.0, -100.0]), 0.5, 8).tolist() == [0, 1, 0, 127, -128]
    assert bits_for(127) == 8 and bits_for(128) == 9 and bits_for(0) == 1
