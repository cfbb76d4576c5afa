"""The Python face of the C core: one :class:`Cpu` per guest CPU and its RAM."""
from __future__ import annotations

import enum
from typing import Any, Callable

from ._core import ffi, lib

#: register names in encoding order (r14 is ``ra``, r15 is ``sp``)
REG_NAMES = tuple(f"r{i}" for i in range(14)) + ("ra", "sp")


class Exit(enum.IntEnum):
    """Why :meth:`Cpu.run` returned."""

    BUDGET = 0       #: the whole budget was executed
    HALT = 1         #: WAIT/EIWAIT: sleeping until an interrupt
    SYSCALL = 2      #: ``excp svc`` in host-call mode; pc is past the excp
    BREAKPOINT = 3   #: ``excp bpt`` with no dispatch table; pc is past the excp
    FAULT = 4        #: an exception the guest cannot take (see Cpu.fault)
    STOP = 5         #: request_stop() or an MMIO handler asked to stop


class Vector(enum.IntEnum):
    """Exception vectors (cr16c-isa.md section 6.1)."""

    NMI = 1
    SVC = 5
    DVZ = 6
    FLG = 7
    BPT = 8
    TRC = 9
    UND = 10
    IAD = 12
    DBG = 14
    ISE = 15


class Psr(enum.IntFlag):
    C = 0x0001
    T = 0x0002
    L = 0x0004
    U = 0x0008
    F = 0x0020
    Z = 0x0040
    N = 0x0080
    E = 0x0200
    P = 0x0400
    I = 0x0800


PAGE_SIZE = 4096
#: RAM sits at guest address 0; data addresses are 32-bit, code lives below 16 MiB
MAX_RAM = 64 << 20
#: the special registers, as fields of the C ``struct cr16_regs``
SPECIAL_REGS = ("pc", "psr", "cfg", "isp", "usp", "ssp", "intbase", "dbs", "dsr", "dcr", "car0", "car1")

MmioRead = Callable[[int, int], int]
MmioWrite = Callable[[int, int, int], None]


@ffi.def_extern()
def _aemu_mmio(opaque, offset, size, is_write, value):  # pragma: no cover - via C
    window = ffi.from_handle(opaque)
    cpu = window.cpu
    try:
        if is_write:
            stop = window.write(offset, size, value[0])
        else:
            value[0] = window.read(offset, size) & 0xFFFFFFFF
            stop = False
    except MmioBusError:
        return -1
    except BaseException as exc:  # keep the error; end the slice cleanly
        cpu._mmio_error = exc
        return 1
    if cpu._end_slice:
        cpu._end_slice = False
        return 1
    return 1 if stop else 0


class MmioBusError(Exception):
    """Raise from an MMIO handler to make the guest take an illegal-address trap."""


class _Window:
    __slots__ = ("cpu", "read", "write", "handle")

    def __init__(self, cpu: "Cpu", read: MmioRead, write: MmioWrite) -> None:
        self.cpu = cpu
        self.read = read
        self.write = write
        self.handle = ffi.new_handle(self)


class Cpu:
    """A CR16C CPU with ``ram_size`` bytes of RAM at guest address 0.

    ``svc_host`` makes ``excp svc`` a call to the host (the simulator's syscall
    interface, :attr:`Exit.SYSCALL`) instead of an exception into the guest.
    """

    def __init__(self, ram_size: int = 20 << 20, *, svc_host: bool = True) -> None:
        if not 8 <= ram_size <= MAX_RAM or ram_size % 2:
            raise ValueError(f"ram_size must be even and in 8 bytes..64 MiB, not {ram_size}")
        ptr = lib.cr16_new(ram_size)
        if ptr == ffi.NULL:
            raise MemoryError("cannot allocate the CPU")
        self._cpu = ffi.gc(ptr, lib.cr16_free)
        self._regs = ffi.new("struct cr16_regs *")
        self._executed = ffi.new("uint64_t *")
        self._windows: dict[int, _Window] = {}
        self._mmio_error: BaseException | None = None
        self._end_slice = False
        self._cycle_offset = 0
        self.ram_size = ram_size
        #: zero-copy, writable view of guest RAM.  Writing through it bypasses
        #: dirty tracking and the decode cache: use write(), or invalidate().
        self.ram = memoryview(ffi.buffer(lib.cr16_ram(self._cpu), ram_size))
        lib.cr16_set_svc_host(self._cpu, 1 if svc_host else 0)

    # -- execution ---------------------------------------------------------
    def run(self, budget: int) -> tuple[Exit, int]:
        """Execute at most ``budget`` instructions; return (why, how many)."""
        if budget <= 0:
            raise ValueError("budget must be positive")
        why = lib.cr16_run(self._cpu, budget, self._executed)
        if self._mmio_error is not None:
            err, self._mmio_error = self._mmio_error, None
            raise err
        return Exit(why), self._executed[0]

    def end_slice(self) -> None:
        """From an MMIO handler: end the slice after the current instruction
        (e.g. a device scheduled an event earlier than the slice's end)."""
        self._end_slice = True

    def request_stop(self) -> None:
        """Make a running slice return :attr:`Exit.STOP` soon (thread-safe)."""
        lib.cr16_request_stop(self._cpu)

    def reset(self) -> None:
        """All registers to zero (as the reference simulator starts); RAM untouched."""
        lib.cr16_reset(self._cpu)

    @property
    def insn_count(self) -> int:
        """Instructions executed since creation (part of the saved state)."""
        return lib.cr16_insn_count(self._cpu)

    @insn_count.setter
    def insn_count(self, n: int) -> None:
        lib.cr16_set_insn_count(self._cpu, n)

    @property
    def svc_host(self) -> bool:
        return bool(lib.cr16_get_svc_host(self._cpu))

    @svc_host.setter
    def svc_host(self, on: bool) -> None:
        lib.cr16_set_svc_host(self._cpu, 1 if on else 0)

    @property
    def fault(self) -> tuple[int, int, int]:
        """(vector, pc, address) of the last FAULT or BREAKPOINT exit."""
        c = self._cpu
        return lib.cr16_fault_vector(c), lib.cr16_fault_pc(c), lib.cr16_fault_addr(c)

    # -- registers ---------------------------------------------------------
    def get_state(self) -> dict[str, int | list[int]]:
        """All registers at once: {"r": [16 values], "pc": ..., "psr": ...}."""
        lib.cr16_get_regs(self._cpu, self._regs)
        s = self._regs
        out: dict[str, int | list[int]] = {"r": list(s.r)}
        for name in SPECIAL_REGS:
            out[name] = getattr(s, name)
        return out

    def set_state(self, state: dict[str, int | list[int]]) -> None:
        """Set the registers named in ``state`` (same shape as get_state)."""
        lib.cr16_get_regs(self._cpu, self._regs)
        s = self._regs
        for key, value in state.items():
            if key == "r":
                for i, v in enumerate(value):  # type: ignore[arg-type]
                    s.r[i] = v & (0xFFFF if i < 12 else 0xFFFFFFFF)
            elif key in SPECIAL_REGS:
                setattr(s, key, value)
            else:
                raise KeyError(key)
        lib.cr16_set_regs(self._cpu, s)

    def core_state(self) -> Any:
        """A copy of the core's saved state (struct cr16_core_state): the
        registers, instruction count, idle-cycle offset, halted, NMI."""
        out = ffi.new("struct cr16_core_state *")
        lib.cr16_get_core_state(self._cpu, out)
        return out

    def set_core_state(self, state: Any) -> None:
        """Put back what core_state() returned, in one call."""
        lib.cr16_set_core_state(self._cpu, state)
        self._cycle_offset = state.cycle_offset

    def load_registers(self, r: "list[int]", special: "dict[str, int]") -> None:
        """Set all 16 registers and the given special registers in one call
        (the fast path of a restore; values must already fit)."""
        s = self._regs
        lib.cr16_get_regs(self._cpu, s)
        s.r[0:16] = r
        for name, value in special.items():
            setattr(s, name, value)
        lib.cr16_set_regs(self._cpu, s)

    def reg(self, i: int) -> int:
        lib.cr16_get_regs(self._cpu, self._regs)
        return self._regs.r[i]

    def set_reg(self, i: int, value: int) -> None:
        self.set_state({"r": [self.reg(j) if j != i else value for j in range(16)]})

    def pair(self, p: int) -> int:
        """The 32-bit value of register-pair code ``p`` (cr16c-isa.md 1.2)."""
        r = self.get_state()["r"]
        assert isinstance(r, list)
        if p < 11:
            return r[p] | r[p + 1] << 16
        if p == 11:
            return r[11] | (r[12] & 0xFFFF) << 16
        return r[p]

    def set_pair(self, p: int, value: int) -> None:
        r = list(self.get_state()["r"])  # type: ignore[arg-type]
        value &= 0xFFFFFFFF
        if p < 11:
            r[p], r[p + 1] = value & 0xFFFF, value >> 16
        elif p == 11:
            r[11], r[12] = value & 0xFFFF, (r[12] & 0xFFFF0000) | value >> 16
        else:
            r[p] = value
        self.set_state({"r": r})

    def _special(name: str):  # noqa: N805 - property factory
        def get(self: "Cpu") -> int:
            lib.cr16_get_regs(self._cpu, self._regs)
            return getattr(self._regs, name)

        def put(self: "Cpu", value: int) -> None:
            self.set_state({name: value})

        return property(get, put)

    pc = _special("pc")
    psr = _special("psr")
    cfg = _special("cfg")
    isp = _special("isp")
    usp = _special("usp")
    intbase = _special("intbase")
    del _special

    # -- interrupts --------------------------------------------------------
    def set_irq(self, vector: int) -> None:
        """Raise the maskable interrupt line with ``vector`` (16..255); 0 lowers it."""
        if vector and not 16 <= vector <= 255:
            raise ValueError(f"interrupt vector {vector} out of range 16..255")
        lib.cr16_set_irq(self._cpu, vector)

    @property
    def irq(self) -> int:
        return lib.cr16_get_irq(self._cpu)

    def raise_nmi(self) -> None:
        lib.cr16_raise_nmi(self._cpu)

    @property
    def nmi_pending(self) -> bool:
        """An NMI edge latched and not yet taken."""
        return bool(lib.cr16_nmi_pending(self._cpu))

    @nmi_pending.setter
    def nmi_pending(self, value: bool) -> None:
        lib.cr16_set_nmi_pending(self._cpu, 1 if value else 0)

    @property
    def halted(self) -> bool:
        return bool(lib.cr16_halted(self._cpu))

    @halted.setter
    def halted(self, value: bool) -> None:
        lib.cr16_set_halted(self._cpu, 1 if value else 0)

    # -- memory ------------------------------------------------------------
    def read(self, addr: int, length: int) -> bytes:
        """Read guest RAM; IndexError if the range is not all RAM."""
        if addr < 0 or length < 0 or addr + length > self.ram_size:
            raise IndexError(f"guest range {addr:#x}+{length:#x} is outside RAM")
        return bytes(self.ram[addr:addr + length])

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write guest RAM, marking pages dirty and dropping stale decoded code."""
        n = len(data)
        if addr < 0 or addr + n > self.ram_size:
            raise IndexError(f"guest range {addr:#x}+{n:#x} is outside RAM")
        if n and lib.cr16_write(self._cpu, addr, ffi.from_buffer(data), n) != 0:
            raise IndexError(f"guest range {addr:#x}+{n:#x} is outside RAM")

    def nonzero_pages(self) -> list[int]:
        """Page numbers (4 KiB) of RAM that hold a non-zero byte (scanned in C)."""
        n = lib.cr16_dirty_pages(self._cpu)
        buf = ffi.new("uint8_t[]", n)
        lib.cr16_scan_nonzero(self._cpu, buf)
        raw = ffi.buffer(buf, n)[:]
        return [i for i in range(n) if raw[i]] if raw.count(0) != n else []

    def zero(self, addr: int, length: int) -> None:
        """Zero a range of RAM, touching only what is not zero already."""
        if addr < 0 or length < 0 or lib.cr16_zero(self._cpu, addr, length) != 0:
            raise IndexError(f"guest range {addr:#x}+{length:#x} is outside RAM")

    def clear_ram(self, *, populate: bool = False) -> None:
        """All of RAM to zero at once (every page counts as written);
        ``populate``: with every page allocated now rather than on first touch."""
        fn = lib.cr16_clear_ram_populate if populate else lib.cr16_clear_ram
        if fn(self._cpu) != 0:
            raise MemoryError("cannot remap guest RAM")

    def map_ram_file(self, fd: int, offset: int, *, populate: bool = False) -> None:
        """Back RAM copy-on-write by the file ``fd`` from ``offset`` (page
        aligned): pages are read on first touch, or all now with ``populate``.
        The file must not change afterwards."""
        if lib.cr16_map_ram_file(self._cpu, fd, offset, 1 if populate else 0) != 0:
            raise OSError(f"cannot map guest RAM onto the file at offset {offset}")

    def invalidate(self, addr: int = 0, length: int | None = None) -> None:
        """After writing ``ram`` directly: mark dirty and drop decoded code."""
        if length is None:
            length = self.ram_size - addr
        lib.cr16_invalidate(self._cpu, addr, length)

    def read_u16(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 2), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    # -- migration records (csrc/migrate.c) ------------------------------
    def ram_pack(self, pages: bytearray, pos: int, out: bytearray, block: bytes, named: bool,
                 zero_mode: int, hashes: "PageHashes | None" = None
                 ) -> tuple[int, int, bool, int, int]:
        """Records for the pages marked in ``pages`` (a byte per page, cleared
        as they go) from ``pos`` on, into ``out`` until it is full.  Returns
        (bytes written, next pos, named, normal pages, zero pages)."""
        p_pos = ffi.new("uint32_t *", pos)
        p_named = ffi.new("int *", 1 if named else 0)
        counts = ffi.new("uint32_t[2]")
        used = lib.cr16_ram_pack(self._cpu, ffi.from_buffer(pages), p_pos, ffi.from_buffer(out),
                                 len(out), ffi.from_buffer(block), len(block), p_named, zero_mode,
                                 counts, counts + 1, _hashes(hashes))
        return used, p_pos[0], bool(p_named[0]), counts[0], counts[1]

    def ram_unpack(self, buf: "bytes | bytearray | memoryview", block: bytes,
                   named: bool, hashes: "PageHashes | None" = None
                   ) -> tuple[int, int, int, bool, int, int]:
        """Apply the complete records at the start of ``buf`` to RAM.  Returns
        (bytes consumed, stop, err, named, pages, zero pages); stop and err
        are lib.CR16_UNPACK_* (see cr16.h)."""
        p_named = ffi.new("int *", 1 if named else 0)
        out = ffi.new("int[2]")
        counts = ffi.new("uint32_t[2]")
        used = lib.cr16_ram_unpack(self._cpu, ffi.from_buffer(buf), len(buf),
                                   ffi.from_buffer(block), len(block),
                                   p_named, out, counts, counts + 1, out + 1, _hashes(hashes))
        return used, out[0], out[1], bool(p_named[0]), counts[0], counts[1]

    def ram_gather(self, pages: bytearray, pos: int, count: int, offsets: bytearray,
                   data: bytearray, zero_detect: bool, hashes: "PageHashes | None" = None
                   ) -> tuple[int, int, int]:
        """Up to ``count`` marked pages for a multifd packet (see cr16.h).
        Returns (normal pages, zero pages, next pos)."""
        p_pos = ffi.new("uint32_t *", pos)
        nzero = ffi.new("uint32_t *")
        normal = lib.cr16_ram_gather(self._cpu, ffi.from_buffer(pages), p_pos, count,
                                     ffi.from_buffer(offsets), ffi.from_buffer(data),
                                     1 if zero_detect else 0, nzero, _hashes(hashes))
        return normal, nzero[0], p_pos[0]

    def ram_scatter(self, offsets: "bytes | memoryview", normal: int, zeros: int,
                    data: "bytes | bytearray | memoryview",
                    hashes: "PageHashes | None" = None) -> bool:
        """Store a multifd packet's pages; False (RAM unchanged) if any offset
        is outside RAM or misaligned."""
        if len(offsets) < 8 * (normal + zeros) or len(data) < normal * 4096:
            return False
        return lib.cr16_ram_scatter(self._cpu, ffi.from_buffer(offsets), normal, zeros,
                                    ffi.from_buffer(data), _hashes(hashes)) == 0

    # -- dirty tracking ----------------------------------------------------
    def dirty_consumer(self) -> "DirtyLog":
        """A new independent view of which 4 KiB pages were written."""
        return DirtyLog(self)

    # -- MMIO --------------------------------------------------------------
    def map_mmio(self, base: int, size: int, read: MmioRead, write: MmioWrite) -> None:
        """Dispatch guest accesses to [base, base+size) (outside RAM) to Python.

        ``read(offset, size) -> int``; ``write(offset, size, value) -> bool``
        (true ends the slice after the instruction).  Raise MmioBusError for a
        bus error (the guest takes an IAD trap).
        """
        window = _Window(self, read, write)
        if lib.cr16_map_mmio(self._cpu, base, size, lib._aemu_mmio, window.handle) != 0:
            raise ValueError(f"MMIO window {base:#x}+{size:#x} overlaps RAM or another window")
        self._windows[base] = window

    def mmio_shadow(self, base: int, offset: int, size: int, value: int | None = None, *,
                    before: int = 0, at_cycle: int = 0) -> None:
        """Let the core answer reads of one register of the window at ``base``
        without calling its read handler (for polled status registers): the
        register reads ``before`` until cycle ``at_cycle`` and ``value`` from
        then on (cycles = insn_count + cycle_offset).  ``value=None`` removes
        the shadow, so reads reach the handler again."""
        remove = value is None
        rc = lib.cr16_mmio_shadow(self._cpu, base, offset, size, before & 0xFFFFFFFF,
                                  (value or 0) & 0xFFFFFFFF, max(at_cycle, 0), 1 if remove else 0)
        if rc != 0:
            raise ValueError(f"no MMIO window at {base:#x}, or too many shadowed registers")

    @property
    def cycle_offset(self) -> int:
        """Cycles that passed without instructions (for shadow registers' time)."""
        return self._cycle_offset

    @cycle_offset.setter
    def cycle_offset(self, value: int) -> None:
        self._cycle_offset = value
        lib.cr16_set_cycle_offset(self._cpu, value)

    def unmap_mmio(self, base: int) -> None:
        lib.cr16_unmap_mmio(self._cpu, base)
        self._windows.pop(base, None)


class PageHashes:
    """The hash of every page as last sent or stored (the end-to-end check of
    a migration: equal digests on both sides = equal RAM)."""

    def __init__(self, npages: int) -> None:
        self.npages = npages
        self.table = ffi.new("uint64_t[]", max(npages, 1))
        self.reset()

    def reset(self) -> None:
        """Every page zero."""
        lib.cr16_hash_reset(self.table, self.npages)

    def digest(self) -> int:
        return int(lib.cr16_ram_digest(self.table, self.npages))


def _hashes(h: "PageHashes | None") -> Any:
    return h.table if h is not None else ffi.NULL


class DirtyLog:
    """One consumer's view of dirty pages (a byte per 4 KiB page)."""

    def __init__(self, cpu: Cpu) -> None:
        self._cpu = cpu
        self.id = lib.cr16_dirty_new(cpu._cpu)
        if self.id < 0:
            raise RuntimeError("too many dirty-page consumers")
        self.pages = lib.cr16_dirty_pages(cpu._cpu)

    def sync(self) -> memoryview:
        """The up-to-date map (zero-copy; valid until the next sync/clear)."""
        p = lib.cr16_dirty_sync(self._cpu._cpu, self.id)
        return memoryview(ffi.buffer(p, self.pages))

    def dirty_pages(self, clear: bool = True) -> list[int]:
        """Page numbers written since the last clear."""
        m = bytes(self.sync())
        out = [i for i, b in enumerate(m) if b]
        if clear:
            self.clear()
        return out

    def clear(self) -> None:
        lib.cr16_dirty_clear(self._cpu._cpu, self.id)

    def restore(self, saved: "bytes | bytearray") -> int:
        """Copy the pages written since the last clear back from ``saved`` (a
        whole-RAM copy), in C, and clear; returns how many pages."""
        n = lib.cr16_dirty_restore(self._cpu._cpu, self.id, ffi.from_buffer(saved), len(saved))
        if n < 0:
            raise ValueError("saved RAM must be exactly the size of guest RAM")
        return n

    def close(self) -> None:
        if self.id >= 0:
            lib.cr16_dirty_free(self._cpu._cpu, self.id)
            self.id = -1
