"""savevm's wire format and its version rules.

Small synthetic descriptions over plain objects pin the bytes (QEMU's
vmstate encoding: big-endian scalars, 1-byte bools, arrays, buffers, nested
structs, unused bytes, subsections) and the JSON description; the version,
subsection, equality and test-predicate rules are checked on streams made by
``write_stream`` and read by ``parse`` without a Machine.  Machine streams
are walked byte by byte with nothing but the format (qemu-migration.md §2):
header, configuration, ram START/END, FULL sections with footers, EOF and
the JSON description, whose field sizes must add up to every payload.
Last, hypothesis mangles a machine stream: a load either fails with a
StreamError that says where, leaving the VM exactly as it was, or loads.
"""
from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aemu.hw.board import default_board
from aemu.hw.machine import Machine
from aemu.loop import RunState
from aemu.savevm.codec import Reader, StreamError, apply, decode, encode
from aemu.savevm.machine import load_vm, save_vm, sections
from aemu.savevm.stream import GlobalState, Section, parse, write_stream
from aemu.savevm.vmstate import (VMStateDescription, boolean, buffer, i8, i16, i32, i64,
                                 struct, u8, u16, u32, u64, unused)

IRQ = Path(__file__).resolve().parent / "firmware" / "irq"


# -- exact bytes ---------------------------------------------------------------------------------
INNER = VMStateDescription("inner", fields=[u16("a"), i8("b")])
TINY = VMStateDescription(
    "tiny", version=2,
    fields=[u8("a8"), u16("a16"), u32("a32"), u64("a64"), i16("s16"), i32("s32"),
            boolean("flag"), u16("arr", count=3), u8("n"), u32("var", count_field="n"),
            buffer("blob", size_field="n"), buffer("fixed", 2), struct("inner", INNER),
            unused(3), i64("s64")],
    subsections=[VMStateDescription("tiny/extra", version=3, fields=[u32("e")],
                                    needed=lambda o: o.send_extra)])


def tiny_obj(**kw: Any) -> NS:
    obj = NS(a8=0xAB, a16=0x1234, a32=0xDEADBEEF, a64=0x0102030405060708, s16=-2, s32=-1,
             flag=True, arr=[1, 2, 0xFFFF], n=2, var=[7, 8], blob=b"xy", fixed=b"\x00\x01",
             inner=NS(a=0x0A0B, b=-128), s64=-3, send_extra=True, e=0x11223344)
    for k, v in kw.items():
        setattr(obj, k, v)
    return obj


TINY_BYTES = bytes.fromhex(
    "ab" "1234" "deadbeef" "0102030405060708"       # u8 u16 u32 u64, big-endian
    "fffe" "ffffffff"                               # i16 -2, i32 -1
    "01"                                            # bool: one byte
    "0001" "0002" "ffff"                            # u16[3]
    "02" "00000007" "00000008"                      # n, then u32[n]
    "7879" "0001"                                   # buffer[n], buffer[2]: no length prefix
    "0a0b" "80"                                     # struct inner {u16 a, i8 b}, inline
    "000000"                                        # unused(3): zeros
    "fffffffffffffffd"                              # i64 -3
    "05" "0a" + b"tiny/extra".hex() + "00000003"    # subsection: 0x05, cstr name, be32 version
    "11223344")                                     # its fields

TINY_DESC = {
    "vmsd_name": "tiny", "version": 2,
    "fields": [
        {"name": "a8", "type": "uint8", "size": 1},
        {"name": "a16", "type": "uint16", "size": 2},
        {"name": "a32", "type": "uint32", "size": 4},
        {"name": "a64", "type": "uint64", "size": 8},
        {"name": "s16", "type": "int16", "size": 2},
        {"name": "s32", "type": "int32", "size": 4},
        {"name": "flag", "type": "bool", "size": 1},
        {"name": "arr", "type": "uint16", "size": 2, "array_len": 3},
        {"name": "n", "type": "uint8", "size": 1},
        {"name": "var", "type": "uint32", "size": 4, "array_len": 2},
        {"name": "blob", "type": "buffer", "size": 2},
        {"name": "fixed", "type": "buffer", "size": 2},
        {"name": "inner", "type": "struct", "size": 3,
         "struct": {"vmsd_name": "inner", "version": 1,
                    "fields": [{"name": "a", "type": "uint16", "size": 2},
                               {"name": "b", "type": "int8", "size": 1}]}},
        {"name": "unused", "type": "unused_buffer", "size": 3},
        {"name": "s64", "type": "int64", "size": 8},
    ],
    "subsections": [{"vmsd_name": "tiny/extra", "version": 3,
                     "fields": [{"name": "e", "type": "uint32", "size": 4}]}],
}


def test_exact_bytes_and_json_description_of_a_tiny_description() -> None:
    out = bytearray()
    desc = encode(TINY, tiny_obj(), out)
    assert bytes(out) == TINY_BYTES
    assert desc == TINY_DESC
    assert desc_size(desc) == len(TINY_BYTES)

    # and back: decode is side-effect free, apply puts the values in
    dst = tiny_obj(a8=0, a16=0, a32=0, a64=0, s16=0, s32=0, flag=False, arr=[0, 0, 0], n=0,
                   var=[], blob=b"", fixed=b"", inner=NS(a=0, b=0), s64=0, e=0)
    r = Reader(bytes(out))
    values = decode(TINY, dst, r, 2)
    assert r.remaining() == 0 and dst.a8 == 0
    apply(TINY, dst, values)
    assert dst == tiny_obj()

    # a subsection that is not needed is not sent
    out = bytearray()
    desc = encode(TINY, tiny_obj(send_extra=False), out)
    assert bytes(out) == TINY_BYTES[:TINY_BYTES.index(b"\x05\x0atiny/")]
    assert "subsections" not in desc


@pytest.mark.parametrize("field,value", [(u8("v"), 256), (u8("v"), -1), (i8("v"), 128),
                                         (i16("v"), -32769), (u64("v"), 1 << 64)])
def test_a_value_that_does_not_fit_its_type_is_not_saved(field: Any, value: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode(VMStateDescription("d", fields=[field]), NS(v=value), bytearray())


def test_a_struct_followed_by_data_that_looks_like_a_subsection_marker() -> None:
    """A field after a struct whose value is 0x05 is data, not a subsection
    (QEMU peeks: only 0x05 + a whole name with the struct's prefix counts)."""
    inner = VMStateDescription("in", fields=[u8("a")])
    outer = VMStateDescription("out", fields=[struct("s", inner), u8("x"), u8("y"), u8("z")])
    for y, z in [(200, 0), (3, 0), (0, 0), (2, 0x80)]:
        out = bytearray()
        encode(outer, NS(s=NS(a=1), x=5, y=y, z=z), out)
        dst = NS(s=NS(a=0), x=0, y=0, z=0)
        r = Reader(bytes(out))
        apply(outer, dst, decode(outer, dst, r, 1))
        assert r.remaining() == 0 and (dst.s.a, dst.x, dst.y, dst.z) == (1, 5, y, z)


# -- version rules, on whole streams without a Machine ---------------------------------------------
RAM = bytes(8192)


def stream_of(vmsd: VMStateDescription, obj: Any) -> bytes:
    return bytes(write_stream("toy", RAM, [Section("dev", 0, vmsd, obj)], GlobalState("paused")))


def load_into(data: bytes, vmsd: VMStateDescription, obj: Any) -> None:
    """parse, then apply: what load_vm does, for one plain object."""
    parsed = parse(data, [Section("dev", 0, vmsd, obj)], machine_type="toy", ram_size=len(RAM))
    ((sec, values),) = parsed.sections
    apply(sec.vmsd, sec.obj, values)


def payload(data: bytes, name: str) -> bytes:
    """The payload of section ``name`` (found by walking the stream)."""
    sec = next(s for s in walk(data)["sections"] if s.get("name") == name)
    return data[sec["start"]:sec["end"]]


def refused(data: bytes, vmsd: VMStateDescription, obj: Any, match: str) -> StreamError:
    before = dict(vars(obj))
    with pytest.raises(StreamError, match=match) as err:
        load_into(data, vmsd, obj)
    assert vars(obj) == before                  # nothing was applied
    assert err.value.section and err.value.offset is not None
    return err.value


def _defaults(obj: Any, version: int) -> None:
    obj.x = 99


V1 = VMStateDescription("dev", version=1, fields=[u16("a")])
V2 = VMStateDescription("dev", version=2, minimum_version=1,
                        fields=[u16("a"), u32("x", version=2)], pre_load=_defaults)
V3 = VMStateDescription("dev", version=3, minimum_version=2,
                        fields=[u16("a"), u32("x", version=2)], pre_load=_defaults)


def test_a_field_added_in_version_2_loads_from_a_version_1_stream() -> None:
    old = stream_of(V1, NS(a=7))
    obj = NS(a=0, x=5)
    load_into(old, V2, obj)
    assert (obj.a, obj.x) == (7, 99)                    # x: the pre_load default
    new = stream_of(V2, NS(a=8, x=0x01020304))
    assert payload(old, "dev") == b"\x00\x07"
    assert payload(new, "dev") == b"\x00\x08\x01\x02\x03\x04"
    load_into(new, V2, obj)
    assert (obj.a, obj.x) == (8, 0x01020304)


def test_a_section_newer_than_the_description_is_refused() -> None:
    err = refused(stream_of(V2, NS(a=1, x=2)), V1, NS(a=0), "version 2 is newer")
    assert err.section == "dev"


def test_a_section_older_than_the_minimum_version_is_refused() -> None:
    refused(stream_of(V1, NS(a=1)), V3, NS(a=0, x=0), "version 1 is older")
    load_into(stream_of(V2, NS(a=1, x=2)), V3, NS(a=0, x=0))     # 2 is fine


def _opt_default(obj: Any, version: int) -> None:
    obj.opt = 42


def with_sub(*names: str, needed: bool = True, sub_version: int = 1) -> VMStateDescription:
    return VMStateDescription(
        "dev", fields=[u8("a")], pre_load=_opt_default,
        subsections=[VMStateDescription(n, version=sub_version, fields=[u16("opt")],
                                        needed=lambda o, need=needed: need) for n in names])


def test_an_absent_optional_subsection_loads_and_keeps_the_pre_load_default() -> None:
    obj = NS(a=0, opt=7)
    load_into(stream_of(with_sub("dev/opt", needed=False), NS(a=1, opt=5)),
              with_sub("dev/opt"), obj)
    assert (obj.a, obj.opt) == (1, 42)
    load_into(stream_of(with_sub("dev/opt"), NS(a=2, opt=5)), with_sub("dev/opt"), obj)
    assert (obj.a, obj.opt) == (2, 5)
    # and one this side does not know, but the other did not send: fine too
    obj = NS(a=0)
    load_into(stream_of(with_sub("dev/new", needed=False), NS(a=3, opt=5)),
              VMStateDescription("dev", fields=[u8("a")]), obj)
    assert obj.a == 3


def test_an_unknown_subsection_is_refused() -> None:
    data = stream_of(with_sub("dev/new"), NS(a=1, opt=5))
    err = refused(data, with_sub("dev/opt"), NS(a=0, opt=7), "unknown subsection 'dev/new'")
    assert data[err.offset:err.offset + 2] == b"\x05\x07"       # it points at the marker


def test_a_subsection_newer_than_this_side_is_refused() -> None:
    refused(stream_of(with_sub("dev/opt", sub_version=2), NS(a=1, opt=5)),
            with_sub("dev/opt"), NS(a=0, opt=0), "'dev/opt' version 2 is newer")


def test_equal_fields_must_match() -> None:
    vmsd = VMStateDescription("dev", fields=[u32("magic", equal=True), u8("v")])
    data = stream_of(vmsd, NS(magic=0xC0FFEE, v=9))
    err = refused(data, vmsd, NS(magic=0xBAD, v=0), "must be equal")
    assert data[err.offset:err.offset + 4] == (0xC0FFEE).to_bytes(4, "big")
    obj = NS(magic=0xC0FFEE, v=0)
    load_into(data, vmsd, obj)
    assert obj.v == 9


def test_test_predicates_decide_on_both_sides() -> None:
    """``test(obj, version)``: on saving it sees the object, on loading the
    values read so far (then the local object)."""
    vmsd = VMStateDescription("dev", version=2, fields=[
        u8("mode"), u32("extra", test=lambda o, v: o.mode == 1), u8("tail"),
        u16("v2only", test=lambda o, v: v >= 2)])
    with_extra = stream_of(vmsd, NS(mode=1, extra=0xAABBCCDD, tail=3, v2only=4))
    without = stream_of(vmsd, NS(mode=0, extra=0xAABBCCDD, tail=3, v2only=4))
    assert payload(with_extra, "dev") == b"\x01\xaa\xbb\xcc\xdd\x03\x00\x04"
    assert payload(without, "dev") == b"\x00\x03\x00\x04"
    for data, want in [(with_extra, (1, 0xAABBCCDD, 3)), (without, (0, 0, 3))]:
        obj = NS(mode=1 - want[0], extra=0, tail=0, v2only=0)       # the other mode locally
        load_into(data, vmsd, obj)
        assert (obj.mode, obj.extra, obj.tail, obj.v2only) == (*want, 4)


# -- machine streams, walked by hand -------------------------------------------------------------
def be(data: bytes, pos: int, n: int) -> int:
    return int.from_bytes(data[pos:pos + n], "big")


def desc_size(desc: dict) -> int:
    """Payload bytes a vmdesc entry accounts for: its fields (size x
    array_len), then each subsection with its framing."""
    n = sum(f["size"] * f.get("array_len", 1) for f in desc["fields"])
    for sub in desc.get("subsections", ()):
        n += 1 + 1 + len(sub["vmsd_name"]) + 4 + desc_size(sub)
    return n


def walk(data: bytes) -> dict[str, Any]:
    """Everything in a stream, found with the format alone; every payload's
    length comes from the JSON description and must end at its footer."""
    assert data[:4] == b"QEVM" and be(data, 4, 4) == 3 and data[8] == 0x07
    # the description: 0x00 EOF, 0x06, be32 length, JSON to the end of the stream
    eof = next(p - 1 for p in range(len(data) - 5, 0, -1)
               if data[p] == 0x06 and data[p - 1] == 0 and be(data, p + 1, 4) == len(data) - p - 5)
    vmdesc = json.loads(data[eof + 6:])
    out: dict[str, Any] = {"vmdesc": vmdesc, "sections": [], "pages": [], "eof": eof}
    cfg_len = desc_size(vmdesc["configuration"])
    out["machine"] = data[13:13 + be(data, 9, 4)].decode()
    out["config"] = data[9:9 + cfg_len]
    pos = 9 + cfg_len
    devices = iter(vmdesc["devices"])
    while pos < eof:
        kind, sid = data[pos], be(data, pos + 1, 4)
        pos += 5
        sec: dict[str, Any] = {"kind": kind, "id": sid}
        if kind in (0x01, 0x04):                                # START / FULL: a header
            n = data[pos]
            sec["name"] = data[pos + 1:pos + 1 + n].decode()
            sec["instance"], sec["version"] = be(data, pos + 1 + n, 4), be(data, pos + 5 + n, 4)
            pos += 9 + n
        sec["start"] = pos
        if kind == 0x01:                                        # ram setup
            assert sec["name"] == "ram" and sec["version"] == 4
            head = be(data, pos, 8)
            assert head & 0xFFF == 0x04                         # MEM_SIZE
            n = data[pos + 8]
            assert data[pos + 9:pos + 9 + n] == b"cr16.ram"
            sec["mem_size"], sec["block_len"] = head & ~0xFFF, be(data, pos + 9 + n, 8)
            assert be(data, pos + 17 + n, 8) == 0x10           # EOS
            pos += 25 + n
        elif kind in (0x02, 0x03):                              # ram pages
            while (head := be(data, pos, 8)) != 0x10:
                flags, offset = head & 0xFFF, head & ~0xFFF
                pos += 8
                assert flags & 0x08                             # PAGE
                if not flags & 0x20:                            # no CONTINUE: the block name
                    pos += 1 + data[pos]
                out["pages"].append((offset, pos))
                pos += 4096
            pos += 8
        else:
            assert kind == 0x04
            dev = next(devices)
            assert (dev["name"], dev["instance_id"], dev["version"]) == \
                (sec["name"], sec["instance"], sec["version"])
            sec["desc"] = dev
            pos += desc_size(dev)
        sec["end"] = pos
        assert data[pos] == 0x7E and be(data, pos + 1, 4) == sid, f"footer of {sec}"
        pos += 5
        out["sections"].append(sec)
    assert pos == eof and next(devices, None) is None
    return out


async def _machine(elf: str = "idle.elf", args: tuple = ("1", "1000"), board: Any = None,
                   until: int = 250_007) -> Machine:
    vm = Machine(board or default_board(), str(IRQ / elf), args=list(args), name=elf,
                 start_paused=True, backends={"uart0": "none"}, stdout=io.BytesIO())
    await vm.start()
    await vm.run_until(cycles=until)
    return vm


def saved(**kw: Any) -> tuple[bytes, dict]:
    async def main() -> tuple[bytes, dict]:
        vm = await _machine(**kw)
        try:
            return bytes(save_vm(vm)), {"nonzero": vm.cpu.nonzero_pages(),
                                        "ram": bytes(vm.cpu.ram), "state": vm.state}
        finally:
            await vm.close()
    return asyncio.run(main())


def test_a_machine_stream_walked_by_hand() -> None:
    data, vm = saved()
    w = walk(data)
    assert w["machine"] == "aemu-default"
    # configuration: be32 len, name, then the target-page-bits subsection (12)
    sub = b"configuration/target-page-bits"
    assert w["config"] == (12).to_bytes(4, "big") + b"aemu-default" + bytes([5, len(sub)]) + \
        sub + (1).to_bytes(4, "big") + (12).to_bytes(4, "big")
    kinds = [(s["kind"], s.get("name")) for s in w["sections"]]
    assert kinds == [(1, "ram"), (3, None), *[(4, n) for n in (
        "icu", "cpu", "timer0", "timer1", "uart0", "wdt", "clock", "globalstate")]]
    assert len({s["id"] for s in w["sections"]}) == 9            # END reuses ram's id
    assert w["sections"][1]["id"] == w["sections"][0]["id"]
    ram = w["sections"][0]
    assert ram["mem_size"] == ram["block_len"] == 20 << 20
    # every non-zero page is there, once, and nothing else
    assert [off >> 12 for off, _ in w["pages"]] == vm["nonzero"]
    for off, at in w["pages"]:
        assert data[at:at + 4096] == vm["ram"][off:off + 4096]
    vmsd_names = {d["name"]: d["vmsd_name"] for d in w["vmdesc"]["devices"]}
    assert vmsd_names == {"icu": "cr16-icu", "cpu": "cr16c-cpu", "timer0": "cr16-timer",
                          "timer1": "cr16-timer", "uart0": "cr16-uart", "wdt": "cr16-watchdog",
                          "clock": "aemu-clock", "globalstate": "globalstate"}
    assert w["vmdesc"]["page_size"] == 4096
    # the vmdesc of the machine's stream is what parse sees, too
    async def parsed_desc() -> dict:
        vm2 = Machine(default_board(), str(IRQ / "idle.elf"), start_paused=True,
                      backends={"uart0": "none"})
        return parse(data, sections(vm2), machine_type="aemu-default",
                     ram_size=20 << 20).vmdesc
    assert asyncio.run(parsed_desc()) == w["vmdesc"]


def test_the_globalstate_section_holds_the_run_state() -> None:
    data, _ = saved()
    gs = next(s for s in walk(data)["sections"] if s.get("name") == "globalstate")
    payload = data[gs["start"]:gs["end"]]
    assert payload == (7).to_bytes(4, "big") + b"paused".ljust(32, b"\0") + b"\x01\x00" + \
        bytes(66)

    async def suspended() -> tuple[bytes, RunState, RunState]:
        # uart_echo with no input waits for an interrupt nothing can raise
        vm = await _machine("uart_echo.elf", (), until=1)
        vm.resume()
        await asyncio.wait_for(vm.wait_state(RunState.SUSPENDED, RunState.SHUTDOWN), 10)
        other = Machine(default_board(), str(IRQ / "uart_echo.elf"), name="uart_echo.elf",
                        start_paused=True, backends={"uart0": "none"})
        await other.start()
        try:
            assert vm.state is RunState.SUSPENDED
            blob = bytes(save_vm(vm))
            return blob, load_vm(other, blob), other.state
        finally:
            await vm.close()
            await other.close()

    blob, got, state = asyncio.run(suspended())
    gs = next(s for s in walk(blob)["sections"] if s.get("name") == "globalstate")
    payload = blob[gs["start"]:gs["end"]]
    assert payload[:4] == (10).to_bytes(4, "big")
    assert payload[4:36] == b"suspended".ljust(32, b"\0") and payload[36:38] == b"\x01\x01"
    assert got is RunState.SUSPENDED and state is RunState.SUSPENDED


def test_zero_pages_are_left_out() -> None:
    """A VM that uses one page of RAM saves to a stream of about one page,
    whatever the RAM size; a RAM size that is not a whole number of pages
    works: its last page is padded, the ram block is whole pages (block
    lengths must add up to MEM_SIZE's total, whose low bits are flags) and
    the exact size is in the configuration."""
    async def tiny(ram_size: int) -> tuple[bytes, int]:
        board = default_board().with_changes(ram_size=ram_size)
        vm = Machine(board, bytes([0x00, 0x2C, 0xEF, 0x1F]), binary_addr=0x100,
                     start_paused=True, backends={"uart0": "none"})
        await vm.start()
        try:
            await vm.run_until(cycles=1000)
            vm.cpu.write(ram_size - 2, b"\xAA\xBB")        # the very last bytes of RAM
            blob = bytes(save_vm(vm))
            other = Machine(board, None, start_paused=True, backends={"uart0": "none"})
            assert load_vm(other, blob) is RunState.PAUSED
            assert bytes(other.cpu.ram) == bytes(vm.cpu.ram)
            assert other.cpu.get_state() == vm.cpu.get_state() and other.cycles == 1000
            return blob, len(vm.cpu.nonzero_pages())
        finally:
            await vm.close()

    sizes = {}
    for ram_size in (1 << 20, 8 << 20, 20 << 20, (8 << 20) + 0x802, 4098):
        blob, pages = asyncio.run(tiny(ram_size))
        w = walk(blob)
        assert pages == len(w["pages"]) == 2
        assert w["sections"][0]["block_len"] == w["sections"][0]["mem_size"] == \
            -(-ram_size // 4096) * 4096
        subs = {d["vmsd_name"] for d in w["vmdesc"]["configuration"]["subsections"]}
        exact = "configuration/aemu-ram-size"
        assert (exact in subs) == bool(ram_size % 4096)
        if ram_size % 4096:
            assert w["config"].endswith(bytes([5, len(exact)]) + exact.encode() +
                                        (1).to_bytes(4, "big") + ram_size.to_bytes(8, "big"))
        sizes[ram_size] = len(blob)
    # the same size for any RAM with two pages used (plus the exact size if needed)
    assert len({n for r, n in sizes.items() if r % 4096 == 0}) == 1
    assert len({n for r, n in sizes.items() if r % 4096}) == 1
    assert max(sizes.values()) < 3 * 4096     # two pages and under 4 KiB of the rest


# -- hostile streams ----------------------------------------------------------------------------
FUZZ_BOARD = default_board().with_changes(ram_size=(3 << 20) + 0x800)


def _fuzz_setup() -> tuple[bytes, Machine]:
    async def main() -> bytes:
        vm = await _machine("nmi_wdt.elf", (), FUZZ_BOARD, until=524_287)
        try:
            assert len(vm.timers) == 2                      # timer0 and the watchdog
            return bytes(save_vm(vm))
        finally:
            await vm.close()

    blob = asyncio.run(main())
    # the target need not run: load_vm works on a VM that was never started
    vm = Machine(FUZZ_BOARD, str(IRQ / "nmi_wdt.elf"), name="nmi_wdt.elf", start_paused=True,
                 backends={"uart0": "none"})
    load_vm(vm, blob)
    return blob, vm


_FUZZ: dict[str, Any] = {}


def fuzz_target() -> tuple[bytes, Machine, dict, list[tuple[int, int]], list[int]]:
    if not _FUZZ:
        blob, vm = _fuzz_setup()
        w = walk(blob)
        in_pages = {i for _, at in w["pages"] for i in range(at, at + 4096)}
        _FUZZ.update(blob=blob, vm=vm, state=full_state(vm), pages=w["pages"],
                     structure=[i for i in range(len(blob)) if i not in in_pages])
    f = _FUZZ
    return f["blob"], f["vm"], f["state"], f["pages"], f["structure"]


def full_state(vm: Machine) -> dict[str, Any]:
    cpu = vm.cpu
    owner = {id(d): n for n, d in vm.devices.items()}
    return {
        "ram": {p: bytes(cpu.ram[p << 12:(p + 1) << 12]) for p in cpu.nonzero_pages()},
        "regs": cpu.get_state(), "insns": cpu.insn_count, "cycle_offset": cpu.cycle_offset,
        "halted": cpu.halted, "nmi": cpu.nmi_pending, "irq": cpu.irq,
        "clock": (vm.clock.cycles(), vm.clock.idle_cycles),
        "devices": {n: {k: (bytes(v) if isinstance(v, bytearray) else
                            tuple(v) if isinstance(v, list) else v)
                        for k, v in vars(d).items() if not k.startswith("_") and k != "ctx"}
                    for n, d in vm.devices.items()},
        "timers": [(t.cycle, t._seq, owner.get(id(getattr(t.callback, "__self__", None))))
                   for t in sorted(x for x in vm.timers._heap if not x.cancelled)],
        "runstate": vm.state,
    }


def mutate(blob: bytes, op: tuple) -> bytes:
    kind = op[0]
    if kind == "truncate":
        return blob[:op[1]]
    if kind == "flip":
        i, x = op[1] % len(blob), op[2]
        return blob[:i] + bytes([blob[i] ^ x]) + blob[i + 1:]
    if kind == "insert":
        i = op[1] % (len(blob) + 1)
        return blob[:i] + op[2] + blob[i:]
    if kind == "delete":
        i = op[1] % len(blob)
        return blob[:i] + blob[i + op[2]:]
    if kind == "raw":
        return op[1]
    raise AssertionError(op)


def ops(n: int, structure: list[int]) -> st.SearchStrategy:
    where = st.one_of(st.sampled_from(structure), st.integers(0, n - 1))
    return st.one_of(
        st.tuples(st.just("truncate"), st.integers(0, n - 1)),
        st.tuples(st.just("truncate"), st.integers(0, 64)),
        st.tuples(st.just("flip"), where, st.integers(1, 255)),
        st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), where, st.integers(1, 16)),
        st.tuples(st.just("raw"), st.binary(max_size=300)),
        st.tuples(st.just("raw"), st.binary(max_size=200).map(
            lambda b: b"QEVM\x00\x00\x00\x03\x07" + b)),
    )


def check_load(op: tuple) -> str:
    blob, vm, state, pages, _ = fuzz_target()
    data = mutate(blob, op)
    try:
        load_vm(vm, data)
    except StreamError as exc:
        assert exc.offset is not None or exc.section, str(exc)
        assert ("byte" in str(exc)) or ("section" in str(exc))
        got = full_state(vm)
        for key in state:
            assert got[key] == state[key], f"{key} changed by a refused load: {exc}"
        return "refused"
    # it loaded: a flipped byte of page data is in RAM; then back to the good state
    if op[0] == "flip":
        i = op[1] % len(blob)
        for off, at in pages:
            if at <= i < at + 4096:
                assert vm.cpu.ram[off + i - at] == blob[i] ^ op[2]
    load_vm(vm, blob)
    return "loaded"


@settings(max_examples=1500, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_mangled_stream_is_refused_cleanly_or_loads(data: st.DataObject) -> None:
    blob, _, _, _, structure = fuzz_target()
    check_load(data.draw(ops(len(blob), structure)))


def test_every_truncation_of_the_structure_is_refused() -> None:
    """Cut anywhere outside page data (page data too, every 512th byte): a
    StreamError, never a partial load -- except right after EOF: the JSON
    description is optional (QEMU leaves it out in postcopy), so that stream
    is whole."""
    blob, _, _, pages, structure = fuzz_target()
    eof = walk(blob)["eof"]
    cuts = structure + [i for _, at in pages for i in range(at, at + 4096, 512)]
    for cut in cuts:
        assert check_load(("truncate", cut)) == ("loaded" if cut == eof + 1 else "refused"), cut


def test_a_hostile_description_is_refused() -> None:
    """The JSON after EOF is only read: a deeply nested one is an error in
    the stream, not a crash of the loader."""
    blob, vm, state, _, _ = fuzz_target()
    eof = walk(blob)["eof"]
    for junk in (b"[" * 100_000, b"{" * 50_000, b"\xff\xfe", b"{}x"):
        bad = blob[:eof + 1] + b"\x06" + len(junk).to_bytes(4, "big") + junk
        with pytest.raises(StreamError, match="not JSON"):
            load_vm(vm, bad)
        assert full_state(vm) == state
