"""The AXI4 read master of an off-chip layer (``admm_axi_words``): its parameters from the plan
and the read-channel signals the top exposes per layer (``m_axi_<port>_*``, as a Vitis HLS
export names an m_axi bundle)."""

from __future__ import annotations

from ...hw.blob import blob_port as _port
from ...hw.plan import LayerHW

__all__ = ["AXI_SIGNALS", "axi_params", "blob_port", "MAX_BURST_BYTES"]

# The read-address and read-data channels (the module's port suffixes after m_axi_).
AXI_SIGNALS = ("ARID", "ARADDR", "ARLEN", "ARSIZE", "ARBURST", "ARLOCK", "ARCACHE", "ARPROT", "ARQOS", "ARREGION",
               "ARVALID", "ARREADY", "RID", "RDATA", "RRESP", "RLAST", "RVALID", "RREADY")
MAX_BURST_BYTES = 4096  # as the HLS port's max_read_burst_length: a burst never crosses 4 KB
# Beats per burst and beats buffered: bursts of up to 16 beats, four in flight. A layer consumes a
# step every few cycles at most (an entry per cycle, several entries per word), so this covers
# a read latency of about 48 cycles at full rate without a block RAM per layer for the FIFO.
BURST_BEATS = 16
FIFO_BEATS = 64


def blob_port(layer: LayerHW) -> str:
    return _port(layer.ident)


def axi_params(layer: LayerHW) -> list[tuple[str, str]]:
    """``admm_axi_words`` parameters of an off-chip layer: its beats at its blob offset."""
    burst = min(256, MAX_BURST_BYTES * 8 // layer.beat_bits, BURST_BEATS)
    return [("DATA_W", str(layer.beat_bits)), ("STEP_W", str(layer.step_bits)), ("STEPS", str(layer.steps)),
            ("OFFSET", f"64'd{layer.blob_offset}"), ("MAX_BURST", str(burst)), ("FIFO_DEPTH", str(FIFO_BEATS))]
