"""Dense, relative-index and CSR formats: exact round trips, stream contract, sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from admm_hls.sparse import (
    REPORT_KEYS,
    Codebook,
    best_index_bits,
    break_even_ratio,
    choose_format,
    col_bits_for,
    count_entries,
    decode_csr,
    decode_dense,
    decode_relative,
    encode_csr,
    encode_dense,
    encode_relative,
    expected_filler_rate,
    ptr_bits,
    signed_width,
    unpack,
)

WORDS = (8, 16, 32, 64)
PARTS = ("entries", "fillers", "index", "row_ptr", "codebook", "bias", "padding")


# ---------------------------------------------------------------- strategies


def _rows_with_gaps(rng: np.random.Generator, rows: int, r: int, max_code: int) -> np.ndarray:
    """Rows whose gaps hit the filler edge cases 2**r - 1, 2**r, 2**r + 1 and far beyond."""
    L = 1 << r
    choices = [0, L - 1, L, L + 1, 2 * L - 1, 2 * L, 3 * L + 1, 7 * L, 40 * L + 3]
    built = []
    for _ in range(rows):
        k = int(rng.integers(0, 4))  # 0 -> empty row
        gaps = rng.choice(choices, size=k)
        pos = np.cumsum(gaps + 1) - 1
        built.append((pos, rng.integers(1, max_code, size=k, endpoint=True)))
    tail = int(rng.integers(0, 2 * L + 2))  # trailing zeros, never encoded
    cols = max([int(p[-1]) + 1 for p, _ in built if p.size] + [1]) + tail
    out = np.zeros((rows, cols), dtype=np.int64)
    for i, (pos, vals) in enumerate(built):
        out[i, pos] = vals
    return out


@st.composite
def layers(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int]:
    """(codes, value_bits, index_bits, word_bits) with value_bits + index_bits <= word_bits."""
    value_bits = draw(st.integers(1, 8))
    index_bits = draw(st.integers(1, 8))
    word_bits = draw(st.sampled_from([w for w in WORDS if w >= value_bits + index_bits]))
    max_code = (1 << value_bits) - 1
    kind = draw(st.sampled_from(["random", "hypothesis", "gaps", "single_col", "all_zero"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "gaps":
        codes = _rows_with_gaps(rng, draw(st.integers(0, 8)), index_bits, max_code)
    elif kind == "hypothesis":
        shape = (draw(st.integers(0, 10)), draw(st.integers(1, 80)))
        codes = draw(
            arrays(np.int64, shape, elements=st.integers(0, max_code), fill=st.just(0))
        )
    else:
        rows = draw(st.integers(0, 12))
        cols = 1 if kind == "single_col" else draw(st.integers(1, 300))
        density = 0.0 if kind == "all_zero" else draw(st.sampled_from([0.005, 0.05, 0.2, 0.6, 1.0]))
        keep = rng.random((rows, cols)) < density
        codes = np.where(keep, rng.integers(1, max_code, (rows, cols), endpoint=True), 0)
    dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16, np.uint8]))
    return codes.astype(dtype), value_bits, index_bits, word_bits


def _reference_stream(codes: np.ndarray, r: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The relative-index contract, written as the obvious per-row Python loop."""
    L = 1 << r
    stream: list[tuple[int, int]] = []
    row_ptr = [0]
    for row in np.asarray(codes, dtype=np.int64):
        last = -1
        for col in np.flatnonzero(row):
            g = int(col) - last - 1
            stream += [(0, L - 1)] * (g // L)
            stream.append((int(row[col]), g % L))
            last = int(col)
        row_ptr.append(len(stream))
    return stream, row_ptr


def _check_report(rep: dict[str, int], words_bits: int) -> None:
    assert tuple(rep) == REPORT_KEYS
    assert all(isinstance(v, int) and v >= 0 for v in rep.values())
    assert rep["overall"] == sum(rep[k] for k in PARTS)
    assert rep["weight_data"] == rep["entries"] + rep["fillers"] + rep["index"] + rep["padding"]
    assert rep["weight_data"] == words_bits


# ---------------------------------------------------------------- relative index


@settings(max_examples=300, deadline=None)
@given(layers())
def test_relative_roundtrip_and_contract(layer: tuple[np.ndarray, int, int, int]) -> None:
    codes, vb, r, wb = layer
    enc = encode_relative(codes, vb, r, wb)
    np.testing.assert_array_equal(decode_relative(enc), codes)
    for a, b in ((0, codes.shape[0] // 2), (codes.shape[0] // 3, codes.shape[0])):  # a block of rows only
        np.testing.assert_array_equal(decode_relative(enc, a, b), codes[a:b])

    # Stream matches the per-row reference exactly (codes, gaps, row_ptr, fillers).
    stream, row_ptr = _reference_stream(codes, r)
    assert list(zip(enc.entry_codes.tolist(), enc.entry_gaps.tolist())) == stream
    assert enc.row_ptr.tolist() == row_ptr and enc.row_ptr.dtype == np.int64
    assert enc.n_fillers == sum(1 for c, _ in stream if c == 0)
    assert count_entries(codes, r) == (len(stream), enc.n_fillers)

    # Packed words hold exactly code | gap << value_bits at entry_bits each.
    assert enc.words.dtype == np.dtype(f"uint{wb}")
    entries = unpack(enc.words, vb + r, len(stream), wb)
    np.testing.assert_array_equal(entries, [c | g << vb for c, g in stream])
    per_word = wb // (vb + r)
    assert enc.words.size == -(-len(stream) // per_word)

    level_bits = 4
    rep = enc.size_report(bias_count=codes.shape[0], bias_bits=16, level_bits=level_bits)
    _check_report(rep, enc.words.size * wb)
    n_real = len(stream) - enc.n_fillers
    assert rep["entries"] == n_real * (vb + r)
    assert rep["fillers"] == enc.n_fillers * (vb + r)
    assert rep["index"] == 0
    assert rep["row_ptr"] == (codes.shape[0] + 1) * max(1, math.ceil(math.log2(len(stream) + 1)))
    assert rep["bias"] == codes.shape[0] * 16
    assert rep["codebook"] == int(codes.max(initial=0)) * level_bits


@pytest.mark.parametrize(
    "row,r,expected",
    [
        # 20 zeros, r=2 (L=4): 20 // 4 = 5 fillers, real gap 20 % 4 = 0.
        ([0] * 20 + [5], 2, [(0, 3)] * 5 + [(5, 0)]),
        # gap exactly 2**r - 1: no filler.
        ([0] * 3 + [1], 2, [(1, 3)]),
        # gap exactly 2**r: one filler, then gap 0.
        ([0] * 4 + [1], 2, [(0, 3), (1, 0)]),
        # gap 2**r + 1.
        ([0] * 5 + [2], 2, [(0, 3), (2, 1)]),
        # r=1: first at column 0 (gap 0), next after 5 zeros: 2 fillers + gap 1.
        ([3, 0, 0, 0, 0, 0, 2], 1, [(3, 0), (0, 1), (0, 1), (2, 1)]),
        # trailing zeros are not encoded.
        ([7] + [0] * 30, 1, [(7, 0)]),
        # empty row has no entries.
        ([0] * 9, 3, []),
        # adjacent nonzeros have gap 0.
        ([1, 2, 3], 1, [(1, 0), (2, 0), (3, 0)]),
        # r=3 (L=8): gap 17 -> 2 fillers, gap 1.
        ([0] * 17 + [4, 0, 0, 6], 3, [(0, 7), (0, 7), (4, 1), (6, 2)]),
    ],
)
def test_fillers_by_hand(row: list[int], r: int, expected: list[tuple[int, int]]) -> None:
    codes = np.array([row])
    enc = encode_relative(codes, 3, r)
    assert list(zip(enc.entry_codes.tolist(), enc.entry_gaps.tolist())) == expected
    n_fill = sum(1 for c, _ in expected if c == 0)
    assert enc.n_fillers == n_fill
    assert count_entries(codes, r) == (len(expected), n_fill)
    assert enc.row_ptr.tolist() == [0, len(expected)]
    np.testing.assert_array_equal(decode_relative(enc), codes)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.uint8, np.int8, np.int16, np.int64, np.bool_]), st.floats(0.0, 0.2),
       st.integers(1 << 16, 1 << 18), st.integers(0, 2**31))
def test_flat_nonzero_matches_numpy(dtype, density, size, seed) -> None:
    from admm_hls.sparse.relative_index import flat_nonzero

    rng = np.random.default_rng(seed)
    a = (rng.random(size) < density).astype(dtype) * (rng.integers(1, 3, size).astype(dtype) if dtype != np.bool_ else 1)
    np.testing.assert_array_equal(flat_nonzero(a), np.flatnonzero(a))
    np.testing.assert_array_equal(flat_nonzero(a.reshape(-1, 4) if size % 4 == 0 else a), np.flatnonzero(a))


def test_relative_row_ptr_and_empty_rows() -> None:
    codes = np.array([[0, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]])
    enc = encode_relative(codes, 2, 1)
    # row 1: (1, gap1) then (2, gap1); row 3: (3, gap0)
    assert enc.row_ptr.tolist() == [0, 0, 2, 2, 3]
    assert enc.entry_gaps.tolist() == [1, 1, 0]
    np.testing.assert_array_equal(decode_relative(enc), codes)


def test_relative_submatrix_for_processing_elements() -> None:
    rng = np.random.default_rng(7)
    codes = np.where(rng.random((40, 100)) < 0.1, rng.integers(1, 7, (40, 100)), 0)
    for pe in range(4):
        idx = np.arange(pe, 40, 4)
        sub = encode_relative(codes[idx], 3, 4)
        np.testing.assert_array_equal(decode_relative(sub), codes[idx])


def test_relative_zero_sized_and_all_zero() -> None:
    for shape in [(0, 5), (3, 7), (1, 1)]:
        codes = np.zeros(shape, dtype=np.int64)
        enc = encode_relative(codes, 1, 1)
        assert enc.words.size == 0 and enc.n_entries == 0
        assert enc.row_ptr.tolist() == [0] * (shape[0] + 1)
        np.testing.assert_array_equal(decode_relative(enc), codes)
        rep = enc.size_report(0, 0, 1)
        _check_report(rep, 0)
        assert rep["row_ptr"] == shape[0] + 1  # ptr_bits(0) == 1


def test_relative_decode_uses_packed_words() -> None:
    codes = np.array([[0, 0, 5, 0, 0, 0, 0, 0, 0, 1]])
    enc = encode_relative(codes, 3, 2)
    # Corrupting the unpacked convenience arrays must not change decoding.
    object.__setattr__(enc, "entry_codes", np.zeros_like(enc.entry_codes))
    np.testing.assert_array_equal(decode_relative(enc), codes)


def test_relative_validation() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_relative(np.ones((2, 2), dtype=np.int64), 3, 6, word_bits=8)
    with pytest.raises(ValueError, match="codes must be in"):
        encode_relative(np.array([[8]]), 3, 2)
    with pytest.raises(ValueError, match="codes must be in"):
        encode_relative(np.array([[-1]]), 3, 2)
    with pytest.raises(ValueError, match="2-D"):
        encode_relative(np.array([1, 2]), 3, 2)
    with pytest.raises(ValueError, match="index_bits"):
        encode_relative(np.array([[1]]), 3, 0)


@settings(max_examples=80, deadline=None)
@given(layers(), st.sampled_from([8, 16, 32]))
def test_best_index_bits_is_argmin(layer: tuple[np.ndarray, int, int, int], max_bits: int) -> None:
    codes, vb, _, wb = layer
    top = min(max_bits, wb - vb)
    sizes = [
        encode_relative(codes, vb, r, wb).size_report(10, 8, 3)["overall"] for r in range(1, top + 1)
    ]
    assert best_index_bits(codes, vb, wb, max_bits) == 1 + int(np.argmin(sizes))


def test_best_index_bits_ties_go_small() -> None:
    # All-zero layer: every width costs the same -> 1.
    assert best_index_bits(np.zeros((4, 50), dtype=np.int64), 3) == 1


@settings(max_examples=60, deadline=None)
@given(layers(), st.sampled_from([0.0, 0.05, 0.2]))
def test_best_index_bits_under_a_filler_cap(layer: tuple[np.ndarray, int, int, int], cap: float) -> None:
    """Among the widths whose fillers are at most ``cap`` of the entries, the one storing fewest
    bits; when no width qualifies, the one with the fewest fillers."""
    codes, vb, _, wb = layer
    top = min(16, wb - vb)
    encoded = [encode_relative(codes, vb, r, wb) for r in range(1, top + 1)]
    ok = [r for r, e in enumerate(encoded, 1) if e.n_fillers <= cap * (e.n_real + e.n_fillers)]
    chosen = best_index_bits(codes, vb, wb, 16, max_filler_rate=cap)
    if ok:
        sizes = {r: encoded[r - 1].size_report(10, 8, 3)["overall"] for r in ok}
        assert chosen == min(ok, key=lambda r: (sizes[r], r))
    else:
        fewest = min(e.n_fillers for e in encoded)
        assert encoded[chosen - 1].n_fillers == fewest
        assert chosen == 1 + [e.n_fillers for e in encoded].index(fewest)


def test_filler_cap_widens_the_index() -> None:
    cb = Codebook.from_levels([-3, -2, -1, 1, 2, 3])
    codes = _layer(np.random.default_rng(4), 32, 800, 0.01)
    free = choose_format(codes, cb, bias_count=32, bias_bits=16)
    capped = choose_format(codes, cb, bias_count=32, bias_bits=16, max_filler_rate=0.05)
    assert free.relative.n_fillers > 0.05 * free.relative.n_entries
    assert capped.index_bits > free.index_bits
    assert capped.relative.n_fillers <= 0.05 * capped.relative.n_entries
    np.testing.assert_array_equal(decode_relative(capped.layer), codes)


def test_forced_formats() -> None:
    cb = Codebook.from_levels([-3, -2, -1, 1, 2, 3])
    sparse = _layer(np.random.default_rng(5), 64, 512, 0.05)
    dense = _layer(np.random.default_rng(6), 64, 512, 0.8)
    ch = choose_format(sparse, cb, bias_count=64, bias_bits=16, force="dense")
    assert ch.format == "dense" and ch.layer is ch.dense and ch.dense_bits > ch.relative_bits
    assert ch.reason.startswith("dense (forced): ") and " vs relative index " in ch.reason
    np.testing.assert_array_equal(decode_dense(ch.layer), sparse)
    ch = choose_format(dense, cb, bias_count=64, bias_bits=16, force="relative")
    assert ch.format == "relative" and ch.layer is ch.relative and ch.relative_bits > ch.dense_bits
    assert ch.reason.startswith("relative index (forced): ") and " vs dense " in ch.reason
    np.testing.assert_array_equal(decode_relative(ch.layer), dense)
    with pytest.raises(ValueError, match="unknown weight format"):
        choose_format(sparse, cb, bias_count=64, bias_bits=16, force="csr")


# ---------------------------------------------------------------- dense and CSR


@settings(max_examples=200, deadline=None)
@given(layers())
def test_dense_roundtrip(layer: tuple[np.ndarray, int, int, int]) -> None:
    codes, vb, _, wb = layer
    enc = encode_dense(codes, vb, wb)
    np.testing.assert_array_equal(decode_dense(enc), codes)
    for a, b in ((0, codes.shape[0] // 2), (codes.shape[0] // 3, codes.shape[0])):  # a block of rows only
        np.testing.assert_array_equal(decode_dense(enc, a, b), codes[a:b])
    # One row-major stream: rows do not restart at a word boundary.
    np.testing.assert_array_equal(unpack(enc.words, vb, codes.size, wb), codes.ravel())
    rep = enc.size_report(codes.shape[0], 16, 4, n_levels=6)
    _check_report(rep, enc.words.size * wb)
    assert rep["entries"] == codes.size * vb
    assert rep["fillers"] == rep["index"] == rep["row_ptr"] == 0
    assert rep["codebook"] == 6 * 4


@settings(max_examples=200, deadline=None)
@given(layers())
def test_csr_roundtrip(layer: tuple[np.ndarray, int, int, int]) -> None:
    codes, vb, _, wb = layer
    cols = codes.shape[1]
    assume(col_bits_for(cols) <= wb)  # wider column indices are refused (test_csr_refuses_wide_columns)
    enc = encode_csr(codes, vb, wb)
    np.testing.assert_array_equal(decode_csr(enc), codes)
    rr, cc = np.nonzero(codes)
    assert enc.nnz == rr.size
    np.testing.assert_array_equal(unpack(enc.col_words, enc.col_bits, enc.nnz, wb), cc)
    np.testing.assert_array_equal(unpack(enc.code_words, vb, enc.nnz, wb), codes[rr, cc])
    assert enc.row_ptr.tolist() == [0] + np.cumsum((codes != 0).sum(axis=1)).tolist()
    rep = enc.size_report(codes.shape[0], 16, 4)
    _check_report(rep, (enc.code_words.size + enc.col_words.size) * wb)
    assert rep["entries"] == enc.nnz * vb
    assert rep["index"] == enc.nnz * enc.col_bits
    assert rep["row_ptr"] == (codes.shape[0] + 1) * ptr_bits(enc.nnz)


def test_csr_refuses_wide_columns() -> None:
    codes = np.zeros((2, 257), dtype=np.int64)  # 257 columns: 9-bit column indices
    with pytest.raises(ValueError, match="9-bit column indices do not fit a 8-bit word"):
        encode_csr(codes, 2, 8)
    assert encode_csr(codes[:, :256], 2, 8).col_bits == 8


def test_col_bits() -> None:
    assert [col_bits_for(c) for c in (1, 2, 3, 4, 5, 8, 9, 9216)] == [1, 1, 2, 2, 3, 3, 4, 14]
    assert [ptr_bits(n) for n in (0, 1, 2, 3, 4, 7, 8)] == [1, 1, 2, 2, 3, 3, 4]


# ---------------------------------------------------------------- codebook


def test_codebook_roundtrip_and_widths() -> None:
    cb = Codebook.from_levels([3, -1, 0, 2, -3, 1, -2, 3])
    assert cb.levels.tolist() == [-3, -2, -1, 1, 2, 3] and cb.levels.dtype == np.int64
    assert cb.value_bits == 3 and cb.level_bits == 3
    w = np.array([[0, -3, 3], [1, 0, -1]])
    codes = cb.encode(w)
    assert codes.tolist() == [[0, 1, 6], [4, 0, 3]]
    np.testing.assert_array_equal(cb.decode(codes), w)
    assert cb.storage_bits(3) == 18
    for n in range(0, 20):
        lv = np.arange(1, n + 1)
        assert Codebook.from_levels(lv).value_bits == max(1, math.ceil(math.log2(n + 1)))


def test_codebook_errors() -> None:
    cb = Codebook.from_levels([-2, -1, 1, 2])
    with pytest.raises(ValueError, match=r"weight value 5 is not in the codebook"):
        cb.encode(np.array([1, 5, -7]))
    with pytest.raises(ValueError, match="codes must be in"):
        cb.decode(np.array([5]))
    with pytest.raises(ValueError, match="nonzero"):
        Codebook(levels=np.array([0, 1]), value_bits=2)
    with pytest.raises(ValueError, match="sorted"):
        Codebook(levels=np.array([2, 1]), value_bits=2)
    with pytest.raises(ValueError, match="value_bits"):
        Codebook(levels=np.array([1, 2, 3, 4]), value_bits=2)


def test_signed_width() -> None:
    assert signed_width([0]) == 1
    assert signed_width([-1]) == 1
    assert signed_width([1]) == 2
    assert signed_width([-3, 3]) == 3
    assert signed_width([-4, 3]) == 3
    assert signed_width([-5]) == 4
    assert signed_width([127, -128]) == 8
    assert signed_width([128]) == 9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=30), st.data())
def test_codebook_encode_decode_property(levels: list[int], data: st.DataObject) -> None:
    cb = Codebook.from_levels(levels)
    pool = [0] + cb.levels.tolist()
    w = np.array(data.draw(st.lists(st.sampled_from(pool), max_size=50)), dtype=np.int64)
    codes = cb.encode(w)
    assert codes.max(initial=0) < 2**cb.value_bits
    np.testing.assert_array_equal(cb.decode(codes), w)
    lo, hi = -(2 ** (cb.level_bits - 1)), 2 ** (cb.level_bits - 1) - 1
    assert np.all((lo <= cb.levels) & (cb.levels <= hi))


# ---------------------------------------------------------------- choosing


def _layer(rng: np.random.Generator, rows: int, cols: int, density: float) -> np.ndarray:
    return np.where(rng.random((rows, cols)) < density, rng.integers(1, 7, (rows, cols)), 0)


def test_choose_relative_for_sparse_layer() -> None:
    cb = Codebook.from_levels([-3, -2, -1, 1, 2, 3])
    codes = _layer(np.random.default_rng(1), 64, 512, 0.05)
    ch = choose_format(codes, cb, bias_count=64, bias_bits=16)
    assert ch.format == "relative" and ch.layer is ch.relative
    assert ch.relative_bits < ch.dense_bits
    assert ch.index_bits == best_index_bits(codes, 3)
    assert ch.reason.startswith("relative index: ") and " vs dense " in ch.reason
    assert ch.relative_report["codebook"] == 6 * 3 and ch.relative_report["bias"] == 64 * 16
    np.testing.assert_array_equal(decode_relative(ch.layer), codes)


def test_choose_dense_for_dense_layer() -> None:
    cb = Codebook.from_levels([-3, -2, -1, 1, 2, 3])
    codes = _layer(np.random.default_rng(2), 64, 512, 0.8)
    ch = choose_format(codes, cb, bias_count=64, bias_bits=16)
    assert ch.format == "dense" and ch.layer is ch.dense
    assert ch.dense_bits <= ch.relative_bits
    assert ch.reason.startswith("dense: pruning ratio ") and "below the break-even" in ch.reason
    assert ch.pruning_ratio < ch.break_even
    np.testing.assert_array_equal(decode_dense(ch.layer), codes)


def test_break_even_and_filler_rate() -> None:
    assert break_even_ratio(3, 5, 0.0) == pytest.approx(8 / 3)
    assert break_even_ratio(3, 5, 0.5) == pytest.approx(4.0)
    d, r = 0.1, 3
    series = sum((1 - d) ** (m * 2**r) for m in range(1, 500))
    assert expected_filler_rate(d, r) == pytest.approx(series)
    assert expected_filler_rate(1.0, 4) == 0.0
    assert expected_filler_rate(0.0, 4) == math.inf
    # The i.i.d. model predicts the measured filler rate of a random layer.
    codes = _layer(np.random.default_rng(3), 200, 2000, d)
    n_entries, n_fill = count_entries(codes, r)
    measured = n_fill / (n_entries - n_fill)
    assert measured == pytest.approx(expected_filler_rate(d, r), rel=0.1)


def test_choose_dense_when_row_pointers_dominate() -> None:
    # One nonzero in each 3-wide row: entries alone favour relative index (ratio 3x above
    # break-even 1.33x), but 201 row pointers of 8 bits make it bigger than dense.
    cb = Codebook.from_levels([-3, -2, -1, 1, 2, 3])
    codes = np.zeros((200, 3), dtype=np.int64)
    codes[:, 0] = 2
    ch = choose_format(codes, cb, bias_count=0, bias_bits=0)
    assert ch.format == "dense"
    assert ch.pruning_ratio > ch.break_even
    assert "row pointers" in ch.reason
