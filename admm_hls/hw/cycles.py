"""The cycle model: what each process of the design takes, the same for both backends.

Every process is one pipelined loop that issues one item per cycle on each of its lanes (a
weight entry, a pooling-window element, an element); its *iterations* come from the plan
(``schedule.Schedule.iterations`` for conv / linear, channel-range sizes for the rest). A
backend adds only a fixed latency per process: the RTL engines' pipeline fill, start and done
(exact: the RTL tests compare every layer against simulation), and the HLS loops' pipeline depth
(an estimate of what Vitis HLS schedules for these loops at II=1, plus the m_axi read latency
that UG1399 takes as default, 64 cycles, for layers whose words come from off-chip).

Per inference, both designs' processes form a pipeline connected by ping-pong buffers (HLS
DATAFLOW; the RTL top's stages with credits): a process starts when its producers finish, so
the latency of one image is the longest path of process cycles through the layer graph, and
with images in flight (``ap_ctrl_chain``) successive images overlap, one every *interval* = the
slowest process. The RTL's load counts from the image's first value.
"""

from __future__ import annotations

__all__ = ["RTL_OVERHEAD", "RTL_RESTART", "HLS_DEPTH", "AXI_LATENCY", "overhead", "restart"]

# Cycles an RTL engine spends beyond its issue slots (start, pipeline drain, done): exact.
RTL_OVERHEAD = {"weighted": 23, "window": 17, "elementwise": 16, "concat": 16, "input": 0, "output": 8}
# Cycles between the end of one run of an RTL stage and the start of its next run, beyond its
# own cycles, with images in flight: the load starts (and then takes its first value) one cycle
# after its last value, the send waits a cycle for ap_continue; a layer starts again at once.
RTL_RESTART = {"input": 1, "output": 1}
# Pipeline depth of the HLS loop of each kind of process (estimated, cycles).
HLS_DEPTH = {"weighted": 12, "window": 8, "elementwise": 8, "concat": 8, "input": 3, "output": 3}
AXI_LATENCY = 64  # m_axi read latency (UG1399's default for the INTERFACE latency option)


def overhead(kind: str, backend: str, *, blob: bool = False) -> int:
    """Fixed cycles of one process of ``kind`` in ``backend`` ("hls" or "rtl")."""
    if backend == "rtl":
        return RTL_OVERHEAD[kind]
    if backend == "hls":
        return HLS_DEPTH[kind] + (AXI_LATENCY if blob else 0)
    raise ValueError(f"unknown backend {backend!r}")


def restart(kind: str, backend: str) -> int:
    """Cycles a process of ``kind`` spends between two runs with images in flight."""
    return RTL_RESTART.get(kind, 0) if backend == "rtl" else 0
