"""On-chip memory of a design in the units of its part: block RAM (36 Kb tiles), UltraRAM
(288 Kb blocks) and LUTRAM, against what the part has.

An array of ``depth`` words of ``width`` bits maps to the cheapest block RAM shape (RAMB18:
16K x 1 .. 512 x 36, two to a 36 Kb tile) or, when the part has UltraRAM, the array is a RAM
(UltraScale+ UltraRAM has no initial contents, so ROMs stay in block RAM) and 4K x 72 UltraRAM
blocks hold it in fewer bits than block RAM would, to UltraRAM. Arrays of at most
``LUTRAM_BITS`` bits become LUTRAM or registers, as Vitis HLS maps them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PARTS", "PartMemory", "part_memory", "Storage", "storage", "LUTRAM_BITS", "rom_impl"]

LUTRAM_BITS = 2048
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
URAM_DEPTH, URAM_WIDTH = 4096, 72


@dataclass(frozen=True)
class PartMemory:
    family: str
    bram36: int  # 36 Kb block RAM tiles
    uram: int  # 288 Kb UltraRAM blocks
    rom_uram: bool = False  # UltraRAM can hold initialized ROM contents (Versal)


# Part-number prefixes (the longest match wins) and their on-chip memory, from the data sheets.
PARTS: dict[str, PartMemory] = {
    "xc7z010": PartMemory("zynq-7000", 60, 0),
    "xc7z020": PartMemory("zynq-7000", 140, 0),
    "xc7z045": PartMemory("zynq-7000", 545, 0),
    "xczu3eg": PartMemory("zynq-ultrascale+", 216, 0),
    "xczu7ev": PartMemory("zynq-ultrascale+", 312, 96),
    "xczu9eg": PartMemory("zynq-ultrascale+", 912, 0),
    "xck26": PartMemory("zynq-ultrascale+", 144, 64),
    "xcu50": PartMemory("alveo-u50", 1344, 640),
    "xcu200": PartMemory("alveo-u200", 2160, 960),
    "xcu250": PartMemory("alveo-u250", 2688, 1280),
    "xcu280": PartMemory("alveo-u280", 2016, 960),
    "xcvu9p": PartMemory("virtex-ultrascale+", 2160, 960),
    "xcvc1902": PartMemory("versal", 967, 463, rom_uram=True),
}


def part_memory(part: str) -> PartMemory | None:
    """The memory of ``part`` (by the longest known prefix), None when unknown."""
    p = part.lower()
    hits = [k for k in PARTS if p.startswith(k)]
    return PARTS[max(hits, key=len)] if hits else None


@dataclass(frozen=True)
class Storage:
    kind: str  # "bram", "uram" or "lutram"
    bram36: float = 0.0  # tiles (a RAMB18 is half a tile)
    uram: int = 0
    bits: int = 0


def _bram18(depth: int, width: int) -> int:
    return min(-(-width // w) * -(-depth // d) for d, w in BRAM18_SHAPES)


def storage(depth: int, width: int, part: PartMemory | None, *, rom: bool = False) -> Storage:
    """Where an array of ``depth`` x ``width`` bits goes and what it costs."""
    bits = int(depth) * int(width)
    if bits <= LUTRAM_BITS:
        return Storage("lutram", bits=bits)
    bram36 = _bram18(depth, width) / 2
    uram = -(-width // URAM_WIDTH) * -(-depth // URAM_DEPTH)
    if part is not None and part.uram > 0 and (part.rom_uram or not rom) and uram * 8 <= bram36:  # 288 Kb vs 36 Kb
        return Storage("uram", uram=uram, bits=bits)
    return Storage("bram", bram36=bram36, bits=bits)


def rom_impl(depth: int, width: int, part: PartMemory | None) -> str:
    """The BIND_STORAGE implementation of a ROM: lutram when small, uram where the part can hold
    initialized UltraRAM and the ROM is large, else bram."""
    return storage(depth, width, part, rom=True).kind
