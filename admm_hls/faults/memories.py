"""The memories a weighted layer's hardware reads, as fields, and bit flips in them.

Per conv / linear layer of a hardware plan (both backends read exactly these):

* ``fields``: every lane's lockstep stream, one ``code | gap << value_bits`` field per entry
  (fillers and lockstep padding included: the hardware stores and decodes them too), with
  ``--ecc`` its check bits above. Target ``values`` flips the code bits, ``indices`` the gap
  bits; with the code, each of them also flips the check bits (at the same rate: the code's own
  bits are memory too).
* ``counts``: the entries each lane's row reads per slot: the count field of the RTL's row table
  (target ``row-pointers``). The HLS kernel keeps one count per slot and reads the words in
  order, so a flipped count there desynchronizes the lanes instead: ``faulted_plan`` refuses to
  render count faults.
* ``levels``: the codebook as held, ``2^value_bits - 1`` levels (zero past the real ones), each
  ``level_bits`` wide in two's complement (target ``codebook``).

Feature-map faults (target ``activations``) happen while the model runs: see ``decode``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..hw.plan import HardwarePlan, LayerHW
from ..hw.streams import lockstep_fields, pack_lockstep
from ..sparse.codebook import signed_width
from .flips import flip_bits, flip_signed

__all__ = ["TARGETS", "WEIGHT_TARGETS", "LayerMemories", "memories_of", "inject", "faulted_plan"]

WEIGHT_TARGETS = ("values", "indices", "row-pointers", "codebook")
TARGETS = WEIGHT_TARGETS + ("activations",)


@dataclass(frozen=True, eq=False)
class LayerMemories:
    layer: LayerHW
    fields: np.ndarray  # (groups, entries) int64
    counts: np.ndarray  # (groups, slots) int64; lanes without a row in a slot hold 0 and are never read
    levels: np.ndarray  # (2^value_bits - 1,) int64
    level_bits: int

    @property
    def rows_valid(self) -> np.ndarray:
        """(groups, slots) bool: the lanes that compute a row in each slot."""
        return self.layer.schedule.slot_rows.T >= 0

    def bits(self, target: str) -> int:
        """Stored bits of one target in this layer (the lanes' row-table fields only where a row is)."""
        st = self.layer.stream
        if target == "values":
            return self.fields.size * (st.value_bits + st.ecc_bits)
        if target == "indices":
            return self.fields.size * (st.index_bits + st.ecc_bits)
        if target == "row-pointers":
            return int(self.rows_valid.sum()) * self.layer.count_bits
        if target == "codebook":
            return self.levels.size * self.level_bits
        raise ValueError(f"no memory for target {target!r} in a weighted layer")


def memories_of(plan: HardwarePlan) -> dict[str, LayerMemories]:
    """The weight memories of every conv / linear layer of ``plan``, unfaulted."""
    out = {}
    for layer in plan.weighted():
        s, st = layer.schedule, layer.stream
        valid = s.slot_rows.T >= 0
        counts = np.where(valid, s.slot_count[None, :], 0).astype(np.int64)
        out[layer.name] = LayerMemories(layer, lockstep_fields(st, s), counts, st.codebook,
                                        max(2, signed_width(st.levels)))
    return out


def inject(mem: LayerMemories, target: str, ber: float, rng: np.random.Generator) -> LayerMemories:
    """``mem`` with every bit of ``target``'s memory flipped with probability ``ber``."""
    st = mem.layer.stream
    if target in ("values", "indices"):
        lo, hi = (0, st.value_bits) if target == "values" else (st.value_bits, st.data_bits)
        fields = flip_bits(mem.fields, lo, hi, ber, rng)
        if st.ecc_bits:
            fields = flip_bits(fields, st.data_bits, st.width, ber, rng)
        return replace(mem, fields=fields)
    if target == "codebook":
        return replace(mem, levels=flip_signed(mem.levels, mem.level_bits, ber, rng))
    if target == "row-pointers":
        valid = mem.rows_valid
        counts = mem.counts.copy()
        counts[valid] = flip_bits(mem.counts[valid], 0, mem.layer.count_bits, ber, rng)
        return replace(mem, counts=counts)
    raise ValueError(f"unknown weight fault target {target!r} (known: {', '.join(WEIGHT_TARGETS)})")


def faulted_plan(plan: HardwarePlan, mems: dict[str, LayerMemories]) -> HardwarePlan:
    """``plan`` with its weighted layers' words and codebooks taken from ``mems``: what
    the backends render when their memories hold the faults (the hardware's bit-exact tests)."""
    layers = dict(plan.layers)
    for name, mem in mems.items():
        layer = layers[name]
        if mem.fields.shape != (layer.schedule.groups, layer.schedule.entries) or \
                mem.layer.stream.width != layer.stream.width:
            raise ValueError(f"{name}: the memories come from another plan (other PEs or code)")
        if not np.array_equal(mem.counts[mem.rows_valid],
                              np.broadcast_to(layer.schedule.slot_count, mem.counts.shape)[mem.rows_valid]):
            raise ValueError(f"{name}: count faults are not rendered (the HLS kernel has one count per slot)")
        stream = replace(layer.stream, levels=mem.levels)
        layers[name] = replace(layer, stream=stream, words=pack_lockstep(mem.fields, layer.stream.width))
    return replace(plan, layers=layers)
