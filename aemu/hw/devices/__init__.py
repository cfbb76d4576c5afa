"""The devices of docs/board.md: interrupt controller, timer, UART, watchdog.

Each is an MMIO register file (``read(offset, size)`` / ``write(offset, size,
value)``, raising :class:`~aemu.hw.device.BusError` for an access the register
map does not allow), IRQ lines taken from the context at construction, a
``reset()``, a ``post_load()`` that rebuilds what is derived (scheduled
callbacks, the delivered vector) from the plain state attributes, and no
serialisation code.
"""
from __future__ import annotations

from aemu.hw.device import Device
from aemu.hw.devices.icu import Icu, IcuLine
from aemu.hw.devices.timer import Timer
from aemu.hw.devices.uart import Uart
from aemu.hw.devices.watchdog import Watchdog

DEVICE_KINDS: dict[str, type[Device]] = {
    "icu": Icu,
    "timer": Timer,
    "uart": Uart,
    "watchdog": Watchdog,
}

__all__ = ["DEVICE_KINDS", "Icu", "IcuLine", "Timer", "Uart", "Watchdog"]
