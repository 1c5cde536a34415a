"""The stored form of a checkpoint (format version 2): a pruned layer keeps its kept positions and
the codebook levels at them, bit-packed, instead of a dense weight, a dense mask and dense levels.

``compact`` turns the in-memory checkpoint (what every later stage reads: dense state_dict
weights, a dense ``mask`` and dense ``levels`` per layer) into the stored one; ``expand`` turns it
back exactly: the same values bit for bit, dtypes and shapes.

A compacted ``layers[name]`` holds, instead of ``mask``, ``levels`` and
``state_dict[name + '.weight']``:

- ``encoding`` and ``positions`` (uint8): the weight's kept flat positions (C order), as
  ``"bitmask"``: one bit per weight (``numpy.packbits``, little bit order), ceil(numel / 8) bytes;
  or ``"gaps"``: one token per kept weight, its distance d >= 1 from the previous kept position
  (the first from -1), where a token 0 advances 255 without an entry, so any distance fits.
  The writer takes whichever is smaller (the bitmask on ties);
- ``packed_levels`` (uint8): the levels at the kept positions, in order, as ``bits``-bit two's
  complement fields in little-endian 64-bit words (``sparse.bitpack``). The weight is then
  ``float32(float64(level) * scale)`` there, as compression computes it
  (``Compressor._quantized_values``), and +0.0 elsewhere;
- or, where the layer has no codebook (``levels`` None), ``values`` (float32): the weights at the
  kept positions.

The weight's shape and the kept count are the layer's own ``shape`` and ``nonzeros``. A layer is
compacted only where that gives it back exactly (a bool mask and int8 levels shaped like the
float32 weight, +0.0 and level 0 wherever the mask prunes, the codebook exactly where it keeps,
levels within ``bits``, ``shape`` and ``nonzeros`` right); any other layer is stored as it is,
dense, so validation at load reports it exactly as in version 1.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np
import torch

from ..errors import UserError
from ..sparse.bitpack import from_bytes, n_words, pack, to_bytes, unpack
from .validate import BITS_RANGE, DAMAGED, _is_int, _is_real, _show

ENCODINGS = ("bitmask", "gaps")
COMPACT_FIELDS = ("encoding", "positions", "packed_levels", "values")
WORD_BITS = 64  # fields never straddle a word: 64-bit words lose at most 4 bits in 64 (5-bit levels)
GAP_SKIP = 255  # how far a gap token 0 advances
MAX_ENTRIES = 2**31  # far beyond any layer lowered: a larger shape is damage, not an allocation to try


def compact(ckpt: Any) -> Any:
    """The version-2 form of an in-memory checkpoint (a new dict; ``ckpt`` is not changed).
    Anything that is not a readable admm-hls checkpoint is returned as it is."""
    from .checkpoint import FORMAT, READABLE, VERSION

    if not (isinstance(ckpt, dict) and ckpt.get("format") == FORMAT and _is_int(ckpt.get("version"))
            and ckpt["version"] in READABLE):
        return ckpt
    stored = dict(ckpt, version=VERSION)
    state, layers = ckpt.get("state_dict"), ckpt.get("layers")
    if not isinstance(state, dict) or not isinstance(layers, dict):
        return stored
    state, layers = dict(state), dict(layers)
    for name, layer in layers.items():
        small = _compact_layer(name, layer, state)
        if small is not None:
            layers[name] = small
            del state[f"{name}.weight"]
    stored["state_dict"], stored["layers"] = state, layers
    return stored


def expand(ckpt: Any, where: str = "checkpoint") -> Any:
    """The in-memory form of a loaded checkpoint: compacted layers decoded back to a dense weight,
    mask and levels. A problem in the compact fields is one UserError naming the field; anything
    else (other versions, dense layers, foreign files) is returned as it is, for validation."""
    from .checkpoint import FORMAT, VERSION

    if not (isinstance(ckpt, dict) and ckpt.get("format") == FORMAT and _is_int(ckpt.get("version"))
            and ckpt["version"] == VERSION):
        return ckpt
    state, layers = ckpt.get("state_dict"), ckpt.get("layers")
    if not isinstance(state, dict) or not isinstance(layers, dict):
        return ckpt
    compacted = [n for n, layer in layers.items()
                 if isinstance(layer, dict) and any(k in layer for k in COMPACT_FIELDS)]
    if not compacted:
        return ckpt

    def fail(field: str, problem: str) -> NoReturn:
        raise UserError(f"{where}: {field} {problem}: {DAMAGED}")

    state, layers = dict(state), dict(layers)
    for name in compacted:
        key = f"{name}.weight"
        if key in state:
            fail(f"state_dict[{key!r}]", f"is stored twice, dense and in layers[{name!r}].positions")
        layers[name], state[key] = _expand_layer(layers[name], f"layers[{name!r}]", fail)
    return dict(ckpt, state_dict=state, layers=layers)


# -- one layer --------------------------------------------------------------------------------------
def _compact_layer(name: Any, layer: Any, state: dict) -> dict | None:
    """The compact form of one layer, or None where it would not expand back exactly."""
    if not isinstance(name, str) or not isinstance(layer, dict) or any(k in layer for k in COMPACT_FIELDS):
        return None
    weight, mask, shape = state.get(f"{name}.weight"), layer.get("mask"), layer.get("shape")
    if not (_plain(weight, torch.float32) and _plain(mask, torch.bool) and mask.shape == weight.shape
            and isinstance(shape, (list, tuple)) and all(_is_int(s) for s in shape)
            and tuple(shape) == tuple(weight.shape) and "levels" in layer):
        return None
    keep = mask.detach().reshape(-1).numpy()
    kept = np.flatnonzero(keep)
    if not _is_int(layer.get("nonzeros")) or layer["nonzeros"] != kept.size:
        return None
    # Bit patterns, not values: a -0.0 where the mask prunes must survive too (it is stored dense).
    w_bits = weight.detach().reshape(-1).numpy().view(np.uint32)
    kept_bits = w_bits[kept]
    if np.count_nonzero(w_bits) != np.count_nonzero(kept_bits):
        return None
    levels = layer["levels"]
    if levels is None:
        fields = {"values": torch.from_numpy(kept_bits.view(np.float32))}
    else:
        bits, scale = layer.get("bits"), layer.get("scale")
        if not (_plain(levels, torch.int8) and levels.shape == weight.shape and _is_int(bits)
                and BITS_RANGE[0] <= bits <= BITS_RANGE[1] and _is_real(scale) and math.isfinite(scale) and scale > 0):
            return None
        all_levels = levels.detach().reshape(-1).numpy()
        kept_levels = all_levels[kept]
        top = 2 ** (bits - 1) - 1
        if (np.count_nonzero(all_levels) != np.count_nonzero(kept_levels)
                or (kept.size and (kept_levels.max() > top or kept_levels.min() < -top))
                or not np.array_equal(_codebook_weights(kept_levels, scale).view(np.uint32), kept_bits)):
            return None
        fields = {"packed_levels": _pack_levels(kept_levels, bits)}
    encoding, positions = _encode_positions(keep, kept)
    small = {k: v for k, v in layer.items() if k != "mask" and not (k == "levels" and levels is not None)}
    small.update(encoding=encoding, positions=torch.from_numpy(positions), **fields)
    return small


def _expand_layer(layer: dict, field: str, fail) -> tuple[dict, torch.Tensor]:
    """(the layer with its dense mask and levels, the dense weight) from its compact fields."""
    shape, count, encoding = layer.get("shape"), layer.get("nonzeros"), layer.get("encoding")
    if "mask" in layer:
        fail(field, "has both a mask and positions")
    if not (isinstance(shape, (list, tuple)) and all(_is_int(s) and s >= 0 for s in shape)
            and math.prod(shape) <= MAX_ENTRIES):
        fail(f"{field}.shape", f"is {_show(shape)}, not the shape of the layer's weight")
    numel = math.prod(shape)
    if not (_is_int(count) and 0 <= count <= numel):
        fail(f"{field}.nonzeros", f"is {_show(count)}, not a count of kept weights (0..{numel:,})")
    if encoding not in ENCODINGS:
        fail(f"{field}.encoding", f"is {_show(encoding)}, not one of {', '.join(ENCODINGS)}")
    positions = _bytes_field(layer.get("positions"), f"{field}.positions", torch.uint8, fail)
    kept = _decode_positions(encoding, positions, numel, f"{field}.positions", fail)
    if kept.size != count:
        fail(f"{field}.positions", f"lists {kept.size:,} kept weights, nonzeros says {count:,}")
    has_packed, has_values = "packed_levels" in layer, "values" in layer
    if has_packed == has_values:
        fail(field, "needs exactly one of packed_levels (a codebook) and values (none)")
    if has_packed:
        if "levels" in layer:
            fail(field, "has both levels and packed_levels")
        bits, scale = layer.get("bits"), layer.get("scale")
        if not _is_int(bits) or not BITS_RANGE[0] <= bits <= BITS_RANGE[1]:
            fail(f"{field}.bits", f"is {_show(bits)}, not a width of {BITS_RANGE[0]}..{BITS_RANGE[1]} bits")
        if not _is_real(scale) or not math.isfinite(scale) or scale <= 0:
            fail(f"{field}.scale", f"is {_show(scale)}, not a finite number > 0")
        packed = _bytes_field(layer["packed_levels"], f"{field}.packed_levels", torch.uint8, fail)
        need = n_words(count, bits, WORD_BITS) * (WORD_BITS // 8)
        if packed.size != need:
            fail(f"{field}.packed_levels",
                 f"holds {packed.size:,} bytes, {count:,} levels of {bits} bits take {need:,}")
        kept_levels = _unpack_levels(packed, bits, count)
        kept_values = _codebook_weights(kept_levels, scale)
        levels = np.zeros(numel, dtype=np.int8)
        levels[kept] = kept_levels
        restored = {"levels": torch.from_numpy(levels.reshape(shape))}
    else:
        if layer.get("levels") is not None:
            fail(field, "has both levels and values")
        kept_values = _bytes_field(layer["values"], f"{field}.values", torch.float32, fail)
        if kept_values.size != count:
            fail(f"{field}.values", f"holds {kept_values.size:,} weights, nonzeros says {count:,}")
        restored = {}
    # np.zeros: untouched pages of a large, mostly pruned layer are never written.
    mask = np.zeros(numel, dtype=bool)
    mask[kept] = True
    weight = np.zeros(numel, dtype=np.float32)
    weight[kept] = kept_values
    dense = {k: v for k, v in layer.items() if k not in COMPACT_FIELDS}
    dense.update(mask=torch.from_numpy(mask.reshape(shape)), **restored)
    return dense, torch.from_numpy(weight.reshape(shape))


# -- encodings --------------------------------------------------------------------------------------
def _encode_positions(keep: np.ndarray, kept: np.ndarray) -> tuple[str, np.ndarray]:
    """("bitmask" or "gaps", the uint8 stream) for the flat bool mask ``keep`` whose true
    positions are ``kept``: whichever stream is shorter."""
    gaps = np.diff(kept, prepend=-1)
    skips = (gaps - 1) // GAP_SKIP  # zero tokens before each entry's own token
    tokens = kept.size + int(skips.sum())
    if tokens < -(-keep.size // 8):
        stream = np.zeros(tokens, dtype=np.uint8)
        stream[np.cumsum(skips + 1) - 1] = gaps - GAP_SKIP * skips
        return "gaps", stream
    return "bitmask", np.packbits(keep, bitorder="little")


def _decode_positions(encoding: str, stream: np.ndarray, numel: int, field: str, fail) -> np.ndarray:
    """The kept flat positions (int64, ascending) a positions stream lists."""
    past = f"runs past the weight's {numel:,} entries"
    if encoding == "bitmask":
        need = -(-numel // 8)
        if stream.size != need:
            fail(field, f"holds {stream.size:,} bytes, a bitmask of the weight's {numel:,} entries takes {need:,}")
        if numel % 8 and stream[-1] >> (numel % 8):
            fail(field, past)
        return np.flatnonzero(np.unpackbits(stream, count=numel, bitorder="little"))
    entries = stream != 0
    ends = np.cumsum(np.where(entries, stream, GAP_SKIP), dtype=np.int64)
    if ends.size and ends[-1] > numel:
        fail(field, past)
    return ends[entries] - 1


def _pack_levels(levels: np.ndarray, bits: int) -> torch.Tensor:
    """Signed levels as ``bits``-bit two's complement fields, packed (module docstring)."""
    fields = levels.astype(np.int64) & ((1 << bits) - 1)
    stream = to_bytes(pack(fields, bits, WORD_BITS))
    return torch.from_numpy(np.frombuffer(stream, dtype=np.uint8).copy())


def _unpack_levels(stream: np.ndarray, bits: int, count: int) -> np.ndarray:
    fields = unpack(from_bytes(stream.tobytes(), WORD_BITS), bits, count, WORD_BITS)
    return (fields - ((fields >> (bits - 1)) << bits)).astype(np.int8)  # sign bit set: minus 2^bits


def _codebook_weights(levels: np.ndarray, scale: float) -> np.ndarray:
    """float32(float64(level) * scale): the rounding compression stores the weights with."""
    return (levels.astype(np.float64) * scale).astype(np.float32)


# -- small helpers ----------------------------------------------------------------------------------
def _plain(t: Any, dtype: torch.dtype) -> bool:
    return (isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type == "cpu"
            and t.dtype == dtype)


def _bytes_field(t: Any, field: str, dtype: torch.dtype, fail) -> np.ndarray:
    """A compact field's values: a 1-D plain tensor of ``dtype``, as numpy."""
    if not (_plain(t, dtype) and t.dim() == 1):
        fail(field, f"is {_show(t)}, not a 1-D {dtype} tensor")
    return t.detach().numpy()
