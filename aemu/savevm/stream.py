"""QEMU's migration stream format (docs: qemu-migration.md §2), written and
read for aemu's sections.

    QEVM, version 3
    0x07 configuration   (machine type = board name; target-page-bits 12)
    0x01 START "ram" v4  (MEM_SIZE, the block list, EOS)          + footer
    0x03 END   "ram"     (one PAGE record per non-zero page, EOS) + footer
    0x04 FULL  <device>  (each vmstate section, in priority order) + footer
    0x04 FULL  "globalstate"                                        + footer
    0x00 EOF
    0x06 be32 length, the JSON VM description

Reading is strict and side-effect free: ``parse`` checks magic, version,
configuration, every section's identity and version, every length against
what remains, footers and the end, and returns a ``Parsed`` that ``apply``
(aemu/savevm/machine.py) puts into a VM only if everything was good.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from aemu.savevm.codec import Reader, StreamError, Values, check_version, decode, encode
from aemu.savevm.vmstate import VMStateDescription, buffer, cstr, u32, u64

MAGIC = 0x5145564D               # "QEVM"
VERSION = 3
EOF, START, PART, END, FULL, SUBSECTION, VMDESC, CONFIGURATION, COMMAND = range(9)
FOOTER = 0x7E
PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
RAM_VERSION = 4
RAM_BLOCK = "cr16.ram"
# RAM record flags (the low bits of each be64 record header)
RAM_ZERO, RAM_MEM_SIZE, RAM_PAGE, RAM_EOS, RAM_CONTINUE = 0x02, 0x04, 0x08, 0x10, 0x20
RAM_FLAG_MASK = PAGE_SIZE - 1


def page_up(n: int) -> int:
    """``n`` rounded up to whole pages: the length of the RAM block in the
    stream.  QEMU's block lengths are whole (host) pages, the MEM_SIZE record's
    total is their sum and its low bits are flags, and a reader (QEMU's
    loader, analyze-migration.py) subtracts block lengths from that total
    until it reaches zero -- so a block's length must be whole pages even when
    the RAM is not (qemu-migration.md §2.5).  The exact size goes in the
    configuration's ``configuration/aemu-ram-size`` subsection then."""
    return -(-n // PAGE_SIZE) * PAGE_SIZE


@dataclass
class Section:
    """One vmstate section: what it is called in the stream and what it saves."""
    idstr: str
    instance_id: int
    vmsd: VMStateDescription
    obj: Any


class _Config:
    def __init__(self, name: str = "", page_bits: int = PAGE_BITS,
                 capabilities: Sequence[str] = (), ram_size: int = 0) -> None:
        self.name = name.encode()
        self.len = len(self.name)
        self.target_page_bits = page_bits
        self.capabilities = list(capabilities)
        self.caps_count = len(self.capabilities)
        self.ram_size = ram_size


CONFIG_VMSD = VMStateDescription(
    "configuration", version=1, minimum_version=1,
    fields=[u32("len"), buffer("name", size_field="len")],
    subsections=[VMStateDescription("configuration/target-page-bits", version=1,
                                    fields=[u32("target_page_bits")],
                                    needed=lambda c: True),
                 VMStateDescription("configuration/capabilities", version=1,
                                    fields=[u32("caps_count"),
                                            cstr("capabilities", count_field="caps_count")],
                                    needed=lambda c: bool(c.capabilities)),
                 # aemu's: RAM that is not whole pages (the ram block is rounded up)
                 VMStateDescription("configuration/aemu-ram-size", version=1,
                                    fields=[u64("ram_size")],
                                    needed=lambda c: c.ram_size % PAGE_SIZE != 0)])
#: capabilities a stream may declare that this aemu understands
KNOWN_CAPABILITIES = ("mapped-ram",)


class GlobalState:
    """QEMU's ``globalstate`` section: the run state by name (a 100-byte
    NUL-padded buffer, after its be32 size) and whether the guest was
    suspended."""

    def __init__(self, runstate: str = "", suspended: bool = False) -> None:
        self.runstate = runstate
        self.suspended = suspended

    @property
    def size(self) -> int:
        return len(self.runstate) + 1

    @size.setter
    def size(self, value: int) -> None:
        pass

    @property
    def buf(self) -> bytes:
        name = self.runstate.encode("ascii")[:31]
        return name + bytes(32 - len(name)) + bytes([1, int(self.suspended)]) + bytes(66)

    @buf.setter
    def buf(self, raw: bytes) -> None:
        name = raw[:32].split(b"\0", 1)[0]
        try:
            self.runstate = name.decode("ascii")
        except UnicodeDecodeError:
            self.runstate = "?"
        self.suspended = bool(raw[32] and raw[33])


GLOBALSTATE_VMSD = VMStateDescription(
    "globalstate", version=1, minimum_version=1,
    fields=[u32("size"), buffer("buf", 100)])


# -- writing -----------------------------------------------------------------------------------
class _Writer:
    """Builds a stream; sections get ids in the order they are opened."""

    def __init__(self, machine_type: str, ram_size: int,
                 capabilities: Sequence[str] = ()) -> None:
        self.out = bytearray(MAGIC.to_bytes(4, "big") + VERSION.to_bytes(4, "big"))
        self.out.append(CONFIGURATION)
        self.config_desc = encode(CONFIG_VMSD, _Config(machine_type, capabilities=capabilities,
                                                       ram_size=ram_size), self.out)
        self.devices: list[dict[str, Any]] = []
        self.section_id = 0

    def header(self, kind: int, idstr: str, instance: int, version: int) -> int:
        out = self.out
        self.section_id += 1
        out.append(kind)
        out += self.section_id.to_bytes(4, "big")
        name = idstr.encode("ascii")
        out.append(len(name))
        out += name
        out += instance.to_bytes(4, "big") + version.to_bytes(4, "big")
        return self.section_id

    def footer(self, sid: int) -> None:
        self.out.append(FOOTER)
        self.out += sid.to_bytes(4, "big")

    def reopen(self, kind: int, sid: int) -> None:
        self.out.append(kind)
        self.out += sid.to_bytes(4, "big")

    def finish(self, sections: Sequence[Section], globalstate: GlobalState) -> None:
        """Every vmstate section, globalstate, EOF and the JSON description."""
        self.device_state(sections, globalstate)
        self.description()

    def device_state(self, sections: Sequence[Section], globalstate: GlobalState) -> None:
        """Every vmstate section, globalstate and EOF (a live migration sends
        these first and the description after: the destination can load
        while it is being made)."""
        out = self.out
        for sec in [*sections, Section("globalstate", 0, GLOBALSTATE_VMSD, globalstate)]:
            sid = self.header(FULL, sec.idstr, sec.instance_id, sec.vmsd.version)
            desc = encode(sec.vmsd, sec.obj, out)
            self.footer(sid)
            self.describe(sec, desc)
        out.append(EOF)

    def describe(self, sec: Section, desc: dict[str, Any]) -> None:
        """Add a written section to the description (its codec desc)."""
        entry = {"name": sec.idstr, "instance_id": sec.instance_id,
                 "vmsd_name": sec.vmsd.name, "version": sec.vmsd.version,
                 "fields": desc["fields"]}
        if "subsections" in desc:
            entry["subsections"] = desc["subsections"]
        self.devices.append(entry)

    def description(self) -> None:
        """The JSON description of the sections written (after EOF)."""
        out = self.out
        vmdesc = json.dumps({"page_size": PAGE_SIZE, "configuration": self.config_desc,
                             "devices": self.devices}, separators=(",", ":")).encode("ascii")
        # analyze-migration.py finds the JSON as the first "{" after the file's
        # last NUL byte: the length bytes after their last NUL must hold no "{"
        while b"{" in len(vmdesc).to_bytes(4, "big").rsplit(b"\0", 1)[-1]:
            vmdesc += b" "
        out.append(VMDESC)
        out += len(vmdesc).to_bytes(4, "big")
        out += vmdesc


def write_stream(machine_type: str, ram: "bytes | bytearray | memoryview",
                 sections: Sequence[Section], globalstate: GlobalState,
                 nonzero: Optional[Iterable[int]] = None) -> bytearray:
    """The whole stream of a stopped VM, RAM inline (non-iterative: one pass).
    ``nonzero``: the page numbers that may hold data (the core's scan), so
    that the zero pages are not compared here again; default: all pages."""
    w = _Writer(machine_type, len(ram))
    ram_id = w.header(START, "ram", 0, RAM_VERSION)
    write_ram_setup(w.out, len(ram))
    w.footer(ram_id)
    w.reopen(END, ram_id)
    offsets = (range(0, len(ram), PAGE_SIZE) if nonzero is None
               else [p * PAGE_SIZE for p in nonzero])
    write_ram_pages(w.out, ram, offsets)
    w.footer(ram_id)
    w.finish(sections, globalstate)
    return w.out


MAPPED_RAM_ALIGN = 1 << 20      #: the page area starts on a 1 MiB boundary, as QEMU's


@dataclass
class MappedLayout:
    """A mapped-ram stream in three parts: ``head`` at offset 0, the page
    bitmap at ``bitmap_offset``, page i of RAM at ``pages_offset + i * 4096``
    (only the pages whose bit is set), and ``tail`` right after the page area
    (whole pages: a last partial page of RAM is followed by a hole)."""
    head: bytearray
    bitmap: bytes
    bitmap_offset: int
    pages_offset: int
    tail: bytearray
    tail_offset: int

    @property
    def file_size(self) -> int:
        return self.tail_offset + len(self.tail)


def bitmap_bytes(npages: int) -> int:
    """QEMU's bitmap size: whole 64-bit host words."""
    return -(-npages // 64) * 8


def layout_mapped(machine_type: str, ram_size: int, present: Iterable[int],
                  sections: Sequence[Section], globalstate: GlobalState) -> MappedLayout:
    """The mapped-ram stream of a stopped VM whose pages ``present`` (page
    numbers) go to the file; the caller writes the pages themselves."""
    w = _Writer(machine_type, ram_size, capabilities=["mapped-ram"])
    ram_id = w.header(START, "ram", 0, RAM_VERSION)
    out = w.out
    _ram_block(out, ram_size)
    npages = -(-ram_size // PAGE_SIZE)
    bitmap = bytearray(bitmap_bytes(npages))
    for page in present:
        bitmap[page >> 3] |= 1 << (page & 7)
    bitmap_offset = len(out) + 28
    pages_offset = -(-(bitmap_offset + len(bitmap)) // MAPPED_RAM_ALIGN) * MAPPED_RAM_ALIGN
    out += (1).to_bytes(4, "big") + PAGE_SIZE.to_bytes(8, "big")
    out += bitmap_offset.to_bytes(8, "big") + pages_offset.to_bytes(8, "big")
    head = w.out
    # the stream goes on after the page area
    tail_offset = pages_offset + page_up(ram_size)
    w.out = bytearray()
    w.out += RAM_EOS.to_bytes(8, "big")
    w.footer(ram_id)
    w.reopen(END, ram_id)
    w.out += RAM_EOS.to_bytes(8, "big")
    w.footer(ram_id)
    w.finish(sections, globalstate)
    return MappedLayout(head, bytes(bitmap), bitmap_offset, pages_offset, w.out, tail_offset)


def _ram_block(out: bytearray, ram_size: int) -> None:
    """MEM_SIZE | total, then the one block: its name and length, which is
    the total (whole pages, see ``page_up``)."""
    length = page_up(ram_size)
    out += (length | RAM_MEM_SIZE).to_bytes(8, "big")
    name = RAM_BLOCK.encode()
    out.append(len(name))
    out += name
    out += length.to_bytes(8, "big")


def write_ram_setup(out: bytearray, ram_size: int) -> None:
    _ram_block(out, ram_size)
    out += RAM_EOS.to_bytes(8, "big")


def write_ram_pages(out: bytearray, ram: "bytes | bytearray | memoryview",
                    pages: Iterable[int]) -> int:
    """PAGE records for the non-zero pages among ``pages`` (offsets), then
    EOS; a last partial page is padded with zeros.  Returns pages written."""
    view = memoryview(ram)
    first, written = True, 0
    zero = bytes(PAGE_SIZE)
    size = len(view)
    for offset in pages:
        page = view[offset:offset + PAGE_SIZE]
        if page == zero[:len(page)]:
            continue
        if first:
            out += (offset | RAM_PAGE).to_bytes(8, "big")
            name = RAM_BLOCK.encode()
            out.append(len(name))
            out += name
            first = False
        else:
            out += (offset | RAM_PAGE | RAM_CONTINUE).to_bytes(8, "big")
        out += page
        if offset + PAGE_SIZE > size:
            out += bytes(offset + PAGE_SIZE - size)
        written += 1
    out += RAM_EOS.to_bytes(8, "big")
    return written


# -- reading -----------------------------------------------------------------------------------
@dataclass
class Parsed:
    machine_type: str
    ram_size: int
    #: (offset, page bytes) for every page the stream carries; the rest is zero
    pages: list[tuple[int, bytes]] = field(default_factory=list)
    #: (section, decoded values), in stream order
    sections: list[tuple[Section, Values]] = field(default_factory=list)
    globalstate: Optional[GlobalState] = None
    vmdesc: Optional[dict] = None
    capabilities: list[str] = field(default_factory=list)
    #: mapped-ram: the page bitmap (bit i = page i is in the file) and where pages start
    bitmap: Optional[bytes] = None
    pages_offset: int = 0
    #: the RAM block's length in the stream (whole pages; the page area's size)
    block_length: int = 0
    #: the exact RAM size, if the configuration says it (RAM not whole pages)
    config_ram_size: Optional[int] = None

    def present_pages(self) -> list[int]:
        """Mapped-ram: the pages the file holds."""
        assert self.bitmap is not None
        npages = -(-self.ram_size // PAGE_SIZE)
        bits = self.bitmap
        return [i for i in range(npages) if bits[i >> 3] >> (i & 7) & 1]


def parse(data: "bytes | bytearray | memoryview", sections: Sequence[Section], *,
          machine_type: str, ram_size: int) -> Parsed:
    """Check and decode a whole stream against this VM's sections; nothing is
    changed.  Raises StreamError naming the section and byte offset."""
    r = Reader(data)
    if r.remaining() < 8:
        raise r.error("not a migration stream: too short")
    magic = r.uint(4)
    if magic != MAGIC:
        raise r.error(f"not a migration stream: magic {magic:#010x}, expected QEVM", 0)
    version = r.uint(4)
    if version != VERSION:
        raise r.error(f"stream version {version} is not supported (only {VERSION})", 4)
    if r.u8("configuration marker") != CONFIGURATION:
        raise r.error("the configuration section is missing", 8)
    r.section = "configuration"
    cfg = _Config()
    values = decode(CONFIG_VMSD, cfg, r, CONFIG_VMSD.version)
    name = values["name"].decode("ascii", "replace")
    if name != machine_type:
        raise StreamError(f"the stream is for board {name!r}, this VM is {machine_type!r}",
                          9, "configuration")
    bits = values.subsections.get("configuration/target-page-bits")
    if bits is not None and bits["target_page_bits"] != PAGE_BITS:
        raise StreamError(f"target page bits {bits['target_page_bits']}, expected {PAGE_BITS}",
                          None, "configuration")
    parsed = Parsed(name, ram_size)
    exact = values.subsections.get("configuration/aemu-ram-size")
    if exact is not None:
        parsed.config_ram_size = exact["ram_size"]
        if exact["ram_size"] != ram_size:
            raise StreamError(f"the stream has {exact['ram_size']} bytes of RAM, this VM "
                              f"{ram_size}", 9, "configuration")
    caps = values.subsections.get("configuration/capabilities")
    if caps is not None:
        parsed.capabilities = list(caps["capabilities"])
        unknown = [c for c in parsed.capabilities if c not in KNOWN_CAPABILITIES]
        if unknown:
            raise StreamError(f"the stream needs capabilities this aemu lacks: {unknown}",
                              None, "configuration")
    by_key = {(s.idstr, s.instance_id): s for s in sections}
    by_key[("globalstate", 0)] = Section("globalstate", 0, GLOBALSTATE_VMSD, GlobalState())
    active: dict[int, str] = {}       # section id -> idstr of open iterative sections
    seen: set[tuple[str, int]] = set()
    ram_ready = False
    while True:
        r.section = None
        at = r.pos
        kind = r.u8("section type")
        if kind == EOF:
            break
        if kind in (START, FULL):
            sid = r.uint(4, "section id")
            idstr = r.cstr("section name")
            instance = r.uint(4, "instance id")
            sec_version = r.uint(4, "section version")
            r.section = idstr
            key = (idstr, instance)
            if key in seen:
                raise r.error(f"section {idstr!r} instance {instance} sent twice", at)
            seen.add(key)
            if idstr == "ram" and instance == 0:
                if kind != START or sec_version != RAM_VERSION:
                    raise r.error(f"ram section must be START version {RAM_VERSION}", at)
                _read_ram_setup(r, parsed)
                ram_ready = True
                active[sid] = "ram"
            else:
                sec = by_key.get(key)
                if sec is None:
                    raise r.error(f"unknown section {idstr!r} instance {instance}", at)
                if kind != FULL:
                    raise r.error(f"section {idstr!r} is not iterative", at)
                check_version(sec.vmsd, sec_version, r, at)
                values = decode(sec.vmsd, sec.obj, r, sec_version)
                if idstr == "globalstate":
                    gs = GlobalState()
                    gs.buf = values["buf"]
                    parsed.globalstate = gs
                else:
                    parsed.sections.append((sec, values))
            _footer(r, sid)
        elif kind in (PART, END):
            sid = r.uint(4, "section id")
            if active.get(sid) != "ram" or not ram_ready:
                raise r.error(f"{'PART' if kind == PART else 'END'} for section id {sid}, "
                              "which was not started", at)
            r.section = "ram"
            _read_ram_pages(r, parsed)
            _footer(r, sid)
            if kind == END:
                del active[sid]
        elif kind == COMMAND:
            raise r.error("stream commands are not accepted in a saved VM", at)
        else:
            raise r.error(f"unknown section type {kind:#04x}", at)
    if active:
        raise r.error("the stream ended inside the ram section")
    if not ram_ready:
        raise r.error("the stream has no ram section")
    missing = [k for k in by_key if k not in seen and k[0] != "globalstate"]
    if missing:
        raise r.error("sections missing from the stream: " +
                      ", ".join(f"{i}/{n}" for i, n in missing))
    if r.remaining():
        at = r.pos
        if r.u8() != VMDESC:
            raise r.error("unexpected bytes after the end of the stream", at)
        n = r.uint(4, "description length")
        raw = r.take(n, "description")
        try:
            parsed.vmdesc = json.loads(bytes(raw))
        except (ValueError, RecursionError):     # RecursionError: "[[[[..." from a hostile stream
            raise r.error("the VM description is not JSON", at) from None
        if r.remaining():
            raise r.error("unexpected bytes after the VM description")
    return parsed


def _footer(r: Reader, sid: int) -> None:
    at = r.pos
    if r.u8("section footer") != FOOTER:
        raise r.error("missing section footer", at)
    got = r.uint(4, "footer section id")
    if got != sid:
        raise r.error(f"section footer has id {got}, expected {sid}", at)


def _read_ram_setup(r: Reader, parsed: Parsed) -> None:
    head = r.uint(8, "ram header")
    if not head & RAM_MEM_SIZE or head & RAM_FLAG_MASK & ~RAM_MEM_SIZE:
        raise r.error("ram section does not start with MEM_SIZE")
    total = head & ~RAM_FLAG_MASK
    name = r.cstr("ram block name")
    length = r.uint(8, "ram block length")
    if name != RAM_BLOCK:
        raise r.error(f"unknown ram block {name!r}")
    size = parsed.ram_size
    # the block is whole pages; RAM that is not has its exact size in the
    # configuration (checked there).  Streams of aemu before that had the exact
    # size as the block length (and its pages rounded up as the total).
    exact = parsed.config_ram_size if parsed.config_ram_size is not None else length
    legacy = length == size and total == page_up(size) and size % PAGE_SIZE
    if not legacy and (total != length or length != page_up(size) or exact != size):
        raise r.error(f"the stream has {exact} bytes of RAM, this VM {size}")
    parsed.block_length = length
    if "mapped-ram" in parsed.capabilities:
        _read_mapped_header(r, parsed)
    if r.uint(8, "ram end marker") != RAM_EOS:
        raise r.error("ram setup does not end with EOS")


def _read_mapped_header(r: Reader, parsed: Parsed) -> None:
    at = r.pos
    if r.uint(4, "mapped-ram header version") != 1:
        raise r.error("unsupported mapped-ram header version", at)
    if r.uint(8, "mapped-ram page size") != PAGE_SIZE:
        raise r.error(f"mapped-ram page size is not {PAGE_SIZE}", at)
    bitmap_offset = r.uint(8, "bitmap offset")
    pages_offset = r.uint(8, "pages offset")
    nbytes = bitmap_bytes(-(-parsed.ram_size // PAGE_SIZE))
    end = pages_offset + parsed.block_length
    if bitmap_offset < r.pos or bitmap_offset + nbytes > pages_offset or \
            pages_offset % PAGE_SIZE or end > r.end:
        raise r.error(f"mapped-ram offsets out of range (bitmap {bitmap_offset}, pages "
                      f"{pages_offset}, file {r.end} bytes)", at)
    parsed.bitmap = bytes(r.data[bitmap_offset:bitmap_offset + nbytes])
    parsed.pages_offset = pages_offset
    r.pos = end                      # the stream goes on after the page area


def _read_ram_pages(r: Reader, parsed: Parsed) -> None:
    if parsed.bitmap is not None:    # mapped-ram: pages are never inline
        at = r.pos
        if r.uint(8, "ram record") != RAM_EOS:
            raise r.error("a mapped-ram stream carries no inline pages", at)
        return
    size = parsed.ram_size
    block_known = False
    while True:
        at = r.pos
        head = r.uint(8, "ram record")
        flags = head & RAM_FLAG_MASK
        offset = head & ~RAM_FLAG_MASK
        if flags == RAM_EOS:
            return
        if flags & ~(RAM_PAGE | RAM_ZERO | RAM_CONTINUE) or bool(flags & RAM_PAGE) == \
                bool(flags & RAM_ZERO):
            raise r.error(f"unsupported ram record flags {flags:#x}", at)
        if flags & RAM_CONTINUE:
            if not block_known:
                raise r.error("ram record continues a block that was never named", at)
        else:
            name = r.cstr("ram block name")
            if name != RAM_BLOCK:
                raise r.error(f"unknown ram block {name!r}", at)
            block_known = True
        if offset >= size or offset % PAGE_SIZE:
            raise r.error(f"ram page at {offset:#x} is outside RAM ({size:#x} bytes) or "
                          "not page-aligned", at)
        if flags & RAM_ZERO:
            if r.u8("zero page fill") != 0:
                raise r.error("zero page record with a non-zero fill", at)
            parsed.pages.append((offset, b""))
        else:
            page = bytes(r.take(PAGE_SIZE, "ram page"))
            if offset + PAGE_SIZE > size and any(page[size - offset:]):
                raise r.error("ram page runs past the end of RAM", at)
            parsed.pages.append((offset, page[:size - offset]))
