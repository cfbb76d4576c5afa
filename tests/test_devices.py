"""Unit tests of the devices of docs/board.md (aemu/hw/devices/), on a fake
machine context with a manual cycle counter.

Timing convention (docs/board.md, "Time"): an MMIO access made by the
instruction that runs when ``ctx.now() == t`` reads the state after ``t``
cycles; a write takes effect at cycle ``t + 1``, when that instruction
completes.  Here "an access at t" means: ``ctx.run_to(t)`` (which fires every
callback due at or before ``t``), then the access.
"""
from __future__ import annotations

import heapq
import random
import re
from typing import Callable

import pytest

from aemu.hw.device import BusError
from aemu.hw.devices import DEVICE_KINDS, Icu, Timer, Uart, Watchdog

MHZ = 1_000_000


# -- the fake machine -------------------------------------------------------------

class FakeHandle:
    def __init__(self, cycle: int, callback: Callable[[], None], seq: int) -> None:
        self.cycle = cycle
        self.callback = callback
        self.cancelled = False
        self.seq = seq

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "FakeHandle") -> bool:
        return (self.cycle, self.seq) < (other.cycle, other.seq)


class FakeLine:
    """An IRQ line that records every level change as (cycle, level)."""

    def __init__(self, ctx: "FakeContext", n: int) -> None:
        self.ctx = ctx
        self.n = n
        self.level = False
        self.history: list[tuple[int, bool]] = []

    def set(self, level: bool) -> None:
        assert isinstance(level, bool)
        if level != self.level:
            self.level = level
            self.history.append((self.ctx.now(), level))


class FakeContext:
    def __init__(self, cpu_hz: int = 100 * MHZ) -> None:
        self.cpu_hz = cpu_hz
        self.cycle = 0
        self._heap: list[FakeHandle] = []
        self._seq = 0
        self.fired: list[int] = []          # cycles at which a callback ran
        self.scheduled: list[int] = []      # every cycle asked for, in order
        self.lag = 0                        # run callbacks this many cycles late
        self.lines: dict[int, FakeLine] = {}
        self.nmis: list[int] = []
        self.resets: list[int] = []
        self.warnings: list[str] = []
        self.shadows: dict[tuple, tuple[int, int, int]] = {}

    def now(self) -> int:
        return self.cycle

    def schedule(self, cycle: int, callback: Callable[[], None]) -> FakeHandle:
        self._seq += 1
        self.scheduled.append(cycle)
        handle = FakeHandle(cycle, callback, self._seq)
        heapq.heappush(self._heap, handle)
        return handle

    def irq(self, n: int) -> FakeLine:
        assert 0 <= n < 32
        return self.lines.setdefault(n, FakeLine(self, n))

    def raise_nmi(self) -> None:
        self.nmis.append(self.cycle)

    def request_reset(self) -> None:
        self.resets.append(self.cycle)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def shadow(self, device, offset: int, size: int, value: int | None, *,
               before: int = 0, at_cycle: int = 0) -> None:
        if value is None:
            self.shadows.pop((device.name, offset, size), None)
        else:
            self.shadows[(device.name, offset, size)] = (value, before, at_cycle)

    def shadow_read(self, device, offset: int, size: int) -> int | None:
        """What the CPU core would answer from the shadow now (None: no shadow)."""
        entry = self.shadows.get((device.name, offset, size))
        if entry is None:
            return None
        value, before, at = entry
        return before if self.cycle < at else value

    # driving time
    def run_to(self, target: int) -> None:
        """Advance the counter to ``target``, firing due callbacks in cycle order
        (each with now() at its own cycle, or now() if it was due in the past)."""
        assert target >= self.cycle, "time does not go back"
        heap = self._heap
        while heap and heap[0].cycle + self.lag <= target:
            handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            handle.cancelled = True
            self.cycle = max(self.cycle, handle.cycle + self.lag)
            self.fired.append(self.cycle)
            handle.callback()
        self.cycle = target

    def advance(self, n: int) -> None:
        self.run_to(self.cycle + n)

    def pending(self) -> list[int]:
        return sorted(h.cycle for h in self._heap if not h.cancelled)


class Recorder:
    """deliver()/nmi() callbacks of an ICU."""

    def __init__(self) -> None:
        self.vectors: list[int] = []
        self.nmis = 0

    def deliver(self, vector: int) -> None:
        self.vectors.append(vector)

    def nmi(self) -> None:
        self.nmis += 1


def make_icu(ctx: FakeContext | None = None) -> tuple[Icu, Recorder]:
    rec = Recorder()
    return Icu("icu", 0x1400000, ctx or FakeContext(), deliver=rec.deliver, nmi=rec.nmi), rec


def make_timer(ctx: FakeContext, irq: int = 0) -> Timer:
    return Timer("timer0", 0x1400100, ctx, irq=irq)


def make_uart(ctx: FakeContext, **kw) -> Uart:
    return Uart("uart0", 0x1400300, ctx, irq_rx=2, irq_tx=3, **kw)


def make_wdt(ctx: FakeContext) -> Watchdog:
    return Watchdog("wdt", 0x1400400, ctx)


class Sink:
    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx
        self.data = bytearray()
        self.times: list[int] = []

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes) and len(data) == 1
        self.data += data
        self.times.append(self.ctx.now())


def w16(dev, off: int, value: int) -> None:
    dev.write(off, 2, value)


def r16(dev, off: int) -> int:
    return dev.read(off, 2)


# -- the package ---------------------------------------------------------------------

def test_device_kinds():
    assert DEVICE_KINDS == {"icu": Icu, "timer": Timer, "uart": Uart, "watchdog": Watchdog}
    assert {cls.kind for cls in DEVICE_KINDS.values()} == set(DEVICE_KINDS)
    ctx = FakeContext()
    for dev in (make_icu(ctx)[0], make_timer(ctx), make_uart(ctx), make_wdt(ctx)):
        assert dev.size == 0x100 and dev.base >= 0x1400000


# == ICU ================================================================================

ICU_IVCT, ICU_PEND, ICU_ENABLE, ICU_NMISTAT, ICU_PRIO = 0x00, 0x04, 0x08, 0x0C, 0x20


def icu_set_prio(icu: Icu, line: int, prio: int) -> None:
    icu.write(ICU_PRIO + line, 1, prio)


def test_icu_power_on():
    icu, rec = make_icu()
    assert [r16(icu, o) for o in (ICU_IVCT, ICU_NMISTAT)] == [0, 0]
    assert icu.read(ICU_PEND, 4) == 0 and icu.read(ICU_ENABLE, 4) == 0
    assert all(icu.read(ICU_PRIO + n, 1) == 0 for n in range(32))
    assert rec.vectors == [] and rec.nmis == 0


def test_icu_line_objects():
    icu, _ = make_icu()
    line = icu.line(5)
    assert icu.line(5) is line and line.level is False
    line.set(True)
    assert line.level is True and icu.read(ICU_PEND, 4) == 1 << 5
    line.set(False)
    assert line.level is False and icu.read(ICU_PEND, 4) == 0
    for bad in (-1, 32, 100):
        with pytest.raises(ValueError, match="IRQ line"):
            icu.line(bad)


def test_icu_enable_masks():
    icu, rec = make_icu()
    icu.line(3).set(True)
    assert r16(icu, ICU_IVCT) == 0 and rec.vectors == []
    assert icu.read(ICU_PEND, 4) == 1 << 3          # pending even though disabled
    icu.write(ICU_ENABLE, 4, 1 << 3)
    assert r16(icu, ICU_IVCT) == 16 + 3 and rec.vectors == [19]
    icu.write(ICU_ENABLE, 4, 0)
    assert r16(icu, ICU_IVCT) == 0 and rec.vectors == [19, 0]
    icu.write(ICU_ENABLE, 4, 0xFFFFFFFF)
    assert rec.vectors == [19, 0, 19]
    icu.line(3).set(False)
    assert r16(icu, ICU_IVCT) == 0 and rec.vectors == [19, 0, 19, 0]


@pytest.mark.parametrize("prios, up, expect", [
    ({}, [7, 2, 30], 2),                             # all 0: the lowest line
    ({7: 1}, [7, 2, 30], 7),
    ({30: 15, 7: 14}, [7, 2, 30], 30),
    ({2: 5, 7: 5, 30: 5}, [30, 7, 2], 2),            # equal: the lowest line
    ({2: 5, 7: 5, 30: 6}, [30, 7, 2], 30),
    ({0: 0, 31: 15}, [0, 31], 31),
    ({0: 15, 31: 15}, [31, 0], 0),
    ({9: 3, 10: 3}, [10, 9], 9),
])
def test_icu_priorities(prios, up, expect):
    icu, rec = make_icu()
    icu.write(ICU_ENABLE, 4, 0xFFFFFFFF)
    for line, prio in prios.items():
        icu_set_prio(icu, line, prio)
    for line in up:
        icu.line(line).set(True)
    assert r16(icu, ICU_IVCT) == 16 + expect
    assert rec.vectors[-1] == 16 + expect
    assert all(a != b for a, b in zip([0] + rec.vectors, rec.vectors))   # only changes


def test_icu_deliver_only_on_change():
    icu, rec = make_icu()
    icu.write(ICU_ENABLE, 4, 0xFFFFFFFF)
    icu_set_prio(icu, 4, 9)
    icu.line(4).set(True)
    assert rec.vectors == [20]
    icu.line(4).set(True)                       # no change
    icu.line(8).set(True)                       # lower priority: IVCT unchanged
    icu_set_prio(icu, 8, 9)                     # equal now, 4 still wins
    icu.write(ICU_ENABLE, 4, 0xFFFFFFFF)        # rewrite, nothing changes
    assert rec.vectors == [20]
    icu_set_prio(icu, 8, 10)                    # now 8 wins
    assert rec.vectors == [20, 24]
    icu.line(8).set(False)
    assert rec.vectors == [20, 24, 20]
    icu.line(8).set(False)
    icu.line(4).set(False)
    icu.line(4).set(False)
    assert rec.vectors == [20, 24, 20, 0]
    assert r16(icu, ICU_IVCT) == 0


def test_icu_nesting_by_priority():
    """A higher-priority line arriving while a lower one is up takes over, and
    the lower one comes back when it drops (what nesting relies on)."""
    icu, rec = make_icu()
    icu.write(ICU_ENABLE, 4, 0b111)
    icu_set_prio(icu, 0, 1)
    icu_set_prio(icu, 1, 2)
    icu_set_prio(icu, 2, 3)
    icu.line(0).set(True)
    icu.line(1).set(True)
    icu.line(2).set(True)
    icu.line(2).set(False)
    icu.line(1).set(False)
    icu.line(0).set(False)
    assert rec.vectors == [16, 17, 18, 17, 16, 0]


def test_icu_prio_register_layout():
    icu, rec = make_icu()
    w16(icu, ICU_PRIO + 6, 0x0A05)               # lines 6 (low byte) and 7
    assert icu.read(ICU_PRIO + 6, 1) == 5 and icu.read(ICU_PRIO + 7, 1) == 10
    assert icu.prio[6] == 5 and icu.prio[7] == 10
    icu.write(ICU_PRIO + 7, 1, 3)                # byte write leaves the other line alone
    assert r16(icu, ICU_PRIO + 6) == 0x0305
    icu.write(ICU_PRIO + 31, 1, 15)
    assert r16(icu, ICU_PRIO + 30) == 0x0F00
    w16(icu, ICU_PRIO, 0xFFFF)                   # only 4 bits per line
    assert r16(icu, ICU_PRIO) == 0x0F0F
    icu.write(ICU_PRIO + 1, 1, 0x1F)
    assert icu.read(ICU_PRIO + 1, 1) == 0x0F
    assert rec.vectors == []


def test_icu_pend_and_enable_halves():
    icu, _ = make_icu()
    for n in (0, 15, 16, 31):
        icu.line(n).set(True)
    assert icu.read(ICU_PEND, 4) == 0x80018001
    assert icu.read(ICU_PEND, 2) == 0x8001 and icu.read(ICU_PEND + 2, 2) == 0x8001
    icu.write(ICU_ENABLE + 2, 2, 0x1234)
    assert icu.read(ICU_ENABLE, 4) == 0x12340000
    icu.write(ICU_ENABLE, 2, 0xABCD)
    assert icu.read(ICU_ENABLE, 4) == 0x1234ABCD
    assert icu.read(ICU_ENABLE + 2, 2) == 0x1234 and icu.read(ICU_ENABLE, 2) == 0xABCD


def test_icu_enable_high_half_delivers():
    icu, rec = make_icu()
    icu.line(20).set(True)
    icu.write(ICU_ENABLE + 2, 2, 1 << 4)
    assert rec.vectors == [36] and r16(icu, ICU_IVCT) == 36


def test_icu_nmi():
    icu, rec = make_icu()
    assert r16(icu, ICU_NMISTAT) == 0
    icu.raise_nmi()
    assert rec.nmis == 1 and r16(icu, ICU_NMISTAT) == 1
    w16(icu, ICU_NMISTAT, 0)                 # writing 0 clears nothing
    assert r16(icu, ICU_NMISTAT) == 1
    w16(icu, ICU_NMISTAT, 0xFFFE)
    assert r16(icu, ICU_NMISTAT) == 1
    w16(icu, ICU_NMISTAT, 1)
    assert r16(icu, ICU_NMISTAT) == 0
    icu.raise_nmi()
    icu.raise_nmi()
    assert rec.nmis == 3 and r16(icu, ICU_NMISTAT) == 1
    assert rec.vectors == []                 # NMIs do not touch the maskable vector


def test_icu_reset():
    icu, rec = make_icu()
    icu.write(ICU_ENABLE, 4, 0xFF)
    icu_set_prio(icu, 2, 7)
    icu.line(2).set(True)
    icu.raise_nmi()
    assert rec.vectors == [18]
    line = icu.line(2)
    icu.reset()
    assert rec.vectors == [18, 0]
    assert icu.read(ICU_PEND, 4) == 0 and icu.read(ICU_ENABLE, 4) == 0
    assert r16(icu, ICU_NMISTAT) == 0 and r16(icu, ICU_IVCT) == 0
    assert icu.read(ICU_PRIO + 2, 1) == 0 and line.level is False
    assert icu.line(2) is line                # devices keep their line objects
    icu.reset()
    assert rec.vectors == [18, 0]             # nothing changed: no delivery


def test_icu_post_load():
    icu, rec = make_icu()
    icu.pend, icu.enable = 1 << 9 | 1 << 4, 1 << 9 | 1 << 4
    icu.prio = [0] * 32
    icu.prio[9] = 1
    icu.post_load()
    assert rec.vectors == [25] and r16(icu, ICU_IVCT) == 25
    icu_set_prio(icu, 4, 2)                   # the registers see the restored list
    assert r16(icu, ICU_PRIO + 8) == 0x0100 and icu.read(ICU_PRIO + 4, 1) == 2
    assert rec.vectors == [25, 20]


def _icu_model(pend: int, enable: int, prio: list[int]) -> int:
    best = None
    for n in range(32):
        if pend >> n & 1 and enable >> n & 1:
            if best is None or prio[n] > prio[best]:
                best = n
    return 0 if best is None else 16 + best


@pytest.mark.parametrize("seed", range(12))
def test_icu_random_against_model(seed):
    rnd = random.Random(seed)
    icu, rec = make_icu()
    pend, enable, prio = 0, 0, [0] * 32
    expected: list[int] = []
    current = 0
    for _ in range(300):
        op = rnd.randrange(4)
        if op == 0:
            n, level = rnd.randrange(32), rnd.random() < 0.5
            icu.line(n).set(level)
            pend = pend | 1 << n if level else pend & ~(1 << n)
        elif op == 1:
            enable = rnd.getrandbits(32) & rnd.getrandbits(32)
            icu.write(ICU_ENABLE, 4, enable)
        elif op == 2:
            n, p = rnd.randrange(32), rnd.randrange(4)    # few levels: many ties
            icu_set_prio(icu, n, p)
            prio[n] = p
        else:
            k, value = rnd.randrange(16), rnd.getrandbits(16)
            w16(icu, ICU_PRIO + 2 * k, value)
            prio[2 * k], prio[2 * k + 1] = value & 15, value >> 8 & 15
        vector = _icu_model(pend, enable, prio)
        if vector != current:
            expected.append(vector)
            current = vector
        assert r16(icu, ICU_IVCT) == vector
        assert icu.read(ICU_PEND, 4) == pend
    assert rec.vectors == expected


# == TIMER ===================================================================================

T_CTRL, T_PRESCALE, T_RELOAD, T_COUNT, T_STATUS = 0x00, 0x02, 0x04, 0x08, 0x0C
EN, PERIODIC, IE = 1, 2, 4


def timer_program(tmr: Timer, reload: int, prescale: int) -> None:
    tmr.write(T_RELOAD, 4, reload)
    w16(tmr, T_PRESCALE, prescale)


def timer_ref(reload: int, prescale: int, periodic: bool, cycles: int) -> tuple[list[int], list[int]]:
    """A cycle-by-cycle model: COUNT after k cycles of counting (k = 0 is the
    cycle the enabling write completed) and the k of every expiry."""
    count, pre, running = reload, 0, True
    counts, expiries = [count], []
    for k in range(1, cycles + 1):
        if running:
            pre += 1
            if pre == prescale + 1:
                pre = 0
                if count == 0:
                    expiries.append(k)
                    if periodic:
                        count = reload
                    else:
                        running = False
                else:
                    count -= 1
        counts.append(count)
    return counts, expiries


TIMER_CASES = [(0, 0), (1, 0), (0, 1), (2, 0), (0, 3), (3, 2), (5, 0), (2, 4), (7, 7), (1, 9)]


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "oneshot"])
@pytest.mark.parametrize("reload, prescale", TIMER_CASES)
@pytest.mark.parametrize("t", [0, 13])
def test_timer_cycle_exact(reload, prescale, periodic, t):
    """COUNT at every cycle, STATUS.EXP and the expiry callbacks match the
    cycle-by-cycle model; the first expiry is t + 1 + (r+1)(p+1)."""
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, reload, prescale)
    period = (reload + 1) * (prescale + 1)
    ctx.run_to(t)
    w16(tmr, T_CTRL, EN | (PERIODIC if periodic else 0))
    start = t + 1
    cycles = 3 * period + 5
    counts, expiries = timer_ref(reload, prescale, periodic, cycles)
    assert expiries[0] == period                     # the hand formula agrees with the model
    if periodic:
        assert expiries[:3] == [period, 2 * period, 3 * period]
    else:
        assert expiries == [period]
    for k in range(0, cycles + 1):
        ctx.run_to(start + k)
        assert tmr.read(T_COUNT, 4) == counts[k], f"COUNT after {k} cycles"
        assert r16(tmr, T_STATUS) == (1 if k >= period else 0)
        assert bool(r16(tmr, T_CTRL) & EN) == (periodic or k < period)
    assert ctx.fired == [start + e for e in expiries]
    if not periodic:
        assert r16(tmr, T_CTRL) == 0 and tmr.read(T_COUNT, 4) == 0
        assert ctx.pending() == []


@pytest.mark.parametrize("reload, prescale, t", [
    (99_999, 0, 0),                # 1 kHz at 100 MHz
    (999, 99, 5),
    (1, 65535, 1000),
    (0xFFFFFFFF, 0xFFFF, 7),
    (12345, 678, 999_999),
])
def test_timer_large_periods(reload, prescale, t):
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, reload, prescale)
    w16(tmr, T_CTRL, IE)                          # not running yet: nothing scheduled
    assert ctx.pending() == []
    ctx.run_to(t)
    w16(tmr, T_CTRL, EN | PERIODIC | IE)
    period = (reload + 1) * (prescale + 1)
    first = t + 1 + period
    assert ctx.pending() == [first]
    ctx.run_to(first - 1)
    assert ctx.fired == [] and tmr.read(T_COUNT, 4) == 0
    ctx.run_to(first)
    assert ctx.fired == [first] and tmr.read(T_COUNT, 4) == reload
    ctx.run_to(first + 4 * period)
    assert ctx.fired == [first + k * period for k in range(5)]
    # in the middle of a period
    mid = first + 4 * period + period // 2
    ctx.run_to(mid)
    assert tmr.read(T_COUNT, 4) == reload - (period // 2) // (prescale + 1)
    assert ctx.lines[0].history == [(first, True)]


@pytest.mark.parametrize("lag", [1, 7])
def test_timer_late_callbacks_do_not_drift(lag):
    """Even if a callback runs late, the next deadline is counted from the
    expiry cycle, not from when the callback ran."""
    ctx = FakeContext()
    ctx.lag = lag
    tmr = make_timer(ctx)
    timer_program(tmr, 9, 1)                           # period 20
    ctx.run_to(4)
    w16(tmr, T_CTRL, EN | PERIODIC)
    ctx.run_to(200)
    assert ctx.scheduled[:6] == [5 + 20 * k for k in range(1, 7)]
    assert ctx.fired[:5] == [5 + 20 * k + lag for k in range(1, 6)]


def test_timer_irq_follows_exp_and_ie():
    ctx = FakeContext()
    tmr = make_timer(ctx, irq=5)
    line = ctx.lines[5]
    timer_program(tmr, 9, 0)                           # period 10
    ctx.run_to(100)
    w16(tmr, T_CTRL, EN | PERIODIC)                    # expiries at 111, 121, 131, ...
    ctx.run_to(111)
    assert r16(tmr, T_STATUS) == 1 and line.level is False   # IE clear
    ctx.run_to(115)
    tmr_ctrl_keep = r16(tmr, T_CTRL)
    assert tmr_ctrl_keep == EN | PERIODIC
    # setting IE (this restarts the count: start 116, expiries 126, 136)
    w16(tmr, T_CTRL, EN | PERIODIC | IE)
    assert line.history == [(115, True)]
    ctx.run_to(120)
    w16(tmr, T_STATUS, 0)                              # writing 0 clears nothing
    assert line.level is True and r16(tmr, T_STATUS) == 1
    w16(tmr, T_STATUS, 1)
    assert line.level is False and r16(tmr, T_STATUS) == 0
    ctx.run_to(125)
    assert line.level is False
    ctx.run_to(126)
    assert line.level is True and r16(tmr, T_STATUS) == 1
    assert line.history == [(115, True), (120, False), (126, True)]
    ctx.run_to(130)
    w16(tmr, T_STATUS, 1)
    ctx.run_to(136)
    assert line.history[-2:] == [(130, False), (136, True)]
    ctx.run_to(140)
    w16(tmr, T_CTRL, EN | PERIODIC)                    # IE off: line drops, EXP stays
    assert line.level is False and r16(tmr, T_STATUS) == 1
    assert ctx.fired == [111, 126, 136]


def test_timer_status_w1c_keeps_running():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 4, 1)                            # period 10
    w16(tmr, T_CTRL, EN | PERIODIC | IE)                # expiries 11, 21, 31
    ctx.run_to(11)
    w16(tmr, T_STATUS, 1)
    ctx.run_to(20)
    assert r16(tmr, T_STATUS) == 0
    ctx.run_to(21)
    assert r16(tmr, T_STATUS) == 1
    assert ctx.lines[0].history == [(11, True), (11, False), (21, True)]


def test_timer_reload_change_takes_effect_at_next_reload():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 9, 0)
    w16(tmr, T_CTRL, EN | PERIODIC)                      # start 1, first expiry 11
    ctx.run_to(5)
    assert tmr.read(T_COUNT, 4) == 5
    tmr.write(T_RELOAD, 4, 4)
    assert tmr.read(T_RELOAD, 4) == 4
    ctx.run_to(6)
    assert tmr.read(T_COUNT, 4) == 4                     # still counting the old period
    ctx.run_to(11)
    assert tmr.read(T_COUNT, 4) == 4                     # reloaded with the new value
    ctx.run_to(12)
    assert tmr.read(T_COUNT, 4) == 3
    ctx.run_to(30)
    assert ctx.fired == [11, 16, 21, 26]


def test_timer_prescale_change_takes_effect_at_next_reload():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 3, 0)
    w16(tmr, T_CTRL, EN | PERIODIC)                      # start 1, expiry 5
    ctx.run_to(2)
    w16(tmr, T_PRESCALE, 1)                              # next periods: 8 cycles
    assert r16(tmr, T_PRESCALE) == 1
    ctx.run_to(3)
    assert tmr.read(T_COUNT, 4) == 1
    ctx.run_to(5)
    assert tmr.read(T_COUNT, 4) == 3
    ctx.run_to(6)
    assert tmr.read(T_COUNT, 4) == 3                     # now one tick per 2 cycles
    ctx.run_to(7)
    assert tmr.read(T_COUNT, 4) == 2
    ctx.run_to(30)
    assert ctx.fired == [5, 13, 21, 29]


@pytest.mark.parametrize("rewrite_at", [1, 5, 10, 11])
def test_timer_ctrl_write_restarts(rewrite_at):
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 9, 0)
    w16(tmr, T_CTRL, EN | PERIODIC)                      # expiry at 11
    ctx.run_to(rewrite_at)
    w16(tmr, T_CTRL, EN | PERIODIC)                      # restart from RELOAD at rewrite_at + 1
    ctx.run_to(rewrite_at + 1)
    assert tmr.read(T_COUNT, 4) == 9
    ctx.run_to(rewrite_at + 21)
    expected = [c for c in [11] if c <= rewrite_at]      # an expiry already past stays
    assert ctx.fired == expected + [rewrite_at + 11, rewrite_at + 21]


def test_timer_write_on_expiry_cycle_wins():
    """An instruction that restarts the timer at now() == expiry - 1 completes
    at the expiry cycle, before the expiry: the write wins, no expiry."""
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 4, 0)
    w16(tmr, T_CTRL, EN)                                 # one-shot, expiry at 6
    ctx.run_to(5)
    w16(tmr, T_CTRL, 0)                                  # stop, taking effect at 6
    ctx.run_to(100)
    assert ctx.fired == [] and r16(tmr, T_STATUS) == 0
    assert tmr.read(T_COUNT, 4) == 0


def test_timer_stop_freezes_count_and_restart():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 9, 1)
    w16(tmr, T_CTRL, EN | PERIODIC)                      # start 1, tick every 2 cycles
    ctx.run_to(6)
    assert tmr.read(T_COUNT, 4) == 7                     # 5 cycles: 2 ticks
    w16(tmr, T_CTRL, PERIODIC)                           # stop at 7: 3 ticks
    ctx.run_to(7)
    assert tmr.read(T_COUNT, 4) == 6
    ctx.run_to(1000)
    assert tmr.read(T_COUNT, 4) == 6 and ctx.fired == [] and ctx.pending() == []
    w16(tmr, T_CTRL, PERIODIC)                           # still stopped: unchanged
    assert tmr.read(T_COUNT, 4) == 6
    tmr.write(T_RELOAD, 4, 3)                            # RELOAD while stopped: COUNT follows
    assert tmr.read(T_COUNT, 4) == 3
    tmr.write(T_RELOAD + 2, 2, 1)                        # high half
    assert tmr.read(T_COUNT, 4) == 0x10003 and tmr.read(T_RELOAD, 4) == 0x10003
    tmr.write(T_RELOAD, 2, 1)                            # low half
    assert tmr.read(T_RELOAD, 4) == 0x10001
    assert tmr.read(T_RELOAD, 2) == 1 and tmr.read(T_RELOAD + 2, 2) == 1
    assert tmr.read(T_COUNT, 2) == 1 and tmr.read(T_COUNT + 2, 2) == 1
    tmr.write(T_RELOAD, 4, 1)
    w16(tmr, T_CTRL, EN)                                 # one-shot from 1001: expiry at 1005
    ctx.run_to(1005)
    assert ctx.fired == [1005]


def test_timer_oneshot_rearm():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 2, 0)
    w16(tmr, T_CTRL, EN | IE)                            # expiry 4
    ctx.run_to(50)
    assert r16(tmr, T_CTRL) == IE and tmr.read(T_COUNT, 4) == 0
    tmr.write(T_RELOAD, 4, 7)                            # stopped: COUNT shows it
    assert tmr.read(T_COUNT, 4) == 7
    w16(tmr, T_CTRL, EN | IE)                            # start 51, expiry 59
    ctx.run_to(200)
    assert ctx.fired == [4, 59]
    assert ctx.lines[0].history == [(4, True)]           # EXP never cleared


def test_timer_ctrl_masks_and_registers():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    w16(tmr, T_CTRL, 0xFFF8 | PERIODIC)
    assert r16(tmr, T_CTRL) == PERIODIC
    w16(tmr, T_PRESCALE, 0xFFFF)
    assert r16(tmr, T_PRESCALE) == 0xFFFF
    tmr.write(T_RELOAD, 4, 0xDEADBEEF)
    assert tmr.read(T_RELOAD, 4) == 0xDEADBEEF
    w16(tmr, T_STATUS, 0xFFFF)
    assert r16(tmr, T_STATUS) == 0


def test_timer_reset():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    timer_program(tmr, 3, 3)
    w16(tmr, T_CTRL, EN | PERIODIC | IE)
    ctx.run_to(17)                                       # expired once (at 17)
    assert ctx.lines[0].level is True
    tmr.reset()
    assert ctx.lines[0].level is False
    assert [r16(tmr, o) for o in (T_CTRL, T_PRESCALE, T_STATUS)] == [0, 0, 0]
    assert tmr.read(T_RELOAD, 4) == 0 and tmr.read(T_COUNT, 4) == 0
    ctx.run_to(1000)
    assert ctx.fired == [17]
    # and it works again after the reset
    timer_program(tmr, 0, 0)
    w16(tmr, T_CTRL, EN)
    ctx.run_to(1002)
    assert ctx.fired == [17, 1002]


def test_timer_post_load():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    tmr.ctrl, tmr.reload, tmr.prescale, tmr.status = EN | PERIODIC | IE, 4, 0, 1
    tmr.start_cycle, tmr.count_at_start, tmr.prescale_in_use = 10, 9, 1
    tmr.post_load()
    assert ctx.lines[0].level is True
    assert ctx.pending() == [30]
    ctx.run_to(20)
    assert tmr.read(T_COUNT, 4) == 4
    ctx.run_to(40)
    assert ctx.fired == [30, 35, 40]


def test_timer_through_icu():
    """Timer -> ICU line -> deliver(), with the ICU providing ctx.irq()."""
    ctx = FakeContext()
    icu, rec = make_icu(ctx)
    ctx.irq = icu.line                                    # type: ignore[method-assign]
    tmr = make_timer(ctx, irq=1)
    icu.write(ICU_ENABLE, 4, 2)
    timer_program(tmr, 99, 0)
    w16(tmr, T_CTRL, EN | PERIODIC | IE)
    ctx.run_to(100)
    assert rec.vectors == []
    ctx.run_to(101)
    assert rec.vectors == [17] and r16(icu, ICU_IVCT) == 17
    w16(tmr, T_STATUS, 1)
    assert rec.vectors == [17, 0]
    ctx.run_to(201)
    assert rec.vectors == [17, 0, 17]


# == UART =====================================================================================

U_DATA, U_STATUS, U_CTRL, U_BAUD = 0x00, 0x02, 0x04, 0x06
TXE, RXA, OVR = 1, 2, 4
TXIE, RXIE = 1, 2


def test_uart_power_on():
    ctx = FakeContext()
    uart = make_uart(ctx)
    assert r16(uart, U_STATUS) == TXE
    assert r16(uart, U_CTRL) == 0 and r16(uart, U_BAUD) == 1152
    assert r16(uart, U_DATA) == 0
    assert uart.rx_space() == 16
    assert ctx.lines[2].level is False and ctx.lines[3].level is False
    assert make_uart(FakeContext(), baud=9600).read(U_BAUD, 2) == 96
    assert make_uart(FakeContext(), baud=0).read(U_BAUD, 2) == 0


@pytest.mark.parametrize("baud", [-100, 115201, 50, 6553600, "9600"])
def test_uart_bad_baud(baud):
    with pytest.raises(ValueError, match="baud"):
        make_uart(FakeContext(), baud=baud)


@pytest.mark.parametrize("cpu_hz, baud_reg, busy", [
    (100 * MHZ, 1152, 8680),        # 115200 baud: 1e9 / 115200 = 8680.6
    (100 * MHZ, 96, 104166),        # 9600 baud
    (100 * MHZ, 0xFFFF, 152),       # 6553500 baud
    (1 * MHZ, 1152, 86),
    (12 * MHZ, 30, 40000),          # 3000 baud
    (48 * MHZ, 5, 960000),          # 500 baud
    (1 * MHZ, 100, 1000),           # 10000 baud: exact
])
@pytest.mark.parametrize("t", [0, 77])
def test_uart_tx_timing(cpu_hz, baud_reg, busy, t):
    ctx = FakeContext(cpu_hz)
    uart = make_uart(ctx)
    sink = Sink(ctx)
    uart.attach(sink)
    w16(uart, U_BAUD, baud_reg)
    assert uart.tx_cycles() == busy
    ctx.run_to(t)
    w16(uart, U_DATA, 0x141)                       # the low byte goes out
    assert bytes(sink.data) == b"A" and sink.times == [t]
    ctx.run_to(t + 1)
    assert r16(uart, U_STATUS) & TXE == 0
    ctx.run_to(t + busy)
    assert r16(uart, U_STATUS) & TXE == 0          # busy for exactly `busy` cycles
    ctx.run_to(t + busy + 1)
    assert r16(uart, U_STATUS) & TXE == TXE
    assert ctx.fired == []          # without TXIE no timer runs: TXE is computed (and shadowed)
    w16(uart, U_DATA, ord("B"))
    assert bytes(sink.data) == b"AB" and sink.times == [t, t + busy + 1]


def test_uart_polled_stream_timing():
    """A busy-wait driver: each byte can go out `busy` + 1 cycles after the last."""
    ctx = FakeContext(1 * MHZ)
    uart = make_uart(ctx)
    sink = Sink(ctx)
    uart.attach(sink)
    busy = 86
    for ch in b"hello":
        while not r16(uart, U_STATUS) & TXE:
            ctx.advance(1)
        w16(uart, U_DATA, ch)
        ctx.advance(1)
    assert bytes(sink.data) == b"hello"
    assert sink.times == [k * (busy + 1) for k in range(5)]


def test_uart_write_while_busy_is_dropped():
    ctx = FakeContext()
    uart = make_uart(ctx)
    sink = Sink(ctx)
    uart.attach(sink)
    w16(uart, U_DATA, 1)
    ctx.run_to(10)
    w16(uart, U_DATA, 2)
    w16(uart, U_DATA, 3)
    assert bytes(sink.data) == b"\x01"
    assert uart.tx_busy_until == 8681              # not restarted (no timer without TXIE)
    assert len(ctx.warnings) == 1 and "uart0" in ctx.warnings[0] and "TXE" in ctx.warnings[0]
    ctx.run_to(8681)
    w16(uart, U_DATA, 4)
    assert bytes(sink.data) == b"\x01\x04"


def test_uart_baud_zero_is_instant():
    ctx = FakeContext()
    uart = make_uart(ctx)
    sink = Sink(ctx)
    uart.attach(sink)
    w16(uart, U_CTRL, TXIE)
    w16(uart, U_BAUD, 0)
    assert uart.tx_cycles() == 0
    for ch in b"fast":
        w16(uart, U_DATA, ch)
        assert r16(uart, U_STATUS) & TXE
    assert bytes(sink.data) == b"fast" and sink.times == [0, 0, 0, 0]
    assert ctx.pending() == [] and ctx.warnings == []
    assert ctx.lines[3].history == [(0, True)]     # no glitch on the TX line


def test_uart_too_fast_for_the_clock_is_instant():
    ctx = FakeContext(cpu_hz=1000)                 # 1 kHz CPU, 115200 baud: 0 cycles
    uart = make_uart(ctx)
    uart.attach(Sink(ctx))
    w16(uart, U_DATA, 0x55)
    assert r16(uart, U_STATUS) & TXE and ctx.pending() == []


def test_uart_baud_change_applies_to_next_byte():
    ctx = FakeContext(1 * MHZ)
    uart = make_uart(ctx)
    uart.attach(Sink(ctx))
    w16(uart, U_DATA, 1)                           # 86 cycles: ready at 87
    ctx.run_to(3)
    w16(uart, U_BAUD, 100)                         # 10000 baud: 1000 cycles
    assert r16(uart, U_BAUD) == 100
    ctx.run_to(87)
    assert r16(uart, U_STATUS) & TXE
    w16(uart, U_DATA, 2)
    ctx.run_to(87 + 1000)
    assert not r16(uart, U_STATUS) & TXE
    ctx.run_to(87 + 1001)
    assert r16(uart, U_STATUS) & TXE
    assert ctx.fired == []                         # TXE is computed: no timer without TXIE


def test_uart_no_backend_discards():
    ctx = FakeContext()
    uart = make_uart(ctx)
    w16(uart, U_DATA, 0x41)                        # nothing attached
    assert not r16(uart, U_STATUS) & TXE
    sink = Sink(ctx)
    uart.attach(sink)
    uart.attach(None)
    ctx.run_to(10_000)
    w16(uart, U_DATA, 0x42)
    assert sink.data == b""


def test_uart_tx_interrupt():
    ctx = FakeContext(1 * MHZ)
    uart = make_uart(ctx)
    uart.attach(Sink(ctx))
    tx = ctx.lines[3]
    ctx.run_to(5)
    w16(uart, U_CTRL, TXIE)                        # idle: up at once
    assert tx.history == [(5, True)]
    ctx.run_to(10)
    w16(uart, U_DATA, 0x30)                        # busy 11..96, ready at 97
    assert tx.history == [(5, True), (10, False)]
    ctx.run_to(96)
    assert tx.level is False
    ctx.run_to(97)
    assert tx.history == [(5, True), (10, False), (97, True)]
    ctx.run_to(100)
    w16(uart, U_CTRL, 0)                           # nothing left to send
    assert tx.level is False and r16(uart, U_STATUS) & TXE
    w16(uart, U_DATA, 0x31)
    ctx.run_to(1000)
    assert tx.history[-1] == (100, False) and ctx.lines[2].history == []


def test_uart_receive_and_rx_interrupt():
    ctx = FakeContext()
    uart = make_uart(ctx)
    rx = ctx.lines[2]
    assert uart.receive(b"") == 0
    assert uart.receive(b"abc") == 3
    assert uart.rx_space() == 13
    assert r16(uart, U_STATUS) == TXE | RXA
    assert rx.level is False                       # RXIE clear
    ctx.run_to(4)
    w16(uart, U_CTRL, RXIE)
    assert rx.history == [(4, True)]
    assert [r16(uart, U_DATA) for _ in range(2)] == [ord("a"), ord("b")]
    assert rx.level is True and r16(uart, U_STATUS) & RXA
    ctx.run_to(9)
    assert r16(uart, U_DATA) == ord("c")
    assert rx.history == [(4, True), (9, False)]
    assert r16(uart, U_STATUS) == TXE and r16(uart, U_DATA) == 0
    ctx.run_to(12)
    assert uart.receive(bytearray(b"\xff")) == 1
    assert rx.history[-1] == (12, True) and r16(uart, U_DATA) == 0xFF
    assert ctx.lines[3].history == []


def test_uart_fifo_fill_and_flow_control():
    ctx = FakeContext()
    uart = make_uart(ctx)
    data = bytes(range(100, 120))
    assert uart.receive(data) == 16
    assert uart.rx_space() == 0
    assert uart.receive(data[16:]) == 0            # full: the machine keeps the rest
    assert r16(uart, U_STATUS) == TXE | RXA        # no OVR: nothing was lost
    assert r16(uart, U_DATA) == 100
    assert uart.rx_space() == 1
    assert uart.receive(data[16:]) == 1
    got = [r16(uart, U_DATA) for _ in range(16)]
    assert got == list(range(101, 117))
    assert r16(uart, U_STATUS) == TXE and uart.rx_space() == 16


def test_uart_overrun():
    ctx = FakeContext()
    uart = make_uart(ctx)
    assert uart.receive(bytes(10), drop_excess=True) == 10
    assert not r16(uart, U_STATUS) & OVR           # everything fitted
    assert uart.receive(b"0123456789", drop_excess=True) == 6
    status = r16(uart, U_STATUS)
    assert status == TXE | RXA | OVR
    assert r16(uart, U_STATUS) == TXE | RXA        # cleared by reading STATUS
    assert uart.receive(b"x", drop_excess=True) == 0
    assert r16(uart, U_STATUS) & OVR
    for _ in range(10):
        r16(uart, U_DATA)
    assert [r16(uart, U_DATA) for _ in range(6)] == list(b"012345")
    assert r16(uart, U_STATUS) == TXE


def test_uart_ctrl_mask():
    ctx = FakeContext()
    uart = make_uart(ctx)
    w16(uart, U_CTRL, 0xFFFC)
    assert r16(uart, U_CTRL) == 0
    w16(uart, U_CTRL, 0xFFFF)
    assert r16(uart, U_CTRL) == TXIE | RXIE
    w16(uart, U_BAUD, 0xFFFF)
    assert r16(uart, U_BAUD) == 0xFFFF


def test_uart_reset():
    ctx = FakeContext()
    uart = make_uart(ctx, baud=9600)
    sink = Sink(ctx)
    uart.attach(sink)
    w16(uart, U_CTRL, TXIE | RXIE)
    w16(uart, U_BAUD, 3)
    uart.receive(bytes(20), drop_excess=True)
    w16(uart, U_DATA, 0x41)
    assert ctx.lines[2].level is True and ctx.lines[3].level is False
    uart.reset()
    assert r16(uart, U_CTRL) == 0 and r16(uart, U_BAUD) == 96
    assert r16(uart, U_STATUS) == TXE and uart.rx_space() == 16
    assert ctx.lines[2].level is False and ctx.lines[3].level is False
    ctx.run_to(10**7)
    assert ctx.fired == []                        # the TX-ready callback was cancelled
    w16(uart, U_DATA, 0x42)                       # the back-end stays attached
    assert bytes(sink.data) == b"AB"


def test_uart_post_load():
    ctx = FakeContext()
    uart = make_uart(ctx)
    uart.ctrl, uart.tx_busy_until, uart.rx_fifo = TXIE | RXIE, 500, bytearray(b"q")
    uart.post_load()
    assert ctx.lines[2].level is True and ctx.lines[3].level is False
    assert ctx.pending() == [500]
    ctx.run_to(500)
    assert ctx.lines[3].level is True and r16(uart, U_DATA) == ord("q")


# == WATCHDOG =================================================================================

W_CTRL, W_TIMEOUT, W_KICK, W_STATUS = 0x00, 0x04, 0x08, 0x0C
W_EN, W_NMI = 1, 2
KICK = 0x5A5A


@pytest.mark.parametrize("timeout, period", [(0, 1), (1, 1), (5, 5), (1000, 1000),
                                             (0xFFFFFFFF, 0xFFFFFFFF)])
def test_wdt_reset_on_expiry(timeout, period):
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, timeout)
    ctx.run_to(20)
    w16(wdt, W_CTRL, W_EN)
    ctx.run_to(20 + period)
    assert ctx.resets == [] and r16(wdt, W_STATUS) == 0
    ctx.run_to(21 + period)
    assert ctx.resets == [21 + period] and r16(wdt, W_STATUS) == 1
    assert ctx.nmis == [] and ctx.pending() == []


def test_wdt_kick():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 100)
    w16(wdt, W_CTRL, W_EN)                          # expiry at 101
    for t in (50, 100, 150, 200):
        ctx.run_to(t)
        w16(wdt, W_KICK, KICK)                      # new expiry at t + 101
    ctx.run_to(230)
    w16(wdt, W_KICK, 0x5A5B)                        # wrong keys are ignored
    w16(wdt, W_KICK, 0)
    w16(wdt, W_KICK, 0xA5A5)
    ctx.run_to(300)
    assert ctx.resets == []
    ctx.run_to(301)
    assert ctx.resets == [301]


def test_wdt_rewriting_ctrl_does_not_kick():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 100)
    w16(wdt, W_CTRL, W_EN)
    ctx.run_to(60)
    w16(wdt, W_CTRL, W_EN)
    ctx.run_to(101)
    assert ctx.resets == [101]


def test_wdt_disable_and_kick_while_disabled():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 10)
    w16(wdt, W_KICK, KICK)                          # disabled: nothing starts
    assert ctx.pending() == []
    w16(wdt, W_CTRL, W_EN)
    ctx.run_to(5)
    w16(wdt, W_CTRL, 0)
    ctx.run_to(1000)
    assert ctx.resets == [] and ctx.nmis == []
    w16(wdt, W_KICK, KICK)
    assert ctx.pending() == []
    w16(wdt, W_CTRL, W_EN)                          # enabling starts a fresh countdown
    ctx.run_to(1011)
    assert ctx.resets == [1011]


def test_wdt_timeout_change_applies_at_next_kick():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 100)
    w16(wdt, W_CTRL, W_EN)                          # expiry at 101
    ctx.run_to(10)
    wdt.write(W_TIMEOUT, 2, 20)                     # low half: TIMEOUT = 20
    assert wdt.read(W_TIMEOUT, 4) == 20
    ctx.run_to(100)
    assert ctx.resets == []
    w16(wdt, W_KICK, KICK)                          # expiry at 121
    ctx.run_to(120)
    assert ctx.resets == []
    ctx.run_to(121)
    assert ctx.resets == [121]


def test_wdt_timeout_halves():
    wdt = make_wdt(FakeContext())
    wdt.write(W_TIMEOUT + 2, 2, 0x0012)
    wdt.write(W_TIMEOUT, 2, 0x3456)
    assert wdt.read(W_TIMEOUT, 4) == 0x123456
    assert wdt.read(W_TIMEOUT + 2, 2) == 0x12 and wdt.read(W_TIMEOUT, 2) == 0x3456


@pytest.mark.parametrize("timeout", [1, 7, 50_000])
def test_wdt_nmi_mode(timeout):
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, timeout)
    ctx.run_to(3)
    w16(wdt, W_CTRL, W_EN | W_NMI)
    first = 4 + timeout
    ctx.run_to(first + 3 * timeout)
    assert ctx.nmis == [first + k * timeout for k in range(4)]     # no drift
    assert ctx.resets == [] and r16(wdt, W_STATUS) == 1
    w16(wdt, W_STATUS, 0)
    assert r16(wdt, W_STATUS) == 1
    w16(wdt, W_STATUS, 1)
    assert r16(wdt, W_STATUS) == 0
    now = ctx.now()
    w16(wdt, W_KICK, KICK)
    ctx.run_to(now + timeout)
    assert ctx.nmis[-1] == first + 3 * timeout
    ctx.run_to(now + timeout + 1)
    assert ctx.nmis[-1] == now + timeout + 1 and r16(wdt, W_STATUS) == 1


def test_wdt_nmi_late_callbacks_do_not_drift():
    ctx = FakeContext()
    ctx.lag = 3
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 10)
    w16(wdt, W_CTRL, W_EN | W_NMI)
    ctx.run_to(100)
    assert ctx.scheduled[:5] == [11, 21, 31, 41, 51]
    assert ctx.nmis[:4] == [14, 24, 34, 44]


def test_wdt_nmi_through_icu():
    ctx = FakeContext()
    icu, rec = make_icu(ctx)
    ctx.raise_nmi = icu.raise_nmi                   # type: ignore[method-assign]
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 10)
    w16(wdt, W_CTRL, W_EN | W_NMI)
    ctx.run_to(11)
    assert rec.nmis == 1 and r16(icu, ICU_NMISTAT) == 1


def test_wdt_mode_switch_applies_at_expiry():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 10)
    w16(wdt, W_CTRL, W_EN | W_NMI)                  # 11, 21, ...
    ctx.run_to(15)
    w16(wdt, W_CTRL, W_EN)                          # now reset mode, same countdown
    ctx.run_to(100)
    assert ctx.nmis == [11] and ctx.resets == [21]


def test_wdt_reset_keeps_fired_only_after_its_own_reset():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 10)
    w16(wdt, W_CTRL, W_EN)
    ctx.run_to(11)
    assert ctx.resets == [11]
    w16(wdt, W_KICK, KICK)                          # too late: the reset is coming
    assert ctx.pending() == []
    wdt.reset()                                     # the reset it caused
    assert r16(wdt, W_STATUS) == 1
    assert r16(wdt, W_CTRL) == 0 and wdt.read(W_TIMEOUT, 4) == 0
    ctx.run_to(1000)
    assert ctx.resets == [11]                       # disabled after the reset
    wdt.reset()                                     # another reset: FIRED goes
    assert r16(wdt, W_STATUS) == 0


def test_wdt_reset_after_nmi_clears_fired():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.write(W_TIMEOUT, 4, 10)
    w16(wdt, W_CTRL, W_EN | W_NMI)
    ctx.run_to(11)
    assert r16(wdt, W_STATUS) == 1
    wdt.reset()                                     # not caused by the watchdog
    assert r16(wdt, W_STATUS) == 0 and r16(wdt, W_CTRL) == 0
    ctx.run_to(1000)
    assert ctx.nmis == [11]                          # the countdown was cancelled


def test_wdt_ctrl_mask():
    wdt = make_wdt(FakeContext())
    w16(wdt, W_CTRL, 0xFFFC)
    assert r16(wdt, W_CTRL) == 0
    w16(wdt, W_CTRL, 0xFFFF)
    assert r16(wdt, W_CTRL) == W_EN | W_NMI


def test_wdt_post_load():
    ctx = FakeContext()
    wdt = make_wdt(ctx)
    wdt.ctrl, wdt.timeout, wdt.deadline = W_EN, 50, 77
    wdt.post_load()
    ctx.run_to(77)
    assert ctx.resets == [77]


# == register maps and bus errors ================================================================

# docs/board.md, written out again: name -> (offset, width, access)
REGISTER_MAPS: dict[str, dict[str, tuple[int, int, str]]] = {
    "icu": {"IVCT": (0x00, 2, "R"), "PEND": (0x04, 4, "R"), "ENABLE": (0x08, 4, "RW"),
            "NMISTAT": (0x0C, 2, "RW"),
            **{f"PRIO[{2 * k}..{2 * k + 1}]": (0x20 + 2 * k, 2, "RW") for k in range(16)}},
    "timer": {"CTRL": (0x00, 2, "RW"), "PRESCALE": (0x02, 2, "RW"), "RELOAD": (0x04, 4, "RW"),
              "COUNT": (0x08, 4, "R"), "STATUS": (0x0C, 2, "RW")},
    "uart": {"DATA": (0x00, 2, "RW"), "STATUS": (0x02, 2, "R"), "CTRL": (0x04, 2, "RW"),
             "BAUD": (0x06, 2, "RW")},
    "watchdog": {"CTRL": (0x00, 2, "RW"), "TIMEOUT": (0x04, 4, "RW"), "KICK": (0x08, 2, "W"),
                 "STATUS": (0x0C, 2, "RW")},
}


def make_device(kind: str, ctx: FakeContext):
    return {"icu": lambda: make_icu(ctx)[0], "timer": lambda: make_timer(ctx),
            "uart": lambda: make_uart(ctx), "watchdog": lambda: make_wdt(ctx)}[kind]()


def expected_access(kind: str, offset: int, size: int, op: str) -> tuple[str, str | None]:
    """("ok", None) or ("error", register name or None)."""
    for name, (off, width, access) in REGISTER_MAPS[kind].items():
        if not off <= offset < off + width:
            continue
        fits = (offset == off and size == width) \
            or (width == 4 and size == 2 and offset in (off, off + 2)) \
            or (name.startswith("PRIO") and size == 1)
        if fits and (op[0].upper() in access):
            return "ok", None
        return "error", name
    return "error", None


@pytest.mark.parametrize("kind", sorted(REGISTER_MAPS))
@pytest.mark.parametrize("op", ["read", "write"])
def test_register_map_whole_window(kind, op):
    """Every offset of the window with every width: accepted exactly where the
    map says, and otherwise a BusError naming the device and the register."""
    ctx = FakeContext()
    dev = make_device(kind, ctx)
    for offset in range(0, 0x100):
        for size in (1, 2, 4):
            verdict, reg = expected_access(kind, offset, size, op)
            call = (lambda: dev.read(offset, size)) if op == "read" \
                else (lambda: dev.write(offset, size, 0))
            if verdict == "ok":
                call()
                continue
            with pytest.raises(BusError) as exc:
                call()
            msg = str(exc.value)
            assert msg.startswith(dev.name + ": "), msg
            if reg is None:
                assert f"no register at offset {offset:#x}" in msg, msg
            else:
                off = REGISTER_MAPS[kind][reg][0]
                assert f"register {reg} (offset {off:#x})" in msg, msg


@pytest.mark.parametrize("kind, op, offset, size, message", [
    ("uart", "read", 0x2, 4, "uart0: 4-byte read of 16-bit register STATUS (offset 0x2)"),
    ("uart", "write", 0x0, 1, "uart0: 1-byte write to 16-bit register DATA (offset 0x0)"),
    ("uart", "write", 0x2, 2, "uart0: write to read-only register STATUS (offset 0x2)"),
    ("uart", "read", 0x8, 2, "uart0: no register at offset 0x8 (2-byte read)"),
    ("timer", "read", 0x8, 1, "timer0: 1-byte read of 32-bit register COUNT (offset 0x8)"),
    ("timer", "write", 0x6, 4,
     "timer0: misaligned 4-byte write at offset 0x6 inside 32-bit register RELOAD (offset 0x4)"),
    ("timer", "write", 0xA, 2, "timer0: write to read-only register COUNT (offset 0x8)"),
    ("timer", "read", 0x10, 4, "timer0: no register at offset 0x10 (4-byte read)"),
    ("watchdog", "read", 0x8, 2, "wdt: read of write-only register KICK (offset 0x8)"),
    ("watchdog", "read", 0x2, 2, "wdt: no register at offset 0x2 (2-byte read)"),
    ("icu", "write", 0x0, 2, "icu: write to read-only register IVCT (offset 0x0)"),
    ("icu", "read", 0x21, 2,
     "icu: misaligned 2-byte read at offset 0x21 inside 16-bit register PRIO[0..1] (offset 0x20)"),
    ("icu", "write", 0x20, 4, "icu: 4-byte write to 16-bit register PRIO[0..1] (offset 0x20)"),
    ("icu", "read", 0x40, 1, "icu: no register at offset 0x40 (1-byte read)"),
])
def test_bus_error_messages(kind, op, offset, size, message):
    dev = make_device(kind, FakeContext())
    with pytest.raises(BusError, match=re.escape(message) + r"\Z"):
        if op == "read":
            dev.read(offset, size)
        else:
            dev.write(offset, size, 0)


def test_bus_error_has_no_side_effect():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    with pytest.raises(BusError):
        tmr.write(T_CTRL, 4, EN)
    with pytest.raises(BusError):
        tmr.write(T_CTRL, 1, EN)
    assert r16(tmr, T_CTRL) == 0 and ctx.pending() == []


def test_write_values_are_truncated_to_the_access_width():
    ctx = FakeContext()
    tmr = make_timer(ctx)
    w16(tmr, T_PRESCALE, 0x12345)
    assert r16(tmr, T_PRESCALE) == 0x2345
    tmr.write(T_RELOAD, 2, 0xABCDE)
    assert tmr.read(T_RELOAD, 4) == 0xBCDE



def test_uart_status_shadow_always_agrees_with_a_real_read() -> None:
    """The core answers STATUS polls from the shadow; it must never differ from
    what the device itself would return (and must step aside while OVR is set,
    because reading STATUS clears it)."""
    ctx = FakeContext()
    uart = Uart("uart0", 0x1400300, ctx, irq_rx=2, irq_tx=3)

    def check() -> None:
        shadowed = ctx.shadow_read(uart, 0x02, 2)
        if uart.ovr:
            assert shadowed is None
        else:
            assert shadowed is not None and shadowed == uart.read(0x02, 2)

    check()
    uart.write(0x00, 2, ord("a"))               # TXE drops for the byte time
    for _ in range(5):
        check()
        ctx.run_to(ctx.cycle + uart.tx_cycles() // 3 + 1)
    uart.receive(b"xy")
    check()
    uart.read(0x00, 2)
    check()
    uart.read(0x00, 2)
    check()
    uart.receive(b"z" * 40, drop_excess=True)   # overflow: OVR set, shadow must go
    check()
    uart.read(0x02, 2)                          # clears OVR: shadow back
    check()


def test_uart_tx_interrupt_arms_a_timer_only_when_enabled():
    """A TX interrupt needs a callback when the transmitter frees up; polling
    does not (so printed text costs no timer per byte)."""
    ctx = FakeContext()
    uart = make_uart(ctx)
    w16(uart, U_DATA, 1)                     # TXIE off: nothing scheduled
    assert ctx.pending() == []
    w16(uart, U_CTRL, 1)                     # TXIE on while busy: armed now
    assert ctx.pending() == [uart.tx_busy_until]
    assert not ctx.lines[3].level
    ctx.run_to(uart.tx_busy_until)
    assert ctx.lines[3].level                # TX IRQ up exactly when TXE returns
