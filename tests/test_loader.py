"""ELF and raw-binary loading (aemu.hw.loader), with hand-made ELF files.

The ELF images are built here with struct, so these tests need no toolchain;
a few extra ones check real toolchain output when it is available.
"""
from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass

import pytest

from aemu.cpu import Cpu
from aemu.hw.loader import (
    HOST_BLOCK_MAGIC, NO_BSP_WARNING, LoadError, encode_host_block, load_binary, load_elf,
    write_host_block,
)
from conftest import toolchain_tool

RAM = 1 << 20

# movw $7,r2 ; movw $0x410,r0 ; excp svc   (exit(7) through the host-call interface)
EXIT7 = bytes.fromhex("b25a0700" "b05a1004" "c500")


@dataclass
class Seg:
    paddr: int
    data: bytes
    memsz: int | None = None
    vaddr: int | None = None
    flags: int = 7


def make_elf(segments: list[Seg], entry: int = 0x100, *, machine: int = 177, e_type: int = 2,
             ei_class: int = 1, ei_data: int = 1,
             symbols: dict[str, tuple[int, int]] | None = None) -> bytes:
    """A minimal ELF32 executable: header, program headers, data, optional .symtab."""
    phoff = 52
    data_off = phoff + 32 * len(segments)
    body = b""
    phdrs = b""
    for s in segments:
        off = data_off + len(body)
        memsz = len(s.data) if s.memsz is None else s.memsz
        vaddr = s.paddr if s.vaddr is None else s.vaddr
        phdrs += struct.pack("<IIIIIIII", 1, off if s.data else 0, vaddr, s.paddr, len(s.data),
                             memsz, s.flags, 2)
        body += s.data + bytes(-len(s.data) % 4)
    shoff = shnum = shstrndx = 0
    tail = b""
    if symbols is not None:
        strtab = b"\0"
        syms = bytes(16)  # the null symbol
        for name, (value, size) in symbols.items():
            syms += struct.pack("<IIIBBH", len(strtab), value, size, 0x11, 0, 1)  # GLOBAL OBJECT
            strtab += name.encode() + b"\0"
        shstr = b"\0.symtab\0.strtab\0.shstrtab\0"
        base = data_off + len(body)
        sym_off = base
        str_off = sym_off + len(syms)
        shs_off = str_off + len(strtab)
        tail = syms + strtab + shstr
        tail += bytes(-len(tail) % 4)
        shoff = base + len(tail)
        sh = bytes(40)
        sh += struct.pack("<IIIIIIIIII", 1, 2, 0, 0, sym_off, len(syms), 2, 1, 4, 16)
        sh += struct.pack("<IIIIIIIIII", 9, 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0)
        sh += struct.pack("<IIIIIIIIII", 17, 3, 0, 0, shs_off, len(shstr), 0, 0, 1, 0)
        tail += sh
        shnum, shstrndx = 4, 3
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1]) + bytes(9)
    header = ident + struct.pack("<HHIIIIIHHHHHH", e_type, machine, 1, entry, phoff, shoff,
                                 0xB1, 52, 32, len(segments), 40, shnum, shstrndx)
    return header + phdrs + body + tail


@pytest.fixture
def cpu() -> Cpu:
    return Cpu(RAM)


def test_loads_segments_and_starts_at_entry(cpu):
    cpu.set_state({"r": [0x1111] * 12 + [0x2222] * 4})
    elf = make_elf([Seg(0x100, EXIT7), Seg(0x2000, b"\x01\x02\x03\x04", memsz=0x10)], entry=0x100)
    image = load_elf(cpu, elf)
    assert cpu.read(0x100, len(EXIT7)) == EXIT7
    assert cpu.read(0x2000, 4) == b"\x01\x02\x03\x04"
    assert image.entry == 0x100 and cpu.pc == 0x100
    assert cpu.get_state()["r"] == [0] * 16          # registers reset, as the simulator starts
    assert [(s.paddr, s.filesz, s.memsz) for s in image.segments] == [
        (0x100, len(EXIT7), len(EXIT7)), (0x2000, 4, 0x10)]
    assert image.kind == "elf" and image.machine == 177


def test_bss_is_zeroed(cpu):
    cpu.write(0x2000, b"\xaa" * 0x40)
    load_elf(cpu, make_elf([Seg(0x2000, b"\x01\x02", memsz=0x40)], entry=0x2000))
    assert cpu.read(0x2000, 0x40) == b"\x01\x02" + bytes(0x3E)


def test_lma_and_vma_both_loaded(cpu):
    # .data run address 0x8000, image stored in "ROM" at 0x400 (gcc's default script)
    elf = make_elf([Seg(0x100, EXIT7), Seg(0x400, b"DATA", memsz=8, vaddr=0x8000)], entry=0x100)
    cpu.write(0x8000, b"\xff" * 8)
    cpu.write(0x404, b"\xee" * 4)
    load_elf(cpu, elf)
    assert cpu.read(0x400, 4) == b"DATA"                   # the simulator's load (LMA)
    assert cpu.read(0x8000, 8) == b"DATA" + bytes(4)       # the run-time image + zeroed tail
    assert cpu.read(0x404, 4) == b"\xee" * 4               # nothing zeroed at the LMA


def test_load_marks_pages_dirty(cpu):
    log = cpu.dirty_consumer()
    log.clear()
    load_elf(cpu, make_elf([Seg(0x3000, b"x" * 0x1800)], entry=0x3000))
    assert {3, 4} <= set(log.dirty_pages())


@pytest.mark.parametrize("machine", [177, 115, 103])
def test_accepted_machines(cpu, machine):
    image = load_elf(cpu, make_elf([Seg(0x100, EXIT7)], machine=machine))
    assert image.machine == machine


def test_wrong_machine(cpu):
    with pytest.raises(LoadError, match=r"wrong machine.*e_machine is 40\b"):
        load_elf(cpu, make_elf([Seg(0x100, EXIT7)], machine=40), name="arm.elf")


def test_not_elf(cpu):
    with pytest.raises(LoadError, match="not an ELF file.*--binary"):
        load_elf(cpu, b"MZ\x90\x00" + bytes(100))
    with pytest.raises(LoadError, match="not an ELF file"):
        load_elf(cpu, b"")


def test_elf64_and_big_endian(cpu):
    with pytest.raises(LoadError, match="ELF64.*ELF32"):
        load_elf(cpu, make_elf([Seg(0x100, EXIT7)], ei_class=2))
    with pytest.raises(LoadError, match="big-endian"):
        load_elf(cpu, make_elf([Seg(0x100, EXIT7)], ei_data=2))


def test_not_executable(cpu):
    with pytest.raises(LoadError, match="ET_REL"):
        load_elf(cpu, make_elf([Seg(0x100, EXIT7)], e_type=1))


def test_truncated(cpu):
    elf = make_elf([Seg(0x100, EXIT7 + bytes(200))])
    with pytest.raises(LoadError, match=r"truncated ELF file: segment 0 needs file bytes"):
        load_elf(cpu, elf[:-100], name="cut.elf")
    with pytest.raises(LoadError, match="truncated"):
        load_elf(cpu, elf[:60])
    with pytest.raises(LoadError, match="truncated"):
        load_elf(cpu, elf[:30])


def test_no_load_segment(cpu):
    elf = bytearray(make_elf([Seg(0x100, EXIT7)]))
    struct.pack_into("<I", elf, 52, 4)  # PT_LOAD -> PT_NOTE
    with pytest.raises(LoadError, match="no PT_LOAD segment"):
        load_elf(cpu, bytes(elf))


def test_segment_outside_ram(cpu):
    elf = make_elf([Seg(0x100, EXIT7), Seg(0xFFF00, b"", memsz=0x200)])
    with pytest.raises(LoadError, match=r"0xfff00\.\.0x100100\) lies outside guest RAM "
                                        r"\(0x0\.\.0x100000, 1 MiB\)"):
        load_elf(cpu, elf)


def test_missing_file(cpu, tmp_path):
    with pytest.raises(LoadError, match="cannot read"):
        load_elf(cpu, tmp_path / "nope.elf")


def test_symbols_and_host_block(cpu):
    elf = make_elf([Seg(0x100, EXIT7), Seg(0x1000, b"", memsz=1024)],
                   symbols={"__aemu_host": (0x1000, 1024), "_main": (0x100, 0)})
    image = load_elf(cpu, elf)
    assert image.symbol("_main") == 0x100
    assert image.symbol("nope") is None
    assert write_host_block(cpu, image, ["prog", "a b", "ü"]) is None
    raw = cpu.read(0x1000, 1024)
    magic, version, argc = struct.unpack_from("<IHH", raw)
    assert (magic, version, argc) == (HOST_BLOCK_MAGIC, 1, 3)
    assert raw[8:].split(b"\0")[:3] == [b"prog", b"a b", "ü".encode()]
    assert raw[8 + len(b"prog\0a b\0\xc3\xbc\0"):] == bytes(1024 - 8 - 12)


def test_host_block_does_not_fit(cpu):
    image = load_elf(cpu, make_elf([Seg(0x100, EXIT7)], symbols={"__aemu_host": (0x1000, 0)}))
    write_host_block(cpu, image, ["p"] + ["x" * 100] * 10)        # 0 size -> 1024 bytes
    with pytest.raises(LoadError, match="do not fit in the 1024-byte host block"):
        write_host_block(cpu, image, ["p"] + ["x" * 100] * 11)


def test_host_block_absent():
    assert encode_host_block(["a"], 16)[:8] == struct.pack("<IHH", HOST_BLOCK_MAGIC, 1, 1)
    cpu = Cpu(RAM)
    image = load_elf(cpu, make_elf([Seg(0x100, EXIT7)]))
    assert write_host_block(cpu, image, ["prog"]) is None
    assert write_host_block(cpu, image, ["prog", "arg"]) == NO_BSP_WARNING


def test_load_binary(cpu, tmp_path):
    image = load_binary(cpu, EXIT7, 0x200)
    assert cpu.read(0x200, len(EXIT7)) == EXIT7 and cpu.pc == 0x200 and image.entry == 0x200
    path = tmp_path / "img.bin"
    path.write_bytes(b"\x00\x00" + EXIT7)
    image = load_binary(cpu, path, 0x300, entry=0x302)
    assert cpu.pc == 0x302 and image.kind == "binary" and image.name == str(path)
    with pytest.raises(LoadError, match="do not fit in guest RAM"):
        load_binary(cpu, bytes(16), RAM - 8)
    with pytest.raises(LoadError, match="odd"):
        load_binary(cpu, EXIT7, 0x200, entry=0x201)


def test_runs_after_load(cpu):
    from aemu.cpu import Exit

    load_elf(cpu, make_elf([Seg(0x100, EXIT7)]))
    why, _ = cpu.run(100)
    assert why == Exit.SYSCALL and cpu.reg(0) == 0x410 and cpu.reg(2) == 7


# -- real toolchain output ------------------------------------------------------

def _build(tmp_path, source: str, *flags: str) -> bytes:
    gcc = toolchain_tool("gcc")
    src = tmp_path / "p.c"
    src.write_text(source)
    out = tmp_path / "p.elf"
    subprocess.run([gcc, *flags, "-O2", "-o", str(out), str(src)], check=True,
                   capture_output=True)
    return out.read_bytes()


@pytest.mark.toolchain
def test_toolchain_msim_elf(tmp_path):
    elf = _build(tmp_path, "int x = 0x1234; int main(void) { return x; }\n", "-msim")
    cpu = Cpu(RAM)
    image = load_elf(cpu, elf)
    assert image.entry == image.symbol("_start")
    assert cpu.read_u16(image.symbol("_x")) == 0x1234


@pytest.mark.toolchain
def test_toolchain_default_script_data_at_vma(tmp_path):
    # without -msim, .data runs at 4 MiB but is stored after the code (LMA != VMA)
    elf = _build(tmp_path, "int x = 0x1234; int main(void) { return x; }\n")
    cpu = Cpu(16 << 20)
    image = load_elf(cpu, elf)
    data = [s for s in image.segments if s.vaddr != s.paddr and s.filesz]
    assert data and data[0].vaddr >= 4 << 20
    assert cpu.read_u16(image.symbol("_x")) == 0x1234
