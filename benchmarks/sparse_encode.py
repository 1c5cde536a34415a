"""Time sparse-format encoding of a large layer (AlexNet fc6-sized: 4096 x 9216, 9% density).

Run: PYTHONPATH=. python benchmarks/sparse_encode.py
"""

from __future__ import annotations

import time

import numpy as np

from admm_hls.sparse import (
    Codebook,
    best_index_bits,
    choose_format,
    decode_relative,
    encode_csr,
    encode_dense,
    encode_relative,
)

ROWS, COLS, DENSITY = 4096, 9216, 0.09


def _timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<34s} {time.perf_counter() - t0:7.3f} s")
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    cb = Codebook.from_levels([-3, -2, -1, 1, 2, 3])  # 3-bit ADMM levels
    keep = rng.random((ROWS, COLS)) < DENSITY
    codes = np.where(keep, rng.integers(1, cb.n_levels + 1, (ROWS, COLS)), 0).astype(np.uint8)
    print(f"layer {ROWS}x{COLS} = {codes.size / 1e6:.1f}M weights, nnz {int(keep.sum())}, "
          f"value_bits {cb.value_bits}")
    r = _timed("best_index_bits", lambda: best_index_bits(codes, cb.value_bits))
    layer = _timed(f"encode_relative (r={r})", lambda: encode_relative(codes, cb.value_bits, r))
    _timed("decode_relative", lambda: decode_relative(layer))
    _timed("encode_dense", lambda: encode_dense(codes, cb.value_bits))
    _timed("encode_csr", lambda: encode_csr(codes, cb.value_bits))
    choice = _timed("choose_format (dense + relative)", lambda: choose_format(codes, cb, ROWS, 16))
    print(f"fillers {layer.n_fillers}, choice: {choice.reason}")


if __name__ == "__main__":
    main()
