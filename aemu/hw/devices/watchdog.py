"""The watchdog (docs/board.md, "WDT").

Enabling it (CTRL.EN 0 -> 1) or kicking it (KICK = 0x5A5A while enabled) by an
instruction with ``ctx.now() == t`` starts a countdown from cycle ``t + 1``
(the timing convention of docs/board.md): the expiry is at
``t + 1 + TIMEOUT`` (a TIMEOUT of 0 counts as 1).  On expiry STATUS.FIRED is
set and either the board is reset (``ctx.request_reset()``; FIRED survives
that reset) or, with CTRL.NMI, an NMI is raised and the countdown restarts
from the expiry cycle with the current TIMEOUT.

State: ``ctrl``, ``timeout``, ``status``, ``deadline`` (the expiry cycle of the
running countdown) and ``reset_requested`` (this watchdog asked for the reset
that is coming: :meth:`reset` keeps FIRED).
"""
from __future__ import annotations

from typing import ClassVar

from aemu.hw.device import DeviceContext, TimerHandle
from aemu.hw.devices._regs import Reg, RegisterDevice
from aemu.savevm.vmstate import VMStateDescription, boolean, u16, u32, u64

CTRL_EN = 1 << 0
CTRL_NMI = 1 << 1
CTRL_MASK = CTRL_EN | CTRL_NMI
STATUS_FIRED = 1 << 0
KICK_KEY = 0x5A5A


WATCHDOG_VMSD = VMStateDescription(
    "cr16-watchdog", version=1, minimum_version=1,
    fields=[u16("ctrl"), u32("timeout"), u16("status"), u64("deadline"),
            boolean("reset_requested")],
    post_load=lambda dev, version: dev.post_load())


class Watchdog(RegisterDevice):
    kind: ClassVar[str] = "watchdog"
    vmsd: ClassVar[VMStateDescription] = WATCHDOG_VMSD

    def __init__(self, name: str, base: int, ctx: DeviceContext) -> None:
        super().__init__(name, base, ctx)
        self._handle: TimerHandle | None = None
        self._init_registers([
            (Reg("CTRL", 0x00), self._r_ctrl, self._w_ctrl),
            (Reg("TIMEOUT", 0x04, width=4), self._r_timeout, self._w_timeout),
            (Reg("KICK", 0x08, access="W"), None, self._w_kick),
            (Reg("STATUS", 0x0C), self._r_status, self._w_status),
        ])
        self.status = 0
        self._clear(keep_fired=False)

    def _clear(self, *, keep_fired: bool) -> None:
        self.ctrl = 0
        self.timeout = 0
        self.status = self.status & STATUS_FIRED if keep_fired else 0
        self.deadline = 0
        self.reset_requested = False

    # -- countdown ------------------------------------------------------------------
    def _period(self) -> int:
        return self.timeout if self.timeout > 0 else 1

    def _arm(self, deadline: int) -> None:
        self._cancel()
        self.deadline = deadline
        self._handle = self.ctx.schedule(deadline, self._expire)

    def _expire(self) -> None:
        self._handle = None
        self.status |= STATUS_FIRED
        if self.ctrl & CTRL_NMI:
            self._arm(self.deadline + self._period())
            self.ctx.raise_nmi()
        else:
            self.reset_requested = True
            self.ctx.request_reset()

    # -- registers --------------------------------------------------------------------
    def _r_ctrl(self) -> int:
        return self.ctrl

    def _w_ctrl(self, value: int) -> None:
        value &= CTRL_MASK
        was = self.ctrl
        self.ctrl = value
        if value & CTRL_EN and not was & CTRL_EN:
            self._arm(self.ctx.now() + 1 + self._period())
        elif not value & CTRL_EN:
            self._cancel()

    def _r_timeout(self) -> int:
        return self.timeout

    def _w_timeout(self, value: int) -> None:
        self.timeout = value

    def _w_kick(self, value: int) -> None:
        if value == KICK_KEY and self.ctrl & CTRL_EN and not self.reset_requested:
            self._arm(self.ctx.now() + 1 + self._period())

    def _r_status(self) -> int:
        return self.status

    def _w_status(self, value: int) -> None:
        self.status &= ~(value & STATUS_FIRED)

    # -- reset and restore ----------------------------------------------------------------
    def reset(self) -> None:
        self._cancel()
        self._clear(keep_fired=self.reset_requested)

    def post_load(self) -> None:
        """After the state attributes were restored: re-arm the countdown."""
        self._cancel()
        if self.ctrl & CTRL_EN and not self.reset_requested:
            self._handle = self.ctx.schedule(self.deadline, self._expire)
