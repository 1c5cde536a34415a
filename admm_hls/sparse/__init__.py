"""Sparse weight formats read by the generated FPGA kernels.

* ``bitpack``        fixed-width fields in unsigned words (LSB first, no straddling)
* ``codebook``       codes 1..n -> integer levels, code 0 = zero
* ``dense``          every code at value_bits, one packed stream
* ``relative_index`` EIE-style (code, gap) entries with filler entries
* ``csr``            nonzero codes + absolute column indices
* ``choose``         dense vs relative index by exact stored bits

Every format's ``size_report(bias_count, bias_bits, level_bits)`` returns the
same keys (``REPORT_KEYS``); their meaning is documented in ``dense``.
"""

from .bitpack import from_bytes, pack, packed_bits, to_bytes, unpack
from .choose import FormatChoice, break_even_ratio, choose_format, expected_filler_rate
from .codebook import Codebook, signed_width
from .csr import CSRLayer, col_bits_for, decode_csr, encode_csr
from .dense import REPORT_KEYS, DenseLayer, decode_dense, encode_dense, ptr_bits
from .relative_index import (
    RelativeIndexLayer,
    best_index_bits,
    count_entries,
    decode_relative,
    encode_relative,
)

__all__ = [
    "pack",
    "unpack",
    "packed_bits",
    "to_bytes",
    "from_bytes",
    "Codebook",
    "signed_width",
    "DenseLayer",
    "encode_dense",
    "decode_dense",
    "CSRLayer",
    "encode_csr",
    "decode_csr",
    "col_bits_for",
    "RelativeIndexLayer",
    "encode_relative",
    "decode_relative",
    "count_entries",
    "best_index_bits",
    "FormatChoice",
    "choose_format",
    "break_even_ratio",
    "expected_filler_rate",
    "REPORT_KEYS",
    "ptr_bits",
]
