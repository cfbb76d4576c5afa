"""A down-counting timer (docs/board.md, "TIMER0 / TIMER1").

Timing convention (docs/board.md, "Time"): an access made by an instruction
when ``ctx.now() == t`` reads the state after ``t`` cycles and writes take
effect at cycle ``t + 1``, when that instruction completes.  So a write that
enables the timer starts the count at ``start_cycle = t + 1``; with
``RELOAD = r`` and ``PRESCALE = p`` the count is ``r`` until cycle
``t + 1 + (p+1)``, one less every ``p + 1`` cycles after that, and the expiry
(the tick that would take it below 0) is at ``t + 1 + (r+1)(p+1)``; a periodic
timer then starts the next period from that exact cycle, so there is no drift.

The counter itself is not stored: COUNT is computed from ``ctx.now()``.

State: the registers ``ctrl``, ``prescale``, ``reload``, ``status``, and the
current count period: ``start_cycle`` (the cycle it started),
``count_at_start`` (COUNT at ``start_cycle``; while stopped, the COUNT that is
held) and ``prescale_in_use`` (the divider of the running period: a new
PRESCALE or RELOAD takes effect at the next reload).
"""
from __future__ import annotations

from typing import ClassVar

from aemu.hw.device import DeviceContext, TimerHandle
from aemu.hw.devices._regs import Reg, RegisterDevice
from aemu.savevm.vmstate import VMStateDescription, u16, u32, u64

CTRL_EN = 1 << 0
CTRL_PERIODIC = 1 << 1
CTRL_IE = 1 << 2
CTRL_MASK = CTRL_EN | CTRL_PERIODIC | CTRL_IE
STATUS_EXP = 1 << 0


TIMER_VMSD = VMStateDescription(
    "cr16-timer", version=1, minimum_version=1,
    fields=[u16("ctrl"), u16("prescale"), u32("reload"), u16("status"), u64("start_cycle"),
            u32("count_at_start"), u16("prescale_in_use")],
    post_load=lambda dev, version: dev.post_load())


class Timer(RegisterDevice):
    kind: ClassVar[str] = "timer"
    vmsd: ClassVar[VMStateDescription] = TIMER_VMSD

    def __init__(self, name: str, base: int, ctx: DeviceContext, *, irq: int) -> None:
        super().__init__(name, base, ctx)
        self._line = ctx.irq(irq)
        self._handle: TimerHandle | None = None
        self._init_registers([
            (Reg("CTRL", 0x00), self._r_ctrl, self._w_ctrl),
            (Reg("PRESCALE", 0x02), self._r_prescale, self._w_prescale),
            (Reg("RELOAD", 0x04, width=4), self._r_reload, self._w_reload),
            (Reg("COUNT", 0x08, width=4, access="R"), self._r_count, None),
            (Reg("STATUS", 0x0C), self._r_status, self._w_status),
        ])
        self._clear()
        self._line.set(False)

    def _clear(self) -> None:
        self.ctrl = 0
        self.prescale = 0
        self.reload = 0
        self.status = 0
        self.start_cycle = 0
        self.count_at_start = 0
        self.prescale_in_use = 0

    # -- the count ------------------------------------------------------------------
    def count_at(self, cycle: int) -> int:
        """COUNT after ``cycle`` cycles (as read by an instruction with now() == cycle)."""
        if not self.ctrl & CTRL_EN:
            return self.count_at_start
        elapsed = cycle - self.start_cycle
        if elapsed <= 0:
            return self.count_at_start
        count = self.count_at_start - elapsed // (self.prescale_in_use + 1)
        return count if count > 0 else 0

    def deadline(self) -> int:
        """The cycle of the running period's expiry."""
        return self.start_cycle + (self.count_at_start + 1) * (self.prescale_in_use + 1)

    def _start(self, cycle: int) -> None:
        self.start_cycle = cycle
        self.count_at_start = self.reload
        self.prescale_in_use = self.prescale
        self._handle = self.ctx.schedule(self.deadline(), self._expire)

    def _expire(self) -> None:
        self._handle = None
        self.status |= STATUS_EXP
        if self.ctrl & CTRL_PERIODIC:
            self._start(self.deadline())
        else:
            self.ctrl &= ~CTRL_EN
            self.count_at_start = 0
        self._update_irq()

    def _update_irq(self) -> None:
        self._line.set(bool(self.status & STATUS_EXP and self.ctrl & CTRL_IE))

    # -- registers ------------------------------------------------------------------
    def _r_ctrl(self) -> int:
        return self.ctrl

    def _w_ctrl(self, value: int) -> None:
        value &= CTRL_MASK
        at = self.ctx.now() + 1
        if self.ctrl & CTRL_EN:                 # running: stop (and maybe restart below)
            self.count_at_start = self.count_at(at)
            self._cancel()
        self.ctrl = value
        if value & CTRL_EN:
            self._start(at)
        self._update_irq()

    def _r_prescale(self) -> int:
        return self.prescale

    def _w_prescale(self, value: int) -> None:
        self.prescale = value

    def _r_reload(self) -> int:
        return self.reload

    def _w_reload(self, value: int) -> None:
        self.reload = value
        if not self.ctrl & CTRL_EN:             # stopped: COUNT shows the new value
            self.count_at_start = value

    def _r_count(self) -> int:
        return self.count_at(self.ctx.now())

    def _r_status(self) -> int:
        return self.status

    def _w_status(self, value: int) -> None:
        if value & STATUS_EXP:
            self.status &= ~STATUS_EXP
            self._update_irq()

    # -- reset and restore ------------------------------------------------------------
    def reset(self) -> None:
        self._cancel()
        self._clear()
        self._line.set(False)

    def post_load(self) -> None:
        """After the state attributes were restored: re-arm the expiry, set the line."""
        self._cancel()
        if self.ctrl & CTRL_EN:
            self._handle = self.ctx.schedule(self.deadline(), self._expire)
        self._update_irq()
