"""What a device is, and what the machine offers it (the contract between
`aemu/hw/devices/` and the scheduler in `aemu/loop/`).

A device owns an MMIO window, IRQ lines, timers on the virtual clock, a
``reset()`` and its state in plain attributes (which savevm descriptions will
name later).  It never serialises anything and never reads the host clock.

Time is counted in CPU cycles: one executed instruction is one cycle.
``ctx.now()`` is exact even in the middle of a slice (the core counts the
instructions completed before the one doing the MMIO access).
"""
from __future__ import annotations

from typing import Callable, ClassVar, Protocol


class BusError(Exception):
    """An access the device does not accept (wrong width, no register there).
    The guest takes an illegal-address trap; the message names the problem."""


class TimerHandle(Protocol):
    def cancel(self) -> None: ...

    @property
    def cycle(self) -> int: ...


class IrqLine(Protocol):
    """A level-sensitive interrupt request line into the interrupt controller."""

    def set(self, level: bool) -> None: ...

    @property
    def level(self) -> bool: ...


class DeviceContext(Protocol):
    """What the machine gives a device."""

    @property
    def cpu_hz(self) -> int: ...

    def now(self) -> int:
        """Cycles (instructions) executed so far."""

    def schedule(self, cycle: int, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` when the instruction count reaches ``cycle``
        (before the instruction numbered ``cycle`` + 1 runs).  A cycle in the
        past fires at the next slice boundary."""

    def irq(self, line: int) -> IrqLine:
        """Interrupt request line ``line`` (0..31) of the interrupt controller."""

    def raise_nmi(self) -> None: ...

    def request_reset(self) -> None:
        """Reset the board (CPU, devices, program image) at the next boundary."""

    def warn(self, message: str) -> None:
        """Tell the operator something (e.g. a bad register access)."""

    def shadow(self, device: "Device", offset: int, size: int, value: int | None, *,
               before: int = 0, at_cycle: int = 0) -> None:
        """Let the CPU core answer reads of one register itself (a polled status
        register must not cost a call into Python): it reads ``before`` until
        ``at_cycle`` and ``value`` from then on; ``value=None`` hands reads back
        to ``device.read``.  The device must keep the shadow equal to what its
        ``read`` would return, and drop it while a read has side effects."""


class Device:
    """Base class: subclasses set ``kind`` and implement the register file."""

    kind: ClassVar[str] = ""
    #: size of the MMIO window every device of the default board gets
    WINDOW: ClassVar[int] = 0x100

    def __init__(self, name: str, base: int, ctx: DeviceContext, **params: object) -> None:
        self.name = name
        self.base = base
        self.ctx = ctx
        self.size = self.WINDOW
        #: the device's pending timer, if any (one is all the current devices need)
        self._handle: TimerHandle | None = None
        #: bumped by whatever may change the declared state (a register access,
        #: a timer callback, host input, a reset), so that a checkpoint restore
        #: can skip a device that did not change since
        self._generation = 0

    def _cancel(self) -> None:
        """Cancel the pending timer, if any."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def read(self, offset: int, size: int) -> int:
        raise BusError(f"{self.name}: no register at offset {offset:#x}")

    def write(self, offset: int, size: int, value: int) -> None:
        raise BusError(f"{self.name}: no register at offset {offset:#x}")

    def reset(self) -> None:
        """Back to the power-on state (timers cancelled, lines down)."""
