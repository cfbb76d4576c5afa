"""Load guest programs into a :class:`~aemu.cpu.Cpu`: ELF executables and raw binaries.

ELF files are parsed with pyelftools.  What is accepted: ELF32, little-endian,
``ET_EXEC``, ``e_machine`` 177 (``EM_CR16``), 115 (``EM_CR16_OLD``, which GNU
binutils also accept) or 103 (``EM_CR``, written by the old National
Semiconductor toolchain).

Where segments go (the LMA/VMA question)
----------------------------------------
The reference simulator (``cr16-elf-run``) copies every ``PT_LOAD`` segment to
its *physical* address ``p_paddr`` (the load address, LMA).  Programs linked
with ``-msim`` (``sim.ld``) have LMA = VMA everywhere, so that is all they need.
Programs linked with gcc's default script (or a board script) run ``.data``
from RAM but keep its initial image in ROM (``.data > ram AT > rom``), and
crt1 never copies it, so a plain LMA load leaves ``.data`` uninitialised.
aemu therefore does both:

1. every segment's file bytes are written at ``p_paddr`` (what the simulator
   does, and what a start-up routine that copies ``.data`` itself expects);
2. if ``p_vaddr != p_paddr``, the file bytes are written at ``p_vaddr`` too,
   after all the LMA copies, so the run-time image wins where they overlap;
3. the ``p_memsz - p_filesz`` tail (.bss, heap, stacks) is zeroed at the run
   address ``p_vaddr`` only (the LMAs of NOLOAD segments are meaningless and
   may overlap real data).

So both ``-msim`` programs and default-script programs start with initialised
data.  Every written range must lie inside guest RAM, else :class:`LoadError`.

The host block
--------------
Programs linked with aemu's BSP reserve a 1024-byte area at the symbol
``__aemu_host``; :func:`write_host_block` fills it with the command-line
arguments::

    u32 magic 0x554D4541 ("AEMU")   u16 version (1)   u16 argc
    argc NUL-terminated strings (argv[0] is the program name), then zeros
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from aemu.cpu import Cpu

__all__ = [
    "EM_CR", "EM_CR16", "EM_CR16_OLD", "HOST_BLOCK_MAGIC", "HOST_BLOCK_SIZE", "HOST_BLOCK_SYMBOL",
    "HOST_BLOCK_VERSION", "LoadError", "LoadedImage", "Segment", "load_binary", "load_elf",
    "parse_elf", "write_host_block",
]

EM_CR = 103          #: National Semiconductor CompactRISC (old NSC toolchain)
EM_CR16_OLD = 115    #: the pre-assignment value GNU binutils still accept
EM_CR16 = 177        #: what cr16-elf-gcc/ld write
ACCEPTED_MACHINES = {EM_CR16: "EM_CR16", EM_CR16_OLD: "EM_CR16_OLD", EM_CR: "EM_CR"}

ET_NAMES = {0: "ET_NONE", 1: "ET_REL (a relocatable object file: link it first)",
            2: "ET_EXEC", 3: "ET_DYN (a shared object)", 4: "ET_CORE (a core dump)"}
PT_LOAD = 1

HOST_BLOCK_SYMBOL = "__aemu_host"
HOST_BLOCK_MAGIC = 0x554D4541      # b"AEMU" little-endian
HOST_BLOCK_VERSION = 1
HOST_BLOCK_SIZE = 1024             # used when the symbol carries no size
NO_BSP_WARNING = "program was not built with the aemu BSP; arguments ignored"


class LoadError(Exception):
    """The image cannot be loaded; the message says why."""


@dataclass(frozen=True)
class Segment:
    """One loaded range: file bytes at ``paddr`` (and ``vaddr``), zeros up to ``memsz``."""

    paddr: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int = 7  #: PF_X 1 | PF_W 2 | PF_R 4

    def __str__(self) -> str:
        where = f"{self.vaddr:#x}" if self.vaddr == self.paddr else \
            f"{self.vaddr:#x} (loaded from {self.paddr:#x})"
        return f"segment at {where}, {self.filesz:#x} bytes of data, {self.memsz:#x} in memory"


@dataclass
class LoadedImage:
    """What was loaded: entry point, segments and the symbol table."""

    name: str
    entry: int
    segments: list[Segment]
    kind: str = "elf"                      #: "elf" or "binary"
    machine: int | None = None             #: e_machine for ELF images
    #: symbol name -> (value, size); empty for raw binaries and stripped ELFs
    symbols: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def symbol(self, name: str) -> int | None:
        """The value (address) of symbol ``name``, or None."""
        entry = self.symbols.get(name)
        return None if entry is None else entry[0]

    def symbol_size(self, name: str) -> int | None:
        entry = self.symbols.get(name)
        return None if entry is None else entry[1]


# -- ELF ----------------------------------------------------------------------

def _read_source(source: bytes | bytearray | memoryview | str | os.PathLike) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<memory>"
    path = Path(source)
    try:
        return path.read_bytes(), str(source)
    except IsADirectoryError:
        raise LoadError(f"{source}: is a directory, not a program") from None
    except OSError as exc:
        raise LoadError(f"{source}: cannot read: {exc.strerror or exc}") from None


def parse_elf(data: bytes, ram_size: int,
              name: str = "<memory>") -> tuple[LoadedImage, list[tuple[Segment, bytes]]]:
    """Validate an ELF image for a CPU with ``ram_size`` bytes of RAM.

    Returns the image description and, per segment, its file bytes.  Raises
    :class:`LoadError` naming the problem.
    """
    if len(data) < 4 or data[:4] != b"\x7fELF":
        head = data[:4].hex(" ") if data else "empty file"
        raise LoadError(f"{name}: not an ELF file (starts with {head}); "
                        "for a raw binary image use --binary ADDR")
    if len(data) < 16:
        raise LoadError(f"{name}: truncated ELF file ({len(data)} bytes, no complete ELF header)")
    ei_class, ei_data = data[4], data[5]
    if ei_class != 1:
        what = "ELF64" if ei_class == 2 else f"unknown ELF class {ei_class}"
        raise LoadError(f"{name}: {what} file; CR16 programs are ELF32")
    if ei_data != 1:
        what = "big-endian" if ei_data == 2 else f"unknown data encoding {ei_data}"
        raise LoadError(f"{name}: {what} ELF file; CR16 programs are little-endian")
    if len(data) < 52:
        raise LoadError(f"{name}: truncated ELF file ({len(data)} bytes, the ELF header needs 52)")
    (e_type, e_machine, _e_version, e_entry, e_phoff, _e_shoff, _e_flags, _e_ehsize,
     e_phentsize, e_phnum) = struct.unpack_from("<HHIIIIIHHH", data, 16)
    if e_machine not in ACCEPTED_MACHINES:
        raise LoadError(f"{name}: wrong machine: e_machine is {e_machine}, not a CR16 program "
                        f"(expected {EM_CR16}, {EM_CR16_OLD} or {EM_CR})")
    if e_type != 2:
        raise LoadError(f"{name}: not an executable: ELF type is "
                        f"{ET_NAMES.get(e_type, str(e_type))}, expected ET_EXEC")
    if e_phnum == 0:
        raise LoadError(f"{name}: no program headers, so nothing to load (no PT_LOAD segment)")
    if e_phentsize < 32:
        raise LoadError(f"{name}: malformed ELF: program header size {e_phentsize} < 32")
    ph_end = e_phoff + e_phnum * e_phentsize
    if ph_end > len(data):
        raise LoadError(f"{name}: truncated ELF file: the program headers end at byte {ph_end:#x} "
                        f"but the file has only {len(data):#x} bytes")

    from elftools.elf.elffile import ELFFile  # pyelftools

    try:
        elf = ELFFile(io.BytesIO(data))
        phdrs = [elf.get_segment(i).header for i in range(elf.num_segments())]
    except Exception as exc:  # pyelftools raises several exception types
        raise LoadError(f"{name}: malformed ELF file: {exc}") from None

    loads: list[tuple[Segment, bytes]] = []
    for i, ph in enumerate(phdrs):
        if ph["p_type"] != "PT_LOAD" and ph["p_type"] != PT_LOAD:
            continue
        seg = Segment(ph["p_paddr"], ph["p_vaddr"], ph["p_filesz"], ph["p_memsz"], ph["p_flags"])
        if seg.memsz == 0 and seg.filesz == 0:
            continue
        off = ph["p_offset"]
        if seg.filesz > seg.memsz:
            raise LoadError(f"{name}: malformed ELF: segment {i} has p_filesz {seg.filesz:#x} "
                            f"> p_memsz {seg.memsz:#x}")
        if off + seg.filesz > len(data):
            raise LoadError(f"{name}: truncated ELF file: segment {i} needs file bytes "
                            f"{off:#x}..{off + seg.filesz:#x} but the file has only "
                            f"{len(data):#x} bytes")
        ranges = [("run address", seg.vaddr, seg.memsz)]
        if seg.paddr != seg.vaddr and seg.filesz:
            ranges.append(("load address", seg.paddr, seg.filesz))
        for what, start, size in ranges:
            if start + size > ram_size:
                raise LoadError(
                    f"{name}: segment {i} ({what} {start:#x}..{start + size:#x}) lies outside "
                    f"guest RAM (0x0..{ram_size:#x}, {_size_str(ram_size)}); "
                    f"use a larger --ram-size or relink the program")
        loads.append((seg, data[off:off + seg.filesz]))
    if not loads:
        raise LoadError(f"{name}: no PT_LOAD segment, so nothing to load")
    if e_entry >= ram_size:
        raise LoadError(f"{name}: entry point {e_entry:#x} lies outside guest RAM "
                        f"(0x0..{ram_size:#x})")
    try:
        symbols = _symbols(elf)
    except Exception as exc:
        raise LoadError(f"{name}: malformed or truncated ELF symbol table: {exc}") from None
    image = LoadedImage(name=name, entry=e_entry, segments=[s for s, _ in loads], kind="elf",
                        machine=e_machine, symbols=symbols)
    return image, loads


def _symbols(elf) -> dict[str, tuple[int, int]]:
    """Defined symbols of .symtab.  The table is unpacked directly (pyelftools
    builds an object per symbol, ~25 us each: 0.1 s for a newlib program)."""
    out: dict[str, tuple[int, int]] = {}
    if elf.num_sections() == 0:
        return out
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None or symtab["sh_type"] != "SHT_SYMTAB":
        return out
    table = symtab.data()
    strtab = elf.get_section(symtab["sh_link"]).data()
    usable = len(table) - len(table) % 16
    for st_name, value, size, info, _other, shndx in struct.iter_unpack("<IIIBBH", table[:usable]):
        if shndx == 0 or st_name == 0 or st_name >= len(strtab):   # undefined / unnamed
            continue
        end = strtab.find(b"\0", st_name)
        name = strtab[st_name:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
        # a global definition wins over a local one of the same name
        if name in out and info >> 4 == 0:     # STB_LOCAL
            continue
        out[name] = (value, size)
    return out


def _size_str(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def load_elf(cpu: "Cpu", source: bytes | bytearray | str | os.PathLike, *,
             name: str | None = None, start: bool = True) -> LoadedImage:
    """Load an ELF executable (a path or its bytes) into ``cpu``'s RAM.

    With ``start`` (the default) the registers are reset to zero and PC is set
    to the entry point, as the reference simulator starts a program.
    """
    data, default_name = _read_source(source)
    image, loads = parse_elf(data, cpu.ram_size, name or default_name)
    for seg, payload in loads:          # 1. the simulator's load: by LMA
        if payload:
            cpu.write(seg.paddr, payload)
    for seg, payload in loads:          # 2. the run-time image, 3. zeroed tails
        if seg.vaddr != seg.paddr and payload:
            cpu.write(seg.vaddr, payload)
        if seg.memsz > seg.filesz:
            cpu.zero(seg.vaddr + seg.filesz, seg.memsz - seg.filesz)
    if start:
        cpu.reset()
        cpu.pc = image.entry
    return image


def load_binary(cpu: "Cpu", data: bytes | bytearray | str | os.PathLike, addr: int,
                entry: int | None = None, *, name: str | None = None,
                start: bool = True) -> LoadedImage:
    """Load a raw binary image (a path or bytes) at ``addr``; entry defaults to ``addr``."""
    payload, default_name = _read_source(data)
    name = name or default_name
    if addr < 0 or addr + len(payload) > cpu.ram_size:
        raise LoadError(f"{name}: {len(payload):#x} bytes at {addr:#x} "
                        f"(up to {addr + len(payload):#x}) do not fit in guest RAM "
                        f"(0x0..{cpu.ram_size:#x}, {_size_str(cpu.ram_size)})")
    entry = addr if entry is None else entry
    if not 0 <= entry < cpu.ram_size:
        raise LoadError(f"{name}: entry point {entry:#x} lies outside guest RAM "
                        f"(0x0..{cpu.ram_size:#x})")
    if entry & 1:
        raise LoadError(f"{name}: entry point {entry:#x} is odd; instructions are 2-byte aligned")
    if payload:
        cpu.write(addr, payload)
    if start:
        cpu.reset()
        cpu.pc = entry
    seg = Segment(addr, addr, len(payload), len(payload))
    return LoadedImage(name=name, entry=entry, segments=[seg], kind="binary")


# -- the host block -----------------------------------------------------------

def encode_host_block(argv: Sequence[str | bytes], size: int = HOST_BLOCK_SIZE) -> bytes:
    """The host block for ``argv`` (argv[0] = program name), padded to ``size``."""
    if len(argv) > 0xFFFF:
        raise LoadError(f"too many program arguments ({len(argv)})")
    strings = [os.fsencode(a) for a in argv]
    for s in strings:
        if b"\0" in s:
            raise LoadError(f"program argument {s!r} contains a NUL byte")
    block = struct.pack("<IHH", HOST_BLOCK_MAGIC, HOST_BLOCK_VERSION, len(strings))
    block += b"".join(s + b"\0" for s in strings)
    if len(block) > size:
        raise LoadError(f"program arguments do not fit in the {size}-byte host block "
                        f"({HOST_BLOCK_SYMBOL}): they need {len(block)} bytes")
    return block + bytes(size - len(block))


def write_host_block(cpu: "Cpu", image: LoadedImage, argv: Sequence[str | bytes]) -> str | None:
    """Pass ``argv`` to the guest through ``__aemu_host``.

    Returns None, or a warning for the user when the program has no host
    block but arguments beyond argv[0] were given (they are then ignored).
    Raises :class:`LoadError` if the arguments do not fit.
    """
    addr = image.symbol(HOST_BLOCK_SYMBOL)
    if addr is None:
        return NO_BSP_WARNING if len(argv) > 1 else None
    size = image.symbol_size(HOST_BLOCK_SYMBOL) or HOST_BLOCK_SIZE
    block = encode_host_block(argv, size)
    if addr + size > cpu.ram_size:
        raise LoadError(f"{image.name}: host block {HOST_BLOCK_SYMBOL} at {addr:#x}+{size:#x} "
                        f"lies outside guest RAM (0x0..{cpu.ram_size:#x})")
    cpu.write(addr, block)
    return None
