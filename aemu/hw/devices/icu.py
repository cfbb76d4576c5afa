"""The interrupt controller (docs/board.md, "ICU").

32 level-sensitive request lines; line n is delivered to the CPU as vector
16 + n.  The highest-priority line that is up and enabled wins, equal
priorities go to the lower line.  The ICU calls ``deliver(vector)`` whenever
that vector changes (0: none) and ``nmi()`` when an NMI is raised.

State: ``pend`` (bit n = line n is up), ``enable``, ``prio`` (32 priorities,
0..15) and ``nmistat``.  ``vector`` is derived from them (:meth:`post_load`
recomputes it).
"""
from __future__ import annotations

from typing import Callable, ClassVar

from aemu.hw.device import DeviceContext
from aemu.hw.devices._regs import Reg, RegisterDevice
from aemu.savevm.vmstate import Priority, VMStateDescription, u8, u16, u32

NUM_LINES = 32
VECTOR_BASE = 16
PRIO_MAX = 15


class IcuLine:
    """Request line ``n`` of an :class:`Icu` (aemu.hw.device.IrqLine).  Its
    level lives in the ICU's ``pend`` register."""

    __slots__ = ("_icu", "_bit", "n")

    def __init__(self, icu: "Icu", n: int) -> None:
        self._icu = icu
        self._bit = 1 << n
        self.n = n

    def set(self, level: bool) -> None:
        icu, bit = self._icu, self._bit
        if level:
            if icu.pend & bit:
                return
            icu.pend |= bit
        else:
            if not icu.pend & bit:
                return
            icu.pend &= ~bit
        icu._update()

    @property
    def level(self) -> bool:
        return bool(self._icu.pend & self._bit)

    def __repr__(self) -> str:
        return f"<{self._icu.name} line {self.n}: {int(self.level)}>"


def _lines_down(icu: "Icu", version: int) -> None:
    # PEND is the line levels: not saved, the devices raise their lines again
    # in their own post_load, which is why the ICU must load before them
    icu.pend = 0


ICU_VMSD = VMStateDescription(
    "cr16-icu", version=1, minimum_version=1, priority=Priority.ICU,
    fields=[u32("enable"), u8("prio", count=NUM_LINES), u16("nmistat")],
    pre_load=_lines_down,
    post_load=lambda icu, version: icu.post_load())


class Icu(RegisterDevice):
    kind: ClassVar[str] = "icu"
    vmsd: ClassVar[VMStateDescription] = ICU_VMSD

    def __init__(self, name: str, base: int, ctx: DeviceContext, *,
                 deliver: Callable[[int], None], nmi: Callable[[], None]) -> None:
        super().__init__(name, base, ctx)
        self._deliver = deliver
        self._nmi = nmi
        self._lines = tuple(IcuLine(self, n) for n in range(NUM_LINES))
        # state
        self.pend = 0
        self.enable = 0
        self.prio = [0] * NUM_LINES
        self.nmistat = 0
        # derived: the vector last delivered
        self.vector = 0
        table: list[tuple[Reg, Callable[[], int] | None, Callable[[int], None] | None]] = [
            (Reg("IVCT", 0x00, access="R"), self._r_ivct, None),
            (Reg("PEND", 0x04, width=4, access="R"), self._r_pend, None),
            (Reg("ENABLE", 0x08, width=4), self._r_enable, self._w_enable),
            (Reg("NMISTAT", 0x0C), self._r_nmistat, self._w_nmistat),
        ]
        for k in range(NUM_LINES // 2):
            table.append((Reg(f"PRIO[{2 * k}..{2 * k + 1}]", 0x20 + 2 * k, bytes_ok=True),
                          self._prio_reader(k), self._prio_writer(k)))
        self._init_registers(table)

    # -- lines and NMI ------------------------------------------------------------
    def line(self, n: int) -> IcuLine:
        """Interrupt request line ``n`` (0..31)."""
        if not isinstance(n, int) or not 0 <= n < NUM_LINES:
            raise ValueError(f"{self.name}: no IRQ line {n!r} (lines are 0..{NUM_LINES - 1})")
        return self._lines[n]

    def raise_nmi(self) -> None:
        """Set NMISTAT and raise the CPU's non-maskable interrupt."""
        self._generation += 1
        self.nmistat |= 1
        self._nmi()

    def highest(self) -> int:
        """The vector of the highest-priority line that is up and enabled, 0 if none."""
        active = self.pend & self.enable
        if not active:
            return 0
        prio = self.prio
        best, vector, n = -1, 0, 0
        while active:
            if active & 1 and prio[n] > best:
                best, vector = prio[n], VECTOR_BASE + n
            active >>= 1
            n += 1
        return vector

    def _update(self) -> None:
        vector = self.highest()
        if vector != self.vector:
            self.vector = vector
            self._deliver(vector)

    # -- registers ----------------------------------------------------------------
    def _r_ivct(self) -> int:
        return self.vector

    def _r_pend(self) -> int:
        return self.pend

    def _r_enable(self) -> int:
        return self.enable

    def _w_enable(self, value: int) -> None:
        self.enable = value
        self._update()

    def _r_nmistat(self) -> int:
        return self.nmistat

    def _w_nmistat(self, value: int) -> None:
        self.nmistat &= ~(value & 1)

    def _prio_reader(self, k: int) -> Callable[[], int]:
        lo, hi = 2 * k, 2 * k + 1

        def read() -> int:
            prio = self.prio          # looked up each time: a restore may replace the list
            return prio[lo] | prio[hi] << 8
        return read

    def _prio_writer(self, k: int) -> Callable[[int], None]:
        lo, hi = 2 * k, 2 * k + 1

        def write(value: int) -> None:
            prio = self.prio
            prio[lo] = value & PRIO_MAX
            prio[hi] = (value >> 8) & PRIO_MAX
            self._update()
        return write

    # -- reset and restore ----------------------------------------------------------
    def reset(self) -> None:
        self.pend = 0
        self.enable = 0
        self.prio[:] = [0] * NUM_LINES
        self.nmistat = 0
        self._update()

    def post_load(self) -> None:
        """After the state attributes were restored: deliver the vector they imply."""
        self.vector = self.highest()
        self._deliver(self.vector)
