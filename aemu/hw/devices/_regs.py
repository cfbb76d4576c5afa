"""Register files for the devices: access checking and dispatch.

A device lists its registers (:class:`Reg`) with a read and/or a write handler
each; :class:`RegisterDevice` turns that into two dictionaries keyed by
``offset << 3 | size``, so an access is one dictionary look-up and one call.
Every access the table does not allow raises :class:`BusError` with a message
that names the device, the register, the offset and the width
(``"uart0: 4-byte access to 16-bit register STATUS (offset 0x2)"``).

Registers are 16 bits unless ``width=4``.  A 32-bit register also accepts
2-byte accesses to each half (low half at the lower address); a 16-bit register
with ``bytes_ok`` also accepts 1-byte accesses to each byte.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from aemu.hw.device import BusError, Device

Reader = Callable[[], int]
Writer = Callable[[int], None]

_MASK = (0, 0xFF, 0xFFFF, 0, 0xFFFFFFFF)
_OPS = {"read": "read of", "write": "write to"}


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    width: int = 2               #: bytes: 2 or 4
    access: str = "RW"           #: "R", "W" or "RW" (W1C registers are "RW")
    bytes_ok: bool = False       #: a 16-bit register whose bytes may be accessed alone

    @property
    def bits(self) -> int:
        return self.width * 8


class RegisterDevice(Device):
    """A device whose MMIO window is a table of registers.  Subclasses call
    :meth:`_init_registers` with ``(Reg, reader or None, writer or None)``
    entries (bound methods) from their constructor."""

    _regs: tuple[Reg, ...]
    _rd: dict[int, Reader]
    _wr: dict[int, Writer]

    def _init_registers(self, table: Iterable[tuple[Reg, Reader | None, Writer | None]]) -> None:
        rd: dict[int, Reader] = {}
        wr: dict[int, Writer] = {}
        regs = []
        for reg, reader, writer in table:
            assert reg.width in (2, 4) and reg.offset % reg.width == 0, reg
            assert ("R" in reg.access) == (reader is not None), reg
            assert ("W" in reg.access) == (writer is not None), reg
            regs.append(reg)
            off = reg.offset
            if reader is not None:
                rd[off << 3 | reg.width] = reader
            if writer is not None:
                wr[off << 3 | reg.width] = writer
            if reg.width == 4:
                if reader is not None:
                    rd[off << 3 | 2] = _part_reader(reader, 0, 0xFFFF)
                    rd[(off + 2) << 3 | 2] = _part_reader(reader, 16, 0xFFFF)
                if writer is not None:
                    assert reader is not None, "a write-only 32-bit register cannot be split"
                    wr[off << 3 | 2] = _part_writer(reader, writer, 0, 0xFFFF)
                    wr[(off + 2) << 3 | 2] = _part_writer(reader, writer, 16, 0xFFFF)
            elif reg.bytes_ok:
                if reader is not None:
                    rd[off << 3 | 1] = _part_reader(reader, 0, 0xFF)
                    rd[(off + 1) << 3 | 1] = _part_reader(reader, 8, 0xFF)
                if writer is not None:
                    assert reader is not None, "a write-only register cannot be split"
                    wr[off << 3 | 1] = _part_writer(reader, writer, 0, 0xFF)
                    wr[(off + 1) << 3 | 1] = _part_writer(reader, writer, 8, 0xFF)
        self._regs = tuple(sorted(regs, key=lambda r: r.offset))
        self._rd, self._wr = rd, wr

    # -- the MMIO interface ------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        self._generation += 1          # reads may have side effects (FIFOs, acks)
        handler = self._rd.get(offset << 3 | size)
        if handler is None:
            raise self._bus_error(offset, size, "read")
        return handler()

    def write(self, offset: int, size: int, value: int) -> None:
        self._generation += 1
        handler = self._wr.get(offset << 3 | size)
        if handler is None:
            raise self._bus_error(offset, size, "write")
        handler(value & _MASK[size])

    # -- why an access is refused -------------------------------------------------
    def register_at(self, offset: int) -> Reg | None:
        """The register whose bytes include ``offset``, if any."""
        for reg in self._regs:
            if reg.offset <= offset < reg.offset + reg.width:
                return reg
        return None

    def _bus_error(self, offset: int, size: int, op: str) -> BusError:
        name = self.name
        reg = self.register_at(offset)
        if reg is None:
            return BusError(f"{name}: no register at offset {offset:#x} ({size}-byte {op})")
        where = f"register {reg.name} (offset {reg.offset:#x})"
        if size not in (1, 2, 4) or size > reg.width or (size == 1 and not reg.bytes_ok) \
                or (size == 4 and reg.width == 2):
            return BusError(f"{name}: {size}-byte {_OPS[op]} {reg.bits}-bit {where}")
        if offset % size or offset + size > reg.offset + reg.width:
            return BusError(f"{name}: misaligned {size}-byte {op} at offset {offset:#x} "
                            f"inside {reg.bits}-bit {where}")
        if op == "write" and "W" not in reg.access:
            return BusError(f"{name}: write to read-only {where}")
        if op == "read" and "R" not in reg.access:
            return BusError(f"{name}: read of write-only {where}")
        return BusError(f"{name}: {size}-byte {op} at offset {offset:#x} of {where}")  # pragma: no cover


def _part_reader(reader: Reader, shift: int, mask: int) -> Reader:
    def read_part() -> int:
        return (reader() >> shift) & mask
    return read_part


def _part_writer(reader: Reader, writer: Writer, shift: int, mask: int) -> Writer:
    keep = ~(mask << shift)

    def write_part(value: int) -> None:
        writer((reader() & keep) | ((value & mask) << shift))
    return write_part


__all__ = ["Reg", "RegisterDevice"]
