"""The live-migration test guest (tests/firmware/migrate/, QEMU's "A-B"
guest for aemu): where its ELFs are, the board it runs on, where its buffer
is, and QEMU's check_guests_ram rule for it.  A helper for tests; no tests.

The guest prints ``A`` on UART0, then forever increments the first byte of
every 4 KiB page of a 13 MiB buffer and, after each full sweep, checks the
buffer and prints ``B`` (``E<page hex>\\n`` and exit status 1 on a mismatch).
``pattern_idle.elf`` does one sweep and then only a 100 Hz timer tick that
increments ``buf[1]`` (the second byte of page 0).
"""
from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile

from aemu.hw.board import Board, default_board
from aemu.testing.uart import Capture

MIGRATE_FW = Path(__file__).resolve().parent / "firmware" / "migrate"
PATTERN_ELF = MIGRATE_FW / "pattern.elf"
PATTERN_IDLE_ELF = MIGRATE_FW / "pattern_idle.elf"

PAGE_SIZE = 4096
PATTERN_RAM = 16 << 20


def pattern_board() -> Board:
    """The default board with 16 MiB of RAM (the guest's buffer ends there).

    The BSP's stack and heap are placed at link time (aemu.ld: everything
    below 0x260000), not from the board's RAM size, so a smaller RAM only has
    to hold the buffer: 0x300000..0x1000000."""
    return default_board().with_changes(ram_size=PATTERN_RAM)


def _symbol(elf: ELFFile, name: str):
    table = elf.get_section_by_name(".symtab")
    if table is None:
        raise ValueError("the ELF has no symbol table")
    # cr16-elf C symbols carry a leading underscore
    for candidate in (f"_{name}", name):
        syms = table.get_symbol_by_name(candidate)
        if syms:
            return syms[0]
    raise KeyError(f"symbol {name!r} not in the ELF")


def _read_u32(elf: ELFFile, addr: int) -> int:
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr and \
                addr + 4 <= seg["p_vaddr"] + seg["p_filesz"]:
            off = addr - seg["p_vaddr"]
            return int.from_bytes(seg.data()[off:off + 4], "little")
    raise ValueError(f"address {addr:#x} is not in a loaded segment")


def pattern_layout(elf_path: str | Path = PATTERN_ELF) -> tuple[int, int]:
    """``(buf_addr, npages)``: the absolute symbol ``pattern_buf`` and the
    value of the ``const uint32_t pattern_pages``, from the ELF."""
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        buf = _symbol(elf, "pattern_buf")["st_value"]
        npages = _read_u32(elf, _symbol(elf, "pattern_pages")["st_value"])
    return buf, npages


def pattern_bytes(ram: bytes | bytearray | memoryview, buf_addr: int, npages: int) -> bytes:
    """The test byte (first byte) of every page of the buffer."""
    end = buf_addr + npages * PAGE_SIZE
    if buf_addr < 0 or end > len(ram):
        raise ValueError(f"buffer {buf_addr:#x}..{end:#x} is outside RAM ({len(ram):#x} bytes)")
    return bytes(memoryview(ram)[buf_addr:end:PAGE_SIZE])


def check_pattern_ram(ram: bytes | bytearray | memoryview, buf_addr: int, npages: int) -> int:
    """QEMU's check_guests_ram for this guest: every page's test byte is the
    same, except at most one "edge" where the value drops by exactly one
    (mod 256) -- the pages before it were incremented by the sweep that was
    interrupted, the ones from it on not yet.  Raises AssertionError listing
    the first 10 bad pages otherwise; returns the value at the first page."""
    vals = pattern_bytes(ram, buf_addr, npages)
    first = last = vals[0]
    hit_edge = False
    bad: list[str] = []
    for i in range(1, npages):
        b = vals[i]
        if b != last:
            if (b + 1) % 256 == last and not hit_edge:
                hit_edge = True
            else:
                bad.append(f"page {i} ({buf_addr + i * PAGE_SIZE:#x}): {b:#04x} after "
                           f"{last:#04x}")
        last = b
    if bad:
        shown = "; ".join(bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise AssertionError(f"guest RAM inconsistent: {len(bad)} bad pages, first byte "
                             f"{first:#04x}, edge {'seen' if hit_edge else 'not seen'}: "
                             f"{shown}{more}")
    return first


class UartCapture(Capture):
    """A UART back-end (``Machine(backends={"uart0": UartCapture()})``) that
    keeps what the guest sent (``data``); no input, so a guest that waits for
    a byte with nothing else armed is reported as suspended, not left waiting."""

    input_possible = False

    @property
    def text(self) -> str:
        return self.data.decode("latin-1")
