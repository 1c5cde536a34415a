"""Pack fixed-width unsigned fields into unsigned machine words.

Bit layout (this is the contract hardware decoders implement):

* Fields have ``width`` bits (1 <= width <= word_bits); words have ``word_bits``
  bits (8, 16, 32 or 64).
* Fields never straddle a word boundary: each word holds
  ``per_word = word_bits // width`` fields.
* Field ``j`` lives in word ``j // per_word`` at bit offset
  ``(j % per_word) * width``, least-significant bit first: field 0 occupies
  bits ``[0, width)`` of word 0, field 1 bits ``[width, 2*width)``, and so on.
* The ``word_bits - per_word * width`` high bits of every word are zero, and the
  unused field slots of the last word are zero (zero padding).
* ``count`` fields occupy ``ceil(count / per_word)`` words; ``count == 0``
  gives zero words.

``to_bytes`` serialises the words little-endian (word 0 first, each word's
least-significant byte first), so for any word size the byte stream is the
same as a bit stream read LSB-first byte by byte when ``width`` divides 8.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "WORD_BITS",
    "word_dtype",
    "per_word",
    "n_words",
    "packed_bits",
    "pack",
    "unpack",
    "to_bytes",
    "from_bytes",
]

WORD_BITS: tuple[int, ...] = (8, 16, 32, 64)

_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def word_dtype(word_bits: int) -> type[np.unsignedinteger]:
    """The numpy unsigned dtype for a word size (ValueError if unsupported)."""
    try:
        return _DTYPES[int(word_bits)]
    except KeyError:
        raise ValueError(
            f"word_bits must be one of {WORD_BITS}, got {word_bits!r}"
        ) from None


def _check_width(width: int, word_bits: int) -> None:
    word_dtype(word_bits)
    if not 1 <= int(width) <= int(word_bits):
        raise ValueError(
            f"field width must be in 1..{word_bits} for {word_bits}-bit words, got {width!r}"
        )


def per_word(width: int, word_bits: int = 32) -> int:
    """Fields per word (fields do not straddle words)."""
    _check_width(width, word_bits)
    return int(word_bits) // int(width)


def n_words(count: int, width: int, word_bits: int = 32) -> int:
    """Number of words needed to hold ``count`` fields."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    k = per_word(width, word_bits)
    return -(-int(count) // k)


def packed_bits(count: int, width: int, word_bits: int = 32) -> int:
    """Bits actually stored for ``count`` fields: whole words times ``word_bits``."""
    return n_words(count, width, word_bits) * int(word_bits)


def pack(values: np.ndarray, width: int, word_bits: int = 32) -> np.ndarray:
    """Pack ``values`` (any integer array, flattened C-order) into words.

    Returns a 1-D ``uint{word_bits}`` array. Raises ValueError if a value is
    outside ``[0, 2**width)``.
    """
    _check_width(width, word_bits)
    width = int(width)
    word_bits = int(word_bits)
    dt = word_dtype(word_bits)
    v = np.asarray(values).ravel()
    if v.size and not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"values must be integers, got dtype {v.dtype}")
    if v.size:
        lo = int(v.min())
        hi = int(v.max())
        if lo < 0 or hi >= (1 << width):
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"value {bad} does not fit in an unsigned {width}-bit field "
                f"(allowed range 0..{(1 << width) - 1})"
            )
    k = word_bits // width
    nw = -(-v.size // k)
    padded = np.zeros(nw * k, dtype=dt)
    padded[: v.size] = v  # values already range-checked, the cast is exact
    slots = padded.reshape(nw, k)
    words = np.zeros(nw, dtype=dt)
    # One vectorised pass per slot position (<= 64 passes), never per field.
    for s in range(k):
        words |= slots[:, s] << dt(s * width)
    return words


def unpack(words: np.ndarray, width: int, count: int, word_bits: int = 32) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``count`` fields as int64.

    ``words`` may be any unsigned/signed integer array holding ``word_bits``-bit
    words; it must contain at least ``ceil(count / per_word)`` words.
    """
    _check_width(width, word_bits)
    width = int(width)
    word_bits = int(word_bits)
    count = int(count)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    dt = word_dtype(word_bits)
    k = word_bits // width
    nw = -(-count // k)
    w = np.asarray(words).ravel()
    if w.size < nw:
        raise ValueError(
            f"{count} fields of {width} bits need {nw} words of {word_bits} bits, got {w.size}"
        )
    w = w[:nw].astype(dt, copy=False)
    mask = dt((1 << width) - 1) if width < 64 else dt(np.iinfo(np.uint64).max)
    out = np.empty((nw, k), dtype=np.int64)
    for s in range(k):
        # width == 64 can only occur with 64-bit words; such values may exceed int64,
        # the cast wraps exactly like a two's complement reinterpretation.
        out[:, s] = ((w >> dt(s * width)) & mask).astype(np.int64, copy=False)
    return out.ravel()[:count]


def to_bytes(words: np.ndarray) -> bytes:
    """Serialise words little-endian (word 0 first, LSB byte first)."""
    w = np.asarray(words)
    if w.dtype.kind != "u":
        raise ValueError(f"words must be an unsigned integer array, got dtype {w.dtype}")
    return w.astype(w.dtype.newbyteorder("<"), copy=False).tobytes()


def from_bytes(data: bytes, word_bits: int = 32) -> np.ndarray:
    """Inverse of :func:`to_bytes`: native-endian ``uint{word_bits}`` words."""
    dt = np.dtype(word_dtype(word_bits))
    nbytes = int(word_bits) // 8
    if len(data) % nbytes:
        raise ValueError(
            f"byte length {len(data)} is not a multiple of the {nbytes}-byte word size"
        )
    return np.frombuffer(data, dtype=dt.newbyteorder("<")).astype(dt)
