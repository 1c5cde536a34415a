"""cocotb tests of admm_axi_words, the AXI4 read master of an off-chip layer's weight words; run
by hw_tests/test_rtl_axi_words.py, which writes the case (module parameters, the weight blob as
the HLS build writes it, the layer's words as the plan holds them) and names its JSON in
ADMM_AXI_WORDS_CASE.

The memory is cocotbext-axi's AXI RAM (read side), reset with the module, holding random bytes
around the blob. A checker watches every clock edge: each AR (the next address, INCR, the beat
size, the longest burst that fits the burst limit, the 4 KB page and the run; stable while it
waits), RREADY high whenever RVALID, never more beats requested than the FIFO has room for, and
every step, in order, equal to the plan's words; outside a run (after a reset, before the next
start) no AR and no step.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus

CASE = json.loads(Path(os.environ["ADMM_AXI_WORDS_CASE"]).read_text())
PAGE = 4096  # AXI4: no burst crosses a 4 KB boundary
RAM_SIZE = 1 << 62  # the RAM decodes the low 62 address bits (a len() must fit an index)
DATA_W, STEP_W, STEPS = CASE["data_w"], CASE["step_w"], CASE["steps"]
BYTES = DATA_W // 8
BPS = -(-STEP_W // DATA_W)  # beats per step
BEATS = STEPS * BPS
BURST = min(CASE["max_burst"], CASE["fifo_depth"], 256, PAGE // BYTES)  # beats of a burst at most
FIRST = (CASE["base"] + CASE["offset"]) & ~(BYTES - 1)  # byte address of the layer's first beat


def expected_steps() -> list[int]:
    """Step t of the plan's words: word t of every group, group 0 in the low bits."""
    words = np.load(CASE["words"])  # (groups, steps) uint32
    return [sum(int(w) << (32 * g) for g, w in enumerate(words[:, t])) for t in range(words.shape[1])]


EXPECTED = expected_steps()


class LatentAxiRamRead(AxiRamRead):
    """cocotbext-axi's AXI RAM, read side, with a read latency: a burst's first beat comes no
    earlier than ``latency`` cycles after its AR handshake; accepted bursts queue in order, so
    their latencies overlap (a pipelined memory controller)."""

    def __init__(self, bus: AxiReadBus, clock, reset, latency: int):
        self.latency = latency
        self.cycle = 0
        self.accepted: Queue = Queue()  # (handshake cycle, beats) of each accepted AR
        self.beats_left = 0  # of the burst being served
        self.fail_at: set[int] = set()  # beat addresses read with SLVERR (and zeros)
        super().__init__(bus, clock, reset, reset_active_level=False, size=RAM_SIZE)
        cocotb.start_soon(self._watch_ar())

    async def _watch_ar(self) -> None:
        ar = self.bus.ar
        while True:
            await RisingEdge(self.clock)
            self.cycle += 1
            if self.reset.value and ar.arvalid.value and ar.arready.value:
                self.accepted.put_nowait((self.cycle, int(ar.arlen.value) + 1))

    async def _read(self, address, length):
        if self.beats_left == 0:  # the first beat of the next burst
            accepted, self.beats_left = await self.accepted.get()
            while self.cycle < accepted + self.latency:
                await RisingEdge(self.clock)
        self.beats_left -= 1
        if address in self.fail_at:
            raise OSError(f"no memory at {address:#x}")  # the slave answers SLVERR
        return await super()._read(address, length)

    def _handle_reset(self, state):
        super()._handle_reset(state)
        if state:  # the slave forgets the bursts it had accepted
            while not self.accepted.empty():
                self.accepted.get_nowait()
            self.beats_left = 0


@dataclass
class Run:
    """What the checker saw of one run (start to last step)."""

    start: int  # cycle start was taken
    next_addr: int = FIRST
    requested: int = 0  # beats of accepted ARs
    received: int = 0  # R beats taken
    steps: int = 0  # steps handed over
    bursts: list[tuple[int, int]] = field(default_factory=list)  # (address, beats)
    first_ar: int | None = None  # cycle ARVALID was first seen high
    r_cycles: list[int] = field(default_factory=list)
    first_step_valid: int | None = None
    step_cycles: list[int] = field(default_factory=list)
    first_error: int | None = None  # cycle rresp_error was first seen high

    @property
    def done(self) -> bool:
        return self.steps == STEPS


class Checker:
    """Checks the module's outputs at every clock edge (see the module docstring)."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0
        self.run: Run | None = None
        self.runs: list[Run] = []
        self.ar_waiting: tuple[int, int] | None = None  # (ARADDR, ARLEN) offered, not yet taken
        self.step_waiting: int | None = None  # step_data offered, not yet taken
        self.expected = EXPECTED  # the steps a run delivers
        cocotb.start_soon(self._watch())

    async def _watch(self) -> None:
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            self.cycle += 1
            if not d.rst_n.value:  # the run, if any, is aborted
                self.run, self.ar_waiting, self.step_waiting = None, None, None
                continue
            run = self.run
            if run is None or run.done:
                self._idle(run)
                if d.start.value and not d.busy.value:
                    self.run = Run(start=self.cycle)
                    self.runs.append(self.run)
                continue
            self._address(run)
            self._data(run)
            self._steps(run)
            outstanding = run.requested - run.steps * BPS  # requested, not yet handed over as steps
            # The FIFO's room, plus the beats of the step being assembled at its output.
            assert outstanding <= CASE["fifo_depth"] + BPS, f"{outstanding} beats requested beyond the FIFO's room"

    def _idle(self, run: Run | None) -> None:
        d = self.dut
        assert not d.m_axi_ARVALID.value, f"cycle {self.cycle}: ARVALID outside a run"
        assert not d.step_valid.value, f"cycle {self.cycle}: step_valid outside a run"
        assert not d.m_axi_RVALID.value, f"cycle {self.cycle}: R beat outside a run"
        if run is not None:  # busy falls with the last step's handshake
            assert not d.busy.value, f"cycle {self.cycle}: busy after the last step"

    def _address(self, run: Run) -> None:
        d = self.dut
        valid, ready = bool(d.m_axi_ARVALID.value), bool(d.m_axi_ARREADY.value)
        if valid and run.first_ar is None:
            run.first_ar = self.cycle
        offered = (int(d.m_axi_ARADDR.value), int(d.m_axi_ARLEN.value)) if valid else None
        if self.ar_waiting is not None:
            assert offered == self.ar_waiting, f"cycle {self.cycle}: AR {offered} changed while waiting"
        self.ar_waiting = offered if valid and not ready else None
        if not (valid and ready):
            return
        addr, beats = offered[0], offered[1] + 1
        assert int(d.m_axi_ARSIZE.value) == BYTES.bit_length() - 1 and int(d.m_axi_ARBURST.value) == 1
        assert int(d.m_axi_ARID.value) == 0
        assert addr == run.next_addr, f"burst at {addr:#x}, expected {run.next_addr:#x}"
        assert addr % PAGE + beats * BYTES <= PAGE, f"burst of {beats} beats at {addr:#x} crosses a 4 KB boundary"
        longest = min(BURST, (PAGE - addr % PAGE) // BYTES, BEATS - run.requested)
        assert beats == longest, f"burst of {beats} beats at {addr:#x}, {longest} fit"
        run.bursts.append((addr, beats))
        run.requested += beats
        run.next_addr += beats * BYTES

    def _data(self, run: Run) -> None:
        d = self.dut
        if d.m_axi_RVALID.value:
            assert d.m_axi_RREADY.value, f"cycle {self.cycle}: RREADY low under RVALID"
            run.received += 1
            run.r_cycles.append(self.cycle)
            assert run.received <= run.requested, "an R beat that was not requested"
        if d.rresp_error.value and run.first_error is None:
            run.first_error = self.cycle

    def _steps(self, run: Run) -> None:
        d = self.dut
        valid = bool(d.step_valid.value)
        if valid and run.first_step_valid is None:
            run.first_step_valid = self.cycle
        offered = int(d.step_data.value) if valid else None
        if self.step_waiting is not None:
            assert offered == self.step_waiting, f"cycle {self.cycle}: step changed while waiting"
        self.step_waiting = offered if valid and not d.step_ready.value else None
        if valid and d.step_ready.value:
            t = run.steps
            assert offered == self.expected[t], f"step {t}: {offered:#x}, expected {self.expected[t]:#x}"
            run.steps += 1
            run.step_cycles.append(self.cycle)


def pauses(rng: random.Random, p: float):
    """A pause generator: paused with probability p each cycle, in short runs."""
    while True:
        paused = rng.random() < p
        for _ in range(rng.randint(1, 4)):
            yield paused


class Bench:
    """Clock, the RAM with the blob, the checker and the step consumer of one test."""

    def __init__(self, dut, seed: int, stalls: bool, latency: int):
        self.dut = dut
        self.rng = random.Random(seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst_n.value = 0
        dut.start.value = 0
        dut.base.value = CASE["base"]
        dut.step_ready.value = 0
        self.ram = LatentAxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst_n, latency)
        for log in (self.ram.log, self.ram.ar_channel.log, self.ram.r_channel.log):
            log.setLevel(logging.WARNING)  # no line per burst
        blob = Path(CASE["blob"]).read_bytes()
        noise = self.rng.randbytes(len(blob) + 2 * PAGE)  # random bytes around the blob: a wrong address shows
        self.ram.write((CASE["base"] - PAGE) % RAM_SIZE, noise)
        self.ram.write(CASE["base"] % RAM_SIZE, blob)
        self.checker = Checker(dut)
        if stalls:
            self.ram.ar_channel.set_pause_generator(pauses(self.rng, 0.3))
            self.ram.r_channel.set_pause_generator(pauses(self.rng, 0.3))
        cocotb.start_soon(self._consume(0.6 if stalls else 1.0))

    async def _consume(self, p: float) -> None:
        while True:
            self.dut.step_ready.value = int(self.rng.random() < p)
            await RisingEdge(self.dut.clk)

    async def reset(self, cycles: int = 3) -> None:
        self.dut.rst_n.value = 0
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst_n.value = 1
        await RisingEdge(self.dut.clk)

    async def start(self) -> Run:
        self.dut.start.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.start.value = 0
        await RisingEdge(self.dut.clk)  # the checker has seen start
        return self.checker.run

    async def finish(self, run: Run, rresp_error: bool = False) -> None:
        limit = 40 * BEATS + 2000
        for _ in range(limit):
            if run.done and not self.dut.busy.value:
                break
            await RisingEdge(self.dut.clk)
        assert run.done, f"{run.steps} of {STEPS} steps after {limit} cycles"
        assert run.requested == run.received == BEATS
        assert bool(self.dut.rresp_error.value) == rresp_error


def check_page_split(run: Run) -> None:
    """The case's addresses make some burst stop short at a 4 KB boundary."""
    assert any((a + n * BYTES) % PAGE == 0 and n < BURST for a, n in run.bursts[:-1]), run.bursts


@cocotb.test()
async def test_timing_and_rate(dut):
    """No pauses, no latency: ARVALID 3 cycles after start, a step 2 cycles after its last beat,
    one beat per cycle once the FIFO's room covers the round trip."""
    bench = Bench(dut, CASE["seed"], stalls=False, latency=0)
    await bench.reset()
    run = await bench.start()
    await bench.finish(run)
    check_page_split(run)
    assert run.first_ar == run.start + 3
    assert run.first_step_valid == run.r_cycles[BPS - 1] + 2
    span = run.step_cycles[-1] - run.step_cycles[0]
    rate = (STEPS - 1) * BPS / span
    dut._log.info("%d beats in %d cycles from start to last step; %.3f beats per cycle after the first step",
                  BEATS, run.step_cycles[-1] - run.start, rate)
    assert rate >= CASE["min_rate"], f"{rate:.3f} beats per cycle, expected >= {CASE['min_rate']}"


@cocotb.test()
async def test_two_runs_under_stalls(dut):
    """Random ARREADY and RVALID pauses, read latency, random step_ready; base changes and start
    pulses during the first run change nothing; a second start right after it rereads the layer
    from its first beat."""
    bench = Bench(dut, CASE["seed"] + 1, stalls=True, latency=CASE["latency"])
    await bench.reset()
    first = await bench.start()
    dut.base.value = CASE["base"] ^ 0x5_0000  # base is sampled at start only
    while first.steps < STEPS // 2:
        await RisingEdge(dut.clk)
    await bench.start()  # ignored while busy: the checker would see a restart
    await bench.finish(first)
    dut.base.value = CASE["base"]
    second = await bench.start()
    await bench.finish(second)
    assert [r.start for r in bench.checker.runs] == [first.start, second.start]
    check_page_split(second)


@cocotb.test()
async def test_reset_mid_run(dut):
    """Reset while bursts are in flight and steps half delivered: nothing moves until the next
    start, whose run delivers every step from the first."""
    bench = Bench(dut, CASE["seed"] + 2, stalls=True, latency=CASE["latency"])
    await bench.reset()
    aborted = await bench.start()
    while not (aborted.steps > 0 and aborted.requested - aborted.received >= 2):
        await RisingEdge(dut.clk)
    await bench.reset(cycles=2)
    assert not dut.busy.value and not dut.step_valid.value and not dut.m_axi_ARVALID.value
    await ClockCycles(dut.clk, 20)  # the checker: no AR, no R beat, no step while idle
    run = await bench.start()
    await bench.finish(run)
    assert len(bench.checker.runs) == 2 and bench.checker.runs[1] is run


@cocotb.test()
async def test_rresp_error(dut):
    """A beat answered with SLVERR sets rresp_error the cycle after its R handshake; its step
    still comes (with the slave's zeros); the flag stays through a clean run, reset clears it."""
    bench = Bench(dut, CASE["seed"] + 3, stalls=False, latency=0)
    bad = BEATS // 2 + 1
    bench.ram.fail_at.add(FIRST + bad * BYTES)
    step, beat = divmod(bad, BPS)
    bench.checker.expected = list(EXPECTED)
    bench.checker.expected[step] &= ~(((1 << DATA_W) - 1) << (DATA_W * beat))
    await bench.reset()
    run = await bench.start()
    await bench.finish(run, rresp_error=True)
    assert run.first_error == run.r_cycles[bad] + 1
    bench.ram.fail_at.clear()
    bench.checker.expected = EXPECTED
    await bench.finish(await bench.start(), rresp_error=True)
    await bench.reset()
    assert not dut.rresp_error.value
