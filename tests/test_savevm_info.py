"""`aemu savevm-info` and its decoder (aemu/savevm/info.py): streams from
save_vm() (RAM inline) and snapshot files from the store (mapped-ram, full
and diff), decoded generically from the file's own JSON VM description --
without a VM, and for devices aemu does not have."""
from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import FIRMWARE
from aemu.cli import main as cli_main
from aemu.savevm.info import InfoError, decode_stream, find_vmdesc, format_info, read_info, \
    to_json

IDLE = str(FIRMWARE / "irq" / "idle.elf")
T = 20.0


def machine():
    from aemu.hw.machine import Machine

    return Machine(None, IDLE, args=["5", "1000"], stdout=io.BytesIO(), stderr=io.BytesIO(),
                   start_paused=True, pace="fast")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Any]:
    """One VM at a known point: its inline stream, a full snapshot file and a
    diff on it, and what the VM held then."""
    from aemu.savevm.machine import save_vm, sections
    from aemu.savevm.store import SnapshotStore

    d = tmp_path_factory.mktemp("info")

    async def make():
        vm = machine()
        await vm.start()
        store = SnapshotStore(d / "snapshots")
        try:
            await vm.run_until(cycles=1_000_000)
            full = await store.save("vm", vm, "full")
            await vm.run_until(cycles=2_000_000)
            stream = bytes(save_vm(vm))
            (d / "vm.qevm").write_bytes(stream)
            state = vm.cpu.get_state()
            expect = {
                "sections": [(s.idstr, s.instance_id, s.vmsd.name, s.vmsd.version)
                             for s in sections(vm)],
                "pc": vm.cpu.pc, "r": list(state["r"]), "insns": vm.cpu.insn_count,
                "nonzero": len(vm.cpu.nonzero_pages()), "ram": vm.cpu.ram_size,
                "timer0_reload": vm.devices["timer0"].reload,
                "board": vm.board.name,
            }
            diff = await store.save("vm", vm, "diff", parent="full")
            return {"stream": d / "vm.qevm", "full": store.file_of(full), "full_info": full,
                    "diff": store.file_of(diff), "diff_info": diff, "expect": expect,
                    "dir": d}
        finally:
            store.close()
            await vm.close()

    return asyncio.run(asyncio.wait_for(make(), T))


def test_inline_stream(files):
    info = read_info(files["stream"])
    e = files["expect"]
    assert info["version"] == 3
    assert info["configuration"] == {"machine-type": e["board"], "target-page-bits": 12,
                                     "capabilities": []}
    assert info["runstate"] == "paused" and info["suspended"] is False
    ram = info["ram"]
    assert ram["layout"] == "inline" and ram["size"] == e["ram"]
    assert ram["pages-present"] == e["nonzero"] == ram["page-records"]
    devices = [(d["name"], d["instance-id"], d["vmsd-name"], d["version"])
               for d in info["devices"]]
    assert devices == e["sections"] + [("globalstate", 0, "globalstate", 1)]
    cpu = info["devices"][[d[0] for d in devices].index("cpu")]["fields"]
    assert (cpu["pc"], cpu["r"], cpu["insns"]) == (e["pc"], e["r"], e["insns"])
    timer0 = next(d for d in info["devices"] if d["name"] == "timer0")["fields"]
    assert timer0["reload"] == e["timer0_reload"]
    # sections: ram START and END, then one FULL per device, in stream order
    kinds = [(s["type"], s["idstr"]) for s in info["sections"]]
    assert kinds[:2] == [("START", "ram"), ("END", "ram")]
    assert kinds[2:] == [("FULL", d[0]) for d in devices]
    assert [s["id"] for s in info["sections"]] == [1, 1, *range(2, 2 + len(devices))]
    text = format_info(info)
    assert "capabilities: none" in text and "ram: inline" in text
    assert f"pc = {e['pc']} ({e['pc']:#x})" in text


def test_mapped_ram_files(files):
    inline = read_info(files["stream"])
    full = read_info(files["full"])
    assert full["configuration"]["capabilities"] == ["mapped-ram"]
    ram = full["ram"]
    assert ram["layout"] == "mapped-ram"
    [block] = ram["blocks"]
    assert block["name"] == "cr16.ram" and block["length"] == files["expect"]["ram"]
    assert block["pages-offset"] % (1 << 20) == 0 and block["bitmap-offset"] < 4096
    assert ram["pages-present"] == files["full_info"].pages
    assert full["runstate"] == "paused"
    # the full snapshot was taken at 1M cycles, the stream and the diff at 2M:
    # the diff's devices are the stream's
    diff = read_info(files["diff"])
    assert diff["ram"]["pages-present"] == files["diff_info"].pages
    assert 0 < files["diff_info"].pages < files["full_info"].pages
    assert [d["fields"] for d in diff["devices"]] == [d["fields"] for d in inline["devices"]]
    assert [d["fields"] for d in full["devices"]] != [d["fields"] for d in inline["devices"]]
    assert "bitmap at" in format_info(full)


def test_json_is_plain_json(files):
    data = to_json(read_info(files["full"]))
    round_trip = json.loads(json.dumps(data))
    assert round_trip == data
    glob = next(d for d in data["devices"] if d["name"] == "globalstate")
    assert bytes.fromhex(glob["fields"]["buf"]).startswith(b"paused\0")


def test_cli(files, capsys):
    for path in (files["stream"], files["full"]):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["savevm-info", str(path)])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"file: {path}") and "devices:" in out and "sections:" in out
    with pytest.raises(SystemExit) as exit_:
        cli_main(["savevm-info", "--json", str(files["diff"])])
    assert exit_.value.code == 0
    assert json.loads(capsys.readouterr().out)["ram"]["layout"] == "mapped-ram"

    bad = files["dir"] / "garbage"
    bad.write_bytes(b"QEVM" + bytes(100))
    with pytest.raises(SystemExit) as exit_:
        cli_main(["savevm-info", str(bad)])
    assert exit_.value.code == 1
    assert "no JSON VM description" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["savevm-info", str(files["dir"] / "missing")])
    assert exit_.value.code == 2


def test_truncated_and_corrupt(files):
    data = files["stream"].read_bytes()
    desc, at = find_vmdesc(data)
    assert data[at] == 6 and desc["devices"][0]["name"] == "icu"
    # the stream cut inside the ram pages, the description kept
    cut = data[:at - 5000] + data[at:]
    with pytest.raises(InfoError):
        decode_stream(cut)
    # a wrong magic
    with pytest.raises(InfoError, match="magic"):
        decode_stream(b"XXXX" + data[4:])
    # a bad footer id
    corrupt = bytearray(data)
    icu = next(s for s in decode_stream(data)["sections"] if s["idstr"] == "icu")
    footer = icu["offset"] + 1 + 4 + 1 + 3 + 8 + icu["size"]
    assert corrupt[footer] == 0x7E
    corrupt[footer + 4] ^= 0xFF
    with pytest.raises(InfoError, match="footer"):
        decode_stream(bytes(corrupt))
    for n in (0, 8, 64, len(data) // 2):
        with pytest.raises(InfoError):
            decode_stream(data[:n])
    empty = files["dir"] / "empty"
    empty.write_bytes(b"")
    with pytest.raises(InfoError, match="empty"):
        read_info(empty)


def test_generic_decoder_needs_no_vm():
    """A device aemu does not have (nested structs, arrays, signed, bool,
    strings, an unused field, subsections): decoded from the description."""
    from aemu.savevm.stream import GlobalState, Section, write_stream
    from aemu.savevm.vmstate import (VMStateDescription, boolean, buffer, cstr, i16, struct,
                                     u8, u32, unused)

    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    class Gadget:
        def __init__(self) -> None:
            self.level = -3
            self.on = True
            self.n = 3
            self.samples = [1, 2, 65535]
            self.label = "hello"
            self.points = [Point(1, -1), Point(2, -2)]
            self.blob = b"\x01\x02\x03\x04"
            self.extra = 0xDEADBEEF

    point = VMStateDescription("point", fields=[i16("x"), i16("y")])
    gadget = VMStateDescription(
        "x-gadget", version=2, minimum_version=1,
        fields=[i16("level"), boolean("on"), u8("n"), u32("samples", count_field="n"),
                cstr("label"), unused(3), struct("points", point, count=2),
                buffer("blob", 4)],
        subsections=[VMStateDescription("x-gadget/extra", fields=[u32("extra")],
                                        needed=lambda g: True)])
    stream = write_stream("some-board", bytes(8192), [Section("gadget", 7, gadget, Gadget())],
                          GlobalState("running"))
    info = decode_stream(bytes(stream))
    assert info["configuration"]["machine-type"] == "some-board"
    assert info["runstate"] == "running" and info["ram"]["pages-present"] == 0
    [dev, glob] = info["devices"]
    assert (dev["name"], dev["instance-id"], dev["vmsd-name"], dev["version"]) == (
        "gadget", 7, "x-gadget", 2)
    assert dev["fields"] == {
        "level": -3, "on": True, "n": 3, "samples": [1, 2, 65535], "label": "hello",
        "points": [{"x": 1, "y": -1}, {"x": 2, "y": -2}], "blob": b"\x01\x02\x03\x04",
        "subsections": {"x-gadget/extra": {"extra": 0xDEADBEEF, "version": 1}}}
    text = format_info(info)
    assert "subsection x-gadget/extra (version 1)" in text and "points[1]:" in text


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_streams_fail_cleanly(files, data):
    """Flipped bytes, cuts and a mangled description: decoded or InfoError,
    never another exception."""
    raw = _small_stream()
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(buf)))
        buf = buf[:cut]
    try:
        decode_stream(bytes(buf))
    except InfoError:
        pass


_SMALL: list[bytes] = []


def _small_stream() -> bytes:
    """A whole VM's stream with 64 KiB of RAM (quick to mutate)."""
    if not _SMALL:
        from aemu.hw.board import default_board
        from aemu.hw.machine import Machine
        from aemu.savevm.machine import save_vm

        vm = Machine(default_board().with_changes(ram_size=1 << 16), None,
                     stdout=io.BytesIO(), stderr=io.BytesIO())
        vm.cpu.write(0x1000, b"\x5a" * 100)
        _SMALL.append(bytes(save_vm(vm)))
    return _SMALL[0]
