"""Bit packing: exact layout (LSB first, no straddling) and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admm_hls.sparse import bitpack
from admm_hls.sparse.bitpack import from_bytes, pack, packed_bits, to_bytes, unpack

WORDS = (8, 16, 32, 64)
ALL_WIDTHS = [(wb, w) for wb in WORDS for w in range(1, wb + 1)]


def _reference_pack(values: list[int], width: int, word_bits: int) -> list[int]:
    """Straight from the contract, with Python ints."""
    k = word_bits // width
    words = [0] * (-(-len(values) // k))
    for j, v in enumerate(values):
        words[j // k] |= v << ((j % k) * width)
    return words


def _random_values(rng: np.random.Generator, width: int, count: int) -> np.ndarray:
    hi = (1 << width) - 1
    return rng.integers(0, hi, size=count, dtype=np.uint64, endpoint=True)


@pytest.mark.parametrize("word_bits,width", ALL_WIDTHS)
def test_roundtrip_every_width(word_bits: int, width: int) -> None:
    rng = np.random.default_rng(word_bits * 100 + width)
    k = word_bits // width
    for count in (0, 1, k - 1, k, k + 1, 3 * k + 2):
        if count < 0:
            continue
        vals = _random_values(rng, width, count)
        words = pack(vals, width, word_bits)
        assert words.dtype == np.dtype(f"uint{word_bits}")
        assert words.size == -(-count // k)
        assert words.size * word_bits == packed_bits(count, width, word_bits)
        back = unpack(words, width, count, word_bits)
        assert back.dtype == np.int64
        np.testing.assert_array_equal(back.astype(np.uint64), vals)
        assert [int(x) for x in words] == _reference_pack([int(v) for v in vals], width, word_bits)


@pytest.mark.parametrize("word_bits", WORDS)
def test_count_zero(word_bits: int) -> None:
    words = pack(np.zeros(0, dtype=np.int64), 3, word_bits)
    assert words.size == 0 and words.dtype == np.dtype(f"uint{word_bits}")
    assert unpack(words, 3, 0, word_bits).size == 0
    assert packed_bits(0, 3, word_bits) == 0


@settings(max_examples=150, deadline=None)
@given(
    word_bits=st.sampled_from(WORDS),
    data=st.data(),
)
def test_roundtrip_property(word_bits: int, data: st.DataObject) -> None:
    width = data.draw(st.integers(1, word_bits))
    vals = data.draw(st.lists(st.integers(0, (1 << width) - 1), max_size=80))
    words = pack(np.array(vals, dtype=np.uint64), width, word_bits)
    assert [int(x) for x in words] == _reference_pack(vals, width, word_bits)
    assert [int(x) for x in unpack(words, width, len(vals), word_bits).astype(np.uint64)] == vals
    # Unused high bits of every word are zero.
    used = (word_bits // width) * width
    if used < word_bits:
        assert all(int(w) >> used == 0 for w in words)


def test_bit_order_by_hand() -> None:
    # width 2 in a byte: entry 0 in bits 0-1, entry 1 in bits 2-3, entry 2 in bits 4-5.
    assert pack([1, 2, 3], 2, 8).tolist() == [1 | 2 << 2 | 3 << 4]
    # width 3 in a byte: 2 per word, top 2 bits unused, entry 2 starts word 1.
    assert pack([5, 6, 7], 3, 8).tolist() == [5 | 6 << 3, 7]
    # width 5 in 32-bit words: 6 per word, 2 high bits zero.
    vals = list(range(1, 8))
    words = pack(vals, 5, 32).tolist()
    assert words == [sum(v << (5 * i) for i, v in enumerate(vals[:6])), 7]


def test_bytes_little_endian() -> None:
    assert to_bytes(pack([0x1234], 16, 16)) == b"\x34\x12"
    assert to_bytes(pack([0x12345678], 32, 32)) == b"\x78\x56\x34\x12"
    words = pack(np.arange(50) % 8, 3, 64)
    back = from_bytes(to_bytes(words), 64)
    assert back.dtype == np.uint64
    np.testing.assert_array_equal(back, words)
    with pytest.raises(ValueError, match="multiple"):
        from_bytes(b"\x00\x01\x02", 32)


def test_validation() -> None:
    with pytest.raises(ValueError, match="width"):
        pack([1], 0, 32)
    with pytest.raises(ValueError, match="width"):
        pack([1], 33, 32)
    with pytest.raises(ValueError, match="word_bits"):
        pack([1], 3, 24)
    with pytest.raises(ValueError, match=r"value 8 does not fit.*3-bit"):
        pack([1, 8], 3, 32)
    with pytest.raises(ValueError, match=r"value -1"):
        pack([-1, 2], 3, 32)
    with pytest.raises(ValueError, match="need"):
        unpack(np.zeros(1, dtype=np.uint32), 4, 9, 32)
    assert bitpack.per_word(3, 32) == 10
    assert bitpack.n_words(11, 3, 32) == 2


def test_width_64_full_range() -> None:
    vals = np.array([0, 1, np.iinfo(np.uint64).max, 1 << 63], dtype=np.uint64)
    words = pack(vals, 64, 64)
    np.testing.assert_array_equal(words, vals)
    np.testing.assert_array_equal(unpack(words, 64, 4, 64).astype(np.uint64), vals)
