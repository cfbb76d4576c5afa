"""aemu's streams against the two rules QEMU's scripts/analyze-migration.py
lives by (qemu-migration.md §8.4), checked here with code of our own:

1. **Finding the description.**  The analyzer does not walk to the EOF: it
   takes the last 10 MiB of the file, the last NUL byte in it, the first
   ``{`` after that, and wants ``0x06`` and a be32 length in the 5 bytes
   before it.  So the JSON must hold no NUL, and the length bytes after their
   last NUL must hold no ``{``.
2. **Walking by the description.**  Every section is read with nothing but
   the JSON: each field's ``type`` and ``size`` (``array_len`` and ``index``
   for arrays, ``capability``: a length byte and the name, structs and
   subsections recursively), and the next byte must be the section's footer.
   The ram section is read by its record grammar: MEM_SIZE's total is used up
   by the block lengths exactly (the reader subtracts them until zero), then
   EOS; with mapped-ram each block has its header and the stream goes on at
   ``pages_offset + length``, and RAM is read back as ``length // page_size``
   pages from the bitmap.

Both run over an inline stream (``save_vm``), a full snapshot file and a diff
snapshot file, for 20 MiB of RAM and for a RAM size that is not a multiple of
the page size (the ram block is whole pages, the exact size travels in the
configuration).  The RAM each walk reads back must be the VM's.
"""
from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aemu.hw.board import default_board
from aemu.hw.machine import Machine
from aemu.loop import RunState
from aemu.savevm.codec import StreamError
from aemu.savevm.machine import load_vm, save_vm
from aemu.savevm.snapfile import load_files, save_file
from aemu.savevm.stream import GlobalState, Section, write_stream
from aemu.savevm.vmstate import VMStateDescription, u8

IDLE = Path(__file__).resolve().parent / "firmware" / "irq" / "idle.elf"
PAGE = 4096
ODD_RAM = 2421122            #: idle.elf needs 2421120; 591 pages and 386 bytes
RAM_SIZES = [20 << 20, ODD_RAM]
KINDS = ["inline", "full", "diff"]
WINDOW = 10 << 20            #: how much of the file's end the locator reads


class Bad(AssertionError):
    """The stream breaks a rule the analyzer relies on."""


def be(data: Any, pos: int, n: int) -> int:
    if pos + n > len(data):
        raise Bad(f"{n} bytes needed at {pos}, the file has {len(data)}")
    return int.from_bytes(data[pos:pos + n], "big")


# -- rule 1: the description locator ---------------------------------------------------------
def locate_description(data: bytes) -> tuple[int, dict]:
    """Where the analyzer believes the JSON starts, and the JSON it reads."""
    base = max(0, len(data) - WINDOW)
    tail = data[base:]
    nul = tail.rfind(b"\0")
    brace = tail.find(b"{", nul)
    if brace < 5:
        raise Bad("no '{' after the last NUL byte")
    at = base + brace
    if data[at - 5] != 0x06:
        raise Bad(f"byte {at - 5} before the guessed JSON is {data[at - 5]:#x}, not 0x06")
    length = be(data, at - 4, 4)
    return at, json.loads(data[at:at + length])


# -- rule 2: the walk -------------------------------------------------------------------------
class Walk:
    """Reads a stream the way the analyzer does, checking as it goes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.mapped = False
        self.page_size = 0
        #: per ram block: its length and the RAM image read back from the stream
        self.blocks: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, dict[str, Any]] = {}
        self.eof = -1

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Bad(f"{n} bytes needed at {self.pos}, the file has {len(self.data)}")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def name(self) -> str:
        return self.take(self.uint(1)).decode("ascii")

    # -- vmstate payloads, by the description alone
    def payload(self, desc: dict) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for f in desc["fields"]:
            n = f.get("array_len")
            items = [self.field(f) for _ in range(n)] if n is not None else self.field(f)
            if n is not None or "index" in f:
                got = values.setdefault(f["name"], [])
                got.extend(items if n is not None else [items])
            else:
                values[f["name"]] = items
        for sub in desc.get("subsections", ()):
            at = self.pos
            if self.uint(1) != 0x05:
                raise Bad(f"subsection {sub['vmsd_name']} expected at {at}")
            name = self.name()
            if name != sub["vmsd_name"] or self.uint(4) != sub["version"]:
                raise Bad(f"subsection at {at} is {name!r}, the description lists "
                          f"{sub['vmsd_name']!r} version {sub['version']}")
            values[name] = self.payload(sub)
        return values

    def field(self, f: dict) -> Any:
        kind, size = f["type"], f["size"]
        if kind == "struct":
            start = self.pos
            value = self.payload(f["struct"])
            if self.pos - start != size:
                raise Bad(f"struct {f['name']}: {self.pos - start} bytes, described {size}")
            return value
        if kind == "capability":                     # read by its length byte, not "size"
            start = self.pos
            value = self.name()
            if self.pos - start != size:              # QEMU's size: what the element took
                raise Bad(f"capability {value!r}: {self.pos - start} bytes, described {size}")
            return value
        raw = self.take(size)
        if kind == "bool":
            return raw != b"\0"
        if kind.startswith(("uint", "int")):
            return int.from_bytes(raw, "big", signed=kind.startswith("int"))
        return raw

    # -- the ram section's records
    def ram_setup(self) -> None:
        head = self.uint(8)
        flags, total = head & (self.page_size - 1), head & ~(self.page_size - 1)
        if flags != 0x04:
            raise Bad(f"ram START begins with flags {flags:#x}, not MEM_SIZE")
        left = total
        while left > 0:                               # as the readers do: subtract to zero
            name = self.name()
            length = self.uint(8)
            left -= length
            block: dict[str, Any] = {"length": length,
                                     "image": bytearray(length), "present": set()}
            self.blocks[name] = block
            if self.mapped:
                self.mapped_block(block)
        if left != 0:
            raise Bad(f"ram block lengths add up to {total - left}, MEM_SIZE says {total}")
        self.ram_records()

    def mapped_block(self, block: dict) -> None:
        version, page_size = self.uint(4), self.uint(8)
        bitmap_at, pages_at = self.uint(8), self.uint(8)
        if version != 1 or page_size != self.page_size:
            raise Bad(f"mapped-ram header version {version}, page size {page_size}")
        length = block["length"]
        npages = length // page_size                  # whole pages only, as the analyzer
        bitmap = self.data[bitmap_at:bitmap_at + -(-npages // 8)]
        if bitmap_at < self.pos or pages_at % page_size or \
                pages_at + length > len(self.data) or len(bitmap) * 8 < npages:
            raise Bad(f"mapped-ram offsets {bitmap_at}, {pages_at} do not fit the file")
        for i in range(npages):
            if bitmap[i // 8] >> (i % 8) & 1:
                start = pages_at + i * page_size
                block["image"][i * page_size:(i + 1) * page_size] = \
                    self.data[start:start + page_size]
                block["present"].add(i)
        self.pos = pages_at + length

    def ram_records(self) -> None:
        block = None
        while True:
            head = self.uint(8)
            flags, addr = head & (self.page_size - 1), head & ~(self.page_size - 1)
            if flags == 0x10:                          # EOS
                return
            if self.mapped or flags & ~(0x08 | 0x02 | 0x20) or not flags & (0x08 | 0x02):
                raise Bad(f"ram record flags {flags:#x} at {self.pos - 8}")
            if not flags & 0x20:                       # no CONTINUE: the block's name
                block = self.blocks[self.name()]
            if block is None or addr + self.page_size > block["length"]:
                raise Bad(f"ram page at {addr:#x} outside its block")
            if flags & 0x08:
                block["image"][addr:addr + self.page_size] = self.take(self.page_size)
            elif self.uint(1) != 0:
                raise Bad("zero page with a non-zero fill")
            block["present"].add(addr // self.page_size)

    # -- the stream
    def run(self, desc: dict) -> Walk:
        self.page_size = desc["page_size"]
        if self.take(4) != b"QEVM" or self.uint(4) != 3:
            raise Bad("not a version 3 QEVM stream")
        devices = {(d["name"], d["instance_id"]): d for d in desc["devices"]}
        open_ids: dict[int, str] = {}
        while True:
            kind = self.uint(1)
            if kind == 0x00:
                self.eof = self.pos - 1
                return self
            if kind == 0x07:
                config = self.payload(desc["configuration"])
                caps = config.get("configuration/capabilities", {}).get("capabilities", [])
                self.mapped = "mapped-ram" in caps
                self.sections["configuration"] = config
                continue
            sid = self.uint(4)
            if kind in (0x01, 0x04):
                name, instance, version = self.name(), self.uint(4), self.uint(4)
                if name == "ram" and instance == 0:
                    if version != 4 or kind != 0x01:
                        raise Bad(f"ram section kind {kind}, version {version}")
                    open_ids[sid] = name
                    self.ram_setup()
                else:
                    d = devices.get((name, instance))
                    if d is None:
                        raise Bad(f"section {name!r} instance {instance} is not described")
                    if d["version"] != version:
                        raise Bad(f"section {name!r}: version {version}, "
                                  f"described {d['version']}")
                    self.sections[name] = self.payload(d)
            elif kind in (0x02, 0x03):
                if sid not in open_ids:
                    raise Bad(f"PART/END of section id {sid}, never started")
                self.ram_records()
            else:
                raise Bad(f"section type {kind:#x} at {self.pos - 5}")
            at = self.pos
            if self.uint(1) != 0x7E or self.uint(4) != sid:
                raise Bad(f"the walk of section {sid} ends at {at}, not at its footer")


# -- the VM and its files ------------------------------------------------------------------------
async def _make(d: Path, ram_size: int) -> dict[str, Any]:
    board = default_board().with_changes(ram_size=ram_size)
    vm = Machine(board, str(IDLE), args=["1", "1000"], start_paused=True,
                 backends={"uart0": "none"}, stdout=io.BytesIO())
    await vm.start()
    try:
        await vm.run_until(cycles=3_000_017)
        (d / "inline.qevm").write_bytes(bytes(save_vm(vm)))
        await save_file(vm, d / "full.snap")
        nonzero = vm.cpu.nonzero_pages()
        last = (ram_size - 1) // PAGE
        diff = sorted({*nonzero[:3], last, last - 7})        # a zero page among them
        await save_file(vm, d / "diff.snap", pages=diff)
        t0 = vm.devices["timer0"]
        return {"dir": d, "ram": bytes(vm.cpu.ram), "ram_size": ram_size, "diff": diff,
                "regs": vm.cpu.get_state(), "insns": vm.cpu.insn_count,
                "timer0": (t0.ctrl, t0.reload, t0.start_cycle), "board": board}
    finally:
        await vm.close()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    out = {}
    for size in RAM_SIZES:
        d = tmp_path_factory.mktemp(f"conf{size}")
        out[size] = asyncio.run(_make(d, size))
    return out


FILES = {"inline": "inline.qevm", "full": "full.snap", "diff": "diff.snap"}


def _data(made: dict, size: int, kind: str) -> tuple[bytes, dict]:
    m = made[size]
    return (m["dir"] / FILES[kind]).read_bytes(), m


@pytest.mark.parametrize("size", RAM_SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_the_locator_finds_the_description(made: dict, size: int, kind: str) -> None:
    data, _ = _data(made, size, kind)
    at, desc = locate_description(data)
    # it is the real one: right after EOF and 0x06 + length, running to the end
    walk = Walk(data).run(desc)
    assert at == walk.eof + 6 and data[walk.eof + 1] == 0x06
    assert at + be(data, at - 4, 4) == len(data)
    assert b"\0" not in data[at:]
    length_bytes = data[at - 4:at]
    assert b"{" not in length_bytes.rsplit(b"\0", 1)[-1]
    assert desc["page_size"] == PAGE and desc["devices"]


@pytest.mark.parametrize("size", RAM_SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_section_walks_to_its_footer(made: dict, size: int, kind: str) -> None:
    data, m = _data(made, size, kind)
    _, desc = locate_description(data)
    walk = Walk(data).run(desc)
    assert walk.mapped == (kind != "inline")
    assert list(walk.sections) == ["configuration", "icu", "cpu", "timer0", "timer1", "uart0",
                                   "wdt", "clock", "globalstate"]
    config = walk.sections["configuration"]
    assert config["name"] == b"aemu-default"
    exact = config.get("configuration/aemu-ram-size")
    assert (exact is not None) == bool(size % PAGE)
    assert exact is None or exact["ram_size"] == size
    # the values decoded by the description are the VM's
    cpu, regs = walk.sections["cpu"], m["regs"]
    assert cpu["r"] == list(regs["r"]) and cpu["pc"] == regs["pc"]
    assert (cpu["psr"], cpu["isp"], cpu["intbase"]) == (regs["psr"], regs["isp"],
                                                        regs["intbase"])
    assert cpu["insns"] == m["insns"]
    t0 = walk.sections["timer0"]
    assert (t0["ctrl"], t0["reload"], t0["start_cycle"]) == m["timer0"]
    assert walk.sections["globalstate"]["buf"].startswith(b"paused\0")
    # RAM read back as the analyzer reads it: all of it, in whole pages
    (name, block), = walk.blocks.items()
    assert name == "cr16.ram"
    assert block["length"] == -(-size // PAGE) * PAGE        # whole pages covering RAM
    image, ram = bytes(block["image"]), m["ram"]
    assert not any(image[size:])
    if kind == "diff":
        assert sorted(block["present"]) == m["diff"]
        for p in m["diff"]:
            assert image[:size][p * PAGE:(p + 1) * PAGE] == ram[p * PAGE:(p + 1) * PAGE]
    else:
        assert image[:size] == ram


def test_the_walk_refuses_block_lengths_that_miss_the_total(made: dict) -> None:
    """The rule aemu broke: a block of the exact (not whole-page) RAM size
    under a MEM_SIZE total of whole pages leaves the reader with bytes to
    account for, and it reads the next record as another block."""
    data, _ = _data(made, ODD_RAM, "inline")
    _, desc = locate_description(data)
    rounded = (-(-ODD_RAM // PAGE) * PAGE).to_bytes(8, "big")
    block = b"\x08cr16.ram" + rounded
    at = data.index(block) + 9
    broken = data[:at] + ODD_RAM.to_bytes(8, "big") + data[at + 8:]
    with pytest.raises(Bad):
        Walk(broken).run(desc)


def _toy_stream(name_len: int) -> bytes:
    vmsd = VMStateDescription("toy", fields=[u8("f" * name_len)])
    obj = type("Toy", (), {"f" * name_len: 7})()
    return bytes(write_stream("toy-board", bytes(2 * PAGE), [Section("toy", 0, vmsd, obj)],
                              GlobalState("paused")))


def test_description_lengths_with_a_brace_byte_are_padded() -> None:
    """0x7b is '{': a description length whose bytes after their last NUL
    hold one would send the locator to the wrong place.  Sweep more than 256
    consecutive lengths (every low byte), and one in 0x7b00..0x7bff."""
    lengths = set()
    for n in [*range(1, 300), 31_000]:
        data = _toy_stream(n)
        at, desc = locate_description(data)
        walk = Walk(data).run(desc)
        assert at == walk.eof + 6 and at + be(data, at - 4, 4) == len(data)
        assert walk.sections["toy"] == {"f" * n: 7}
        lengths.add(be(data, at - 4, 4))
    assert 0x7C00 in lengths                  # the JSON of 0x7bxx bytes, padded
    assert len({n & 0xFF for n in lengths}) >= 255 and not any(
        n & 0xFF == 0x7B or n >> 8 & 0xFF == 0x7B for n in lengths)


def test_streams_of_older_aemu_still_load(made: dict) -> None:
    """Before the ram block became whole pages, aemu wrote the exact RAM size
    as the block length and no aemu-ram-size subsection: such streams load
    (and are refused by a VM with other RAM)."""
    data, m = _data(made, ODD_RAM, "inline")
    at, desc = locate_description(data)
    sub = b"\x05\x1bconfiguration/aemu-ram-size" + (1).to_bytes(4, "big") + \
        ODD_RAM.to_bytes(8, "big")
    rounded = (-(-ODD_RAM // PAGE) * PAGE).to_bytes(8, "big")
    block = b"\x08cr16.ram" + rounded
    assert data.count(sub) == 1 and data.count(block) == 1
    old = data[:at - 5].replace(sub, b"").replace(block, b"\x08cr16.ram" +
                                                  ODD_RAM.to_bytes(8, "big"))
    desc["configuration"]["subsections"] = [
        s for s in desc["configuration"]["subsections"]
        if s["vmsd_name"] != "configuration/aemu-ram-size"]
    text = json.dumps(desc, separators=(",", ":")).encode()
    old += b"\x06" + len(text).to_bytes(4, "big") + text

    async def main() -> None:
        for size, ok in ((ODD_RAM, True), (ODD_RAM + 2, False)):
            vm = Machine(m["board"].with_changes(ram_size=size), str(IDLE), start_paused=True,
                         backends={"uart0": "none"}, stdout=io.BytesIO())
            try:
                if ok:
                    assert load_vm(vm, old) is RunState.PAUSED
                    assert bytes(vm.cpu.ram) == m["ram"] and vm.cpu.get_state() == m["regs"]
                else:
                    with pytest.raises(StreamError, match="bytes of RAM"):
                        load_vm(vm, old)
            finally:
                await vm.close()
    asyncio.run(main())


@pytest.mark.parametrize("lazy", [False, True])
def test_the_files_walked_here_load(made: dict, lazy: bool) -> None:
    """And aemu itself reads what the walk accepted (full file and diff on it)."""
    m = made[ODD_RAM]

    async def main() -> None:
        vm = Machine(m["board"], str(IDLE), start_paused=True, backends={"uart0": "none"},
                     stdout=io.BytesIO())
        try:
            load_files(vm, [m["dir"] / "full.snap", m["dir"] / "diff.snap"], lazy=lazy)
            assert bytes(vm.cpu.ram) == m["ram"] and vm.cpu.get_state() == m["regs"]
            assert vm.cpu.insn_count == m["insns"]
        finally:
            await vm.close()
    asyncio.run(main())
