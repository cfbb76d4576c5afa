"""Live migration under faults: the VM is never lost, and never runs twice.

A proxy between source and destination (migration_harness.Proxy) flips
bytes, cuts the stream (FIN or reset), pauses it while the destination is
killed, and interferes with the return path's SHUT; fake destinations stop
reading or never answer; migrate-cancel comes in every state; hostile
streams and multifd packets go to a destination directly.

After each fault one of two things holds:

* the source resumes exactly as it was (running -> running, paused ->
  paused), its migration failed (or was cancelled) with a clear error, the
  destination did not start -- and the source's guest, run on to a later
  cycle T, is still identical to the twin that never migrated;
* or the destination holds an exact copy (RAM and clock equal to the
  stopped source's) and the source knows it (postmigrate).

With a return path the destination starts the guest only after the
source's commit (wire.COMMIT, sent after SHUT 0); a load that is not
followed by exactly that -- a FIN, a reset, silence -- leaves the
destination FAILED with the VM loaded and stopped (``inc.loaded``), and
``cont`` can start it there.

Destinations have autostart on (a completed load would start the guest), so
"never both running" is tested, not implied by a paused destination.  Most
stream offsets come from a reference stream of a paused source with a
return path, which is deterministic byte for byte (``ref``).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from migration_harness import (START_CYCLES, Fault, FakeDestination, FullBacklogListener,
                               Proxy, Rig, Side, assert_ram_equal, check_twin, run_async,
                               stream_map, wait_done, wait_for)

from aemu.loop import RunState
from aemu.migration import Status
from aemu.migration import multifd as multifd_mod
from aemu.migration import outgoing as outgoing_mod
from aemu.migration.incoming import Incoming
from aemu.migration.multifd import MultifdReceiver
from aemu.migration.outgoing import RAM_CHECK_VMSD, RamCheck
from aemu.migration.wire import (COMMIT, MULTIFD_FLAG_SYNC, MULTIFD_FLAG_ZSTD, PACKET_FIXED,
                                 PAGES_PER_PACKET, multifd_init, packet_header,
                                 parse_multifd_init, parse_packet_header)
from aemu.savevm.codec import Reader, StreamError, decode
from aemu.transport.channel import Channel, ChannelError

FAST = {"max-bandwidth": 0}
RP = ["return-path"]


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path (for Unix sockets)."""
    d = tempfile.mkdtemp(prefix="aemu-mig-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


# -- the reference stream ----------------------------------------------------------------------
@dataclass
class Ref:
    data: bytes
    map: Any

    def device_header(self, idstr: str) -> bytes:
        start, _ = self.map.device(idstr)
        return self.data[start:start + 6 + len(idstr)]


async def capture_stream(d: Path, caps: list[str], *, cycles: int = START_CYCLES,
                         live: bool = False) -> tuple[bytes, Any, bytes]:
    """The main stream of one migration (source at ``cycles``), its map, and
    the source's RAM after it."""
    async with Rig(caps=caps, params=FAST, start_cycles=cycles) as rig:
        inc = await rig.dst.mgr.incoming(f"unix:{d}/ref-dst.sock")
        px = Proxy(str(inc.address))
        px.capture = True
        rig.extras.append(px)
        addr = await px.start(f"unix:{d}/ref-px.sock")
        if live:
            rig.src.vm.resume()
        job = rig.src.mgr.migrate(addr)
        await wait_done(job)
        await wait_done(inc)
        assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED)
        data = bytes(px.captured[px.main.index])
        return data, stream_map(data, rig.src.vm), bytes(rig.src.vm.cpu.ram)


def ram_check_of(data: bytes, smap: Any) -> tuple[int, int]:
    """(digest, devices) of the stream's aemu-ram-check section."""
    start, end = smap.device("aemu-ram-check")
    head = 1 + 4 + 1 + len("aemu-ram-check") + 4 + 4
    values = decode(RAM_CHECK_VMSD, RamCheck(), Reader(data[start + head:end - 5]),
                    RAM_CHECK_VMSD.version)
    return values["digest"], values["devices"]


def devices_crc(data: bytes, smap: Any) -> int:
    """What the check's ``devices`` must be: the CRC-32 of the bytes of every
    FULL section before it, each from its section-type byte through its
    footer."""
    crc = 0
    for start, name, end in smap.devices:
        if name == "aemu-ram-check":
            break
        crc = zlib.crc32(data[start:end], crc)
    return crc


@pytest.fixture(scope="module")
def ref() -> Ref:
    d = Path(tempfile.mkdtemp(prefix="aemu-ref-"))
    try:
        data, smap, _ = run_async(capture_stream(d, RP))
        again, _, _ = run_async(capture_stream(d, RP))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert data == again, "the reference stream of a paused source is not deterministic"
    return Ref(data, smap)


def test_reference_stream_layout(ref: Ref) -> None:
    m = ref.map
    assert ref.data[:4] == b"QEVM" and m.header_end < 100
    assert [c for _, c in m.commands][:2] == [1, 2]          # OPEN_RETURN_PATH, PING
    assert m.ram_setup[0] > m.commands[1][0]
    assert len(m.page_records()) > 3328                       # the buffer and the image
    names = [n for _, n, _ in m.devices]
    assert {"cpu", "uart0", "clock", "aemu-ram-check", "globalstate"} <= set(names)
    assert len(names) == len(set(names))
    # the check comes last, after globalstate (then EOF): its CRC covers the
    # bytes of every section before it, section-type byte through footer
    assert names[-2:] == ["globalstate", "aemu-ram-check"] and m.devices[-1][2] == m.eof
    assert m.devices[0][0] == m.ram_sections[-1][2]          # right after the ram END
    chk_start, chk_end = m.device("aemu-ram-check")
    assert chk_end - chk_start == 1 + 4 + 1 + 14 + 4 + 4 + 8 + 4 + 5     # digest u64, devices u32
    digest, devices = ram_check_of(ref.data, m)
    assert devices == devices_crc(ref.data, m) != 0
    assert digest != 0
    assert m.vmdesc == m.eof + 1 and m.vmdesc_end > m.vmdesc
    # after the description, the source's commit (it had SHUT 0), and nothing else
    assert m.commit == m.vmdesc_end and ref.data[m.commit:] == COMMIT
    assert m.total == m.commit + len(COMMIT)
    # the first device section's header is a unique marker in the stream
    # (used to find the device state in live streams, whose length varies)
    first = m.devices[0][1]
    assert ref.data.count(ref.device_header(first)) == 1
    assert set(_corruption_ids()) == set(_corruptions(ref))


# -- running a fault ----------------------------------------------------------------------------
@dataclass
class Outcome:
    rig: Rig
    job: Any
    inc: Any
    px: Optional[Proxy]


def assert_vm_kept(o: Outcome, *, live: bool, expect: str = "resume",
                   src_error: Optional[str] = None, dst_error: Optional[str] = None) -> str:
    """The invariant: never both running; the source resumed as it was (the
    migration failed/cancelled, clear error, destination not started), or
    the destination holds an exact copy and the source is postmigrate.
    Returns which one happened."""
    src, dst = o.rig.src.vm, o.rig.dst.vm
    job, inc = o.job, o.inc
    assert not (src.state is RunState.RUNNING and dst.state is RunState.RUNNING), \
        "the guest runs on both sides"
    assert job.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED), job.status
    if job.status is Status.COMPLETED:
        happened = "complete"
        assert src.state is RunState.POSTMIGRATE
        assert dst.state in (RunState.RUNNING, RunState.PAUSED), dst.state
        if dst.state is RunState.RUNNING:
            dst.pause()
        assert inc.status is Status.COMPLETED or dst.state is RunState.PAUSED
    else:
        happened = "resume"
        assert src.state is (RunState.RUNNING if live else RunState.PAUSED), src.state
        assert src.held_state is None and src.throttle == 0
        if job.status is Status.FAILED:
            assert job.error and isinstance(job.error, str)
            assert o.rig.src.mgr.info()["error-desc"] == job.error
            if src_error:
                assert re.search(src_error, job.error), job.error
        assert inc.status is not Status.COMPLETED, \
            "the destination completed (took the guest) although the source resumed it"
        assert dst.state in (RunState.INMIGRATE, RunState.PAUSED), dst.state
        if inc.status is Status.FAILED:
            assert inc.error and isinstance(inc.error, str)
            if dst_error:
                assert re.search(dst_error, inc.error), inc.error
    if expect != "either":
        assert happened == expect, (happened, job.error, inc.error)
    return happened


async def settle(o: Outcome, *, inc_may_wait: bool = False) -> None:
    """Wait for both sides to end (a destination that never saw a stream
    stays listening: then cancel it)."""
    await wait_done(o.job, 20)
    if inc_may_wait and o.inc.status is Status.SETUP:
        await asyncio.sleep(0.05)
        if o.inc.status is Status.SETUP:
            o.inc.cancel()
    await wait_done(o.inc, 20)
    await asyncio.sleep(0.01)                 # a guest that would start, starts now


HELD = r"the VM is loaded and stopped here"


def assert_held_stopped(o: Outcome) -> None:
    """The destination loaded everything and answered SHUT 0, but never got
    the source's commit: its migration failed saying so, the VM is loaded
    and paused (not started, whatever autostart says), and no SHUT 1 went
    back after the SHUT 0."""
    inc, dst = o.inc, o.rig.dst.vm
    assert inc.status is Status.FAILED, (inc.status, inc.error)
    assert inc.loaded
    assert inc.error and re.search(HELD, inc.error), inc.error
    assert dst.state is RunState.PAUSED, dst.state
    if o.px is not None and o.px.shut_code is not None:
        assert o.px.shut_code == 0


async def check_after(o: Outcome, happened: str) -> None:
    """The twin check on whichever side has the guest now (a destination that
    loaded but never started: first equal to the stopped source)."""
    src, dst = o.rig.src, o.rig.dst
    if happened == "resume":
        await check_twin(src)
        return
    if o.inc.status is not Status.COMPLETED:
        assert dst.vm.state is RunState.PAUSED
        assert_ram_equal(dst.vm.cpu.ram, bytes(src.vm.cpu.ram), "destination vs source")
        assert dst.vm.cycles == src.vm.cycles
    await check_twin(dst, before=bytes(src.uart.data))


@contextlib.asynccontextmanager
async def faulted(d: Path, **kw: Any):
    """``start_fault(d, **kw)``'s outcome; the rig closed after."""
    o = await start_fault(d, **kw)
    try:
        yield o
    finally:
        await o.rig.aclose()


async def settle_held(o: Outcome, *, live: bool = True, **kept: Any) -> str:
    """The verdict goes wrong at the end: once both sides ended, the VM was
    kept (``assert_vm_kept``'s ``kept``), the destination holds it loaded and
    stopped, and whichever side has the guest passes the twin check."""
    await settle(o)
    happened = assert_vm_kept(o, live=live, **kept)
    assert_held_stopped(o)
    await check_after(o, happened)
    return happened


async def start_fault(d: Path, *, live: bool, caps: list[str] = RP, params: Optional[dict] = None,
                      main: Optional[Fault] = None, multifd: Optional[dict] = None,
                      shut: Optional[str] = None, net: str = "tcp") -> Outcome:
    """Source -> proxy -> destination (autostart on), the migration started.
    TCP by default: a Unix socket cannot be reset (close is always an EOF to
    the peer, SO_LINGER or not), so the proxy could not pass a reset on."""
    rig = Rig(caps=caps, params={**FAST, **(params or {})})
    await rig.__aenter__()
    try:
        rig.dst.vm.autostart = True
        if net == "tcp":
            inc = await rig.dst.mgr.incoming("tcp:127.0.0.1:0")
            listen = "tcp:127.0.0.1:0"
        else:
            inc = await rig.dst.mgr.incoming(f"unix:{d}/dst.sock")
            listen = f"unix:{d}/px.sock"
        px = Proxy(str(inc.address), main=main, multifd=multifd, shut=shut)
        rig.extras.append(px)
        addr = await px.start(listen)
        if live:
            rig.src.vm.resume()
        job = rig.src.mgr.migrate(addr)
    except BaseException:
        await rig.aclose()
        raise
    return Outcome(rig, job, inc, px)


# -- corrupted bytes ------------------------------------------------------------------------------
def _corruptions(ref: Ref) -> dict[str, tuple[int, int, str, str]]:
    """name -> (offset, xor mask, expected outcome, destination error pattern)."""
    d, m = ref.data, ref.map
    pages = m.page_records()
    by_page = {p: (rec, data) for rec, p, data in pages}
    buf_rec, buf_data = by_page[0x300]                 # the first page of the buffer
    last_data = pages[-1][2]
    cpu_start, cpu_end = m.device("cpu")
    gs_start, _ = m.device("globalstate")
    chk_start, chk_end = m.device("aemu-ram-check")
    name_at = d.index(b"aemu-default")
    out = {
        "version": (7, 0x01, "resume", r"stream version"),
        "config-board-name": (name_at + 3, 0x20, "resume", r"the stream is for board"),
        "open-return-path-cmd": (m.commands[0][0] + 2, 0x40, "resume",
                                 r"stream command .* is not supported"),
        "ping-length": (m.commands[1][0] + 4, 0x01, "resume", r"PING with a bad length|"
                        r"stream command|section"),
        "ram-setup-block-name": (d.index(b"cr16.ram", m.ram_setup[0]) + 2, 0x01, "resume",
                                 r"unknown ram block"),
        "ram-setup-size": (m.ram_setup[0] + 20, 0x10, "resume", r"bytes of RAM|ram"),
        "record-flags": (pages[0][0] + 7, 0x40, "resume", r"unsupported ram record flags"),
        "record-offset": (pages[0][0], 0x80, "resume", r"a ram page outside RAM"),
        "record-block-name": (pages[0][0] + 10, 0x01, "resume", r"unknown ram block"),
        "page-data-first": (pages[0][2] + 100, 0x01, "resume", r"the RAM check failed"),
        "page-data-buffer-test-byte": (buf_data, 0x01, "resume", r"the RAM check failed"),
        "page-data-buffer-record-head": (buf_rec + 4, 0x10, "resume", r"ram|RAM"),
        "page-data-last": (last_data + 4095, 0x80, "resume", r"the RAM check failed"),
        "ram-part-footer": (m.ram_sections[0][2] - 5, 0x01, "resume", r"section footer"),
        "ram-part-section-id": (m.ram_sections[1][0] + 4, 0x01, "resume",
                                r"which was not started"),
        "ram-end-kind": (m.ram_sections[-1][0], 0x40, "resume", r"unknown section type"),
        "cpu-section-name": (cpu_start + 7, 0x01, "resume", r"unknown section"),
        "cpu-section-version": (cpu_start + 6 + 3 + 7, 0x40, "resume", r"version"),
        "cpu-section-footer-id": (cpu_end - 1, 0x01, "resume", r"section footer has id"),
        "cpu-section-kind": (cpu_start, 0x01, "resume", r"section|unknown"),
        # the check: digest (u64), devices (u32), footer
        "ram-check-digest": (chk_end - 5 - 4 - 1, 0x01, "resume", r"the RAM check failed"),
        "ram-check-devices": (chk_end - 5 - 1, 0x01, "resume", r"the device check failed"),
        "ram-check-name": (chk_start + 8, 0x01, "resume", r"unknown section"),
        # a field value that decodes fine: only the device CRC sees it
        "cpu-value": (cpu_start + 17 + 3, 0x01, "resume", r"the device check failed"),
        "globalstate-runstate": (d.index(b"paused", gs_start), 0x20, "resume",
                                 r"the device check failed"),
        "eof-byte": (m.eof, 0x40, "resume", r"unknown section type"),
    }
    for _, name, end in m.devices:        # every device's footer marker
        if name not in ("cpu",):
            out[f"{name}-footer"] = (end - 5, 0x01, "resume", r"missing section footer")
    for start, name, _ in m.devices:      # every device's first value byte (its header:
        if name not in ("cpu", "globalstate", "aemu-ram-check"):    # type, id, name, 2 u32)
            out[f"{name}-first-value"] = (start + 1 + 4 + 1 + len(name) + 4 + 4, 0x01, "resume",
                                          r"the device check failed")
    return out


def _corruption_ids() -> list[str]:
    # the names only (the offsets need the reference stream: resolved in the test)
    return ["version", "config-board-name", "open-return-path-cmd", "ping-length",
            "ram-setup-block-name", "ram-setup-size", "record-flags", "record-offset",
            "record-block-name", "page-data-first", "page-data-buffer-test-byte",
            "page-data-buffer-record-head", "page-data-last", "ram-part-footer",
            "ram-part-section-id", "ram-end-kind", "cpu-section-name", "cpu-section-version",
            "cpu-section-footer-id", "cpu-section-kind", "ram-check-digest",
            "ram-check-devices", "ram-check-name", "cpu-value", "globalstate-runstate",
            "eof-byte", "icu-footer", "timer0-footer", "timer1-footer", "uart0-footer",
            "wdt-footer", "clock-footer", "aemu-ram-check-footer", "globalstate-footer",
            "icu-first-value", "timer0-first-value", "timer1-first-value",
            "uart0-first-value", "wdt-first-value", "clock-first-value"]


@pytest.mark.parametrize("where", _corruption_ids())
def test_corrupt_byte_paused_source(short_tmp, ref, where) -> None:
    """One flipped byte anywhere that matters: the destination refuses the
    stream (a flipped page byte by the RAM check, a flipped device value
    -- globalstate and the check included -- by the device check), answers
    SHUT 1 or drops the connection, the paused source stays paused and
    unchanged."""
    offset, mask, expect, dst_error = _corruptions(ref)[where]

    async def main() -> None:
        async with faulted(short_tmp, live=False, main=Fault(flip={offset: mask})) as o:
            await settle(o)
            assert o.px.fired.is_set()
            happened = assert_vm_kept(o, live=False, expect=expect, dst_error=dst_error)
            assert o.inc.status is Status.FAILED
            assert o.rig.dst.vm.state is RunState.INMIGRATE
            await check_after(o, happened)
    run_async(main())


def test_corrupt_magic_is_not_a_migration(short_tmp) -> None:
    """A connection that does not start with QEVM is dropped; the destination
    goes on waiting for a real one, the source fails and resumes."""
    async def main() -> None:
        async with faulted(short_tmp, live=True, main=Fault(flip={0: 0xFF})) as o:
            await wait_done(o.job)
            assert o.inc.status is Status.SETUP            # still listening
            o.inc.cancel()
            await settle(o)
            happened = assert_vm_kept(o, live=True)
            await check_after(o, happened)
    run_async(main())


@pytest.mark.parametrize("where", [
    "json-value",
    "json-syntax",
])
def test_corrupt_description_is_harmless(short_tmp, ref, where) -> None:
    """The JSON description after EOF is not needed for the load: with a
    return path a damaged one does not fail the migration (the source's
    commit follows it: the destination completes).  json-value: still JSON
    (a letter of a key); json-syntax: not JSON any more (its opening brace)."""
    at = {"json-value": ref.map.vmdesc + 8, "json-syntax": ref.map.vmdesc + 5}[where]
    assert ref.data[ref.map.vmdesc + 5:ref.map.vmdesc + 9] == b'{"pa'

    async def main() -> None:
        async with faulted(short_tmp, live=False, main=Fault(flip={at: 0x01})) as o:
            await settle(o)
            assert o.px.fired.is_set()
            happened = assert_vm_kept(o, live=False, expect="complete")
            assert o.inc.status is Status.COMPLETED, o.inc.error
            await check_after(o, happened)
    run_async(main())


@pytest.mark.parametrize("live", [False, True], ids=["paused", "running"])
def test_corrupt_device_value_is_detected(short_tmp, ref, live) -> None:
    """A flipped byte in a device section's field values (a CPU register)
    decodes fine; the check's CRC of the device sections refuses it, so the
    destination never runs a guest that differs from the source's: the
    source resumes.  (Running: found by the section's header, as the
    stream's length varies.)"""
    cpu_start, _ = ref.map.device("cpu")
    inside = 6 + 3 + 8 + 3                       # a byte inside the first CPU field
    fault = (Fault(marker=ref.device_header("cpu"), flip={inside: 0x01}) if live
             else Fault(flip={cpu_start + inside: 0x01}))

    async def main() -> None:
        async with faulted(short_tmp, live=live, main=fault) as o:
            await settle(o)
            assert o.px.fired.is_set()
            happened = assert_vm_kept(o, live=live, expect="resume",
                                      dst_error=r"the device check failed")
            assert o.inc.status is Status.FAILED and not o.inc.loaded
            assert o.rig.dst.vm.state is RunState.INMIGRATE
            await check_after(o, happened)
    run_async(main())


@pytest.mark.parametrize("where", ["header-version", "page-data", "device-section-name",
                                   "device-footer"])
def test_corrupt_byte_running_source(short_tmp, ref, where) -> None:
    """The same with the guest running during the precopy: the stream's
    length varies, so device faults count from the first device section's
    header.  A flipped page byte may be healed by a later pass of that page
    (then the copy is exact); else the RAM check refuses it."""
    first = ref.map.devices[0][1]
    marker = ref.device_header(first)
    start, end = ref.map.device(first)
    fault, expect = {
        "header-version": (Fault(flip={7: 1}), "resume"),
        "page-data": (Fault(flip={ref.map.page_records()[0][2] + 64: 0x01}), "either"),
        "device-section-name": (Fault(marker=marker, flip={7: 0x01}), "resume"),
        "device-footer": (Fault(marker=marker, flip={end - start - 5: 0x01}), "resume"),
    }[where]

    async def main() -> None:
        async with faulted(short_tmp, live=True, main=fault) as o:
            await settle(o)
            assert o.px.fired.is_set()
            happened = assert_vm_kept(o, live=True, expect=expect)
            await check_after(o, happened)
    run_async(main())


# -- a cut stream ---------------------------------------------------------------------------------
def _cut_points(ref: Ref) -> dict[str, int]:
    m = ref.map
    return {
        "header": 30,
        "ram-setup": m.ram_setup[0] + 10,
        "first-pages": 3 * 1024 * 1024 + 77,
        "last-pages": m.ram_sections[-2][2] - 100,
        "device-state": m.device("cpu")[0] + 20,
        "before-eof": m.eof,
        "after-eof": m.eof + 1,
        "in-description": m.vmdesc_end - 10,
        "before-commit": m.commit,
        "in-commit": m.commit + 3,
    }


CUTS = ["header", "ram-setup", "first-pages", "last-pages", "device-state", "before-eof",
        "after-eof", "in-description"]
#: cut after the destination's SHUT 0 reached the source: only the commit is missing
COMMIT_CUTS = ["before-commit", "in-commit"]


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
@pytest.mark.parametrize("where", CUTS)
def test_cut_stream_paused_source(short_tmp, ref, where, reset) -> None:
    """The connection closes (reset, or FIN both ways) after K bytes: the
    source learns it (no SHUT 0), stays paused; the destination fails.  A
    FIN after the stream's EOF byte is not the source's commit: the
    destination, which loaded everything, holds the VM stopped."""
    cut = _cut_points(ref)[where]

    async def main() -> None:
        async with faulted(short_tmp, live=False, main=Fault(cut=cut, reset=reset)) as o:
            await settle(o)
            assert o.px.fired.is_set()
            happened = assert_vm_kept(o, live=False, src_error=r".")
            assert o.inc.status is Status.FAILED
            if not reset and where in ("after-eof", "in-description"):
                # every byte up to EOF arrived before the FIN: loaded, then no commit
                assert_held_stopped(o)
            elif where not in ("after-eof", "in-description"):
                assert not o.inc.loaded
                assert o.rig.dst.vm.state is RunState.INMIGRATE
            await check_after(o, happened)
    run_async(main())


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
@pytest.mark.parametrize("where", COMMIT_CUTS)
def test_cut_before_the_commit(short_tmp, ref, where, reset) -> None:
    """The stream is cut after the description, where the source's commit
    goes (whole or in part): SHUT 0 reached the source (postmigrate), the
    destination never read the whole commit and holds an exact copy
    stopped; ``cont`` starts it there."""
    cut = _cut_points(ref)[where]

    async def main() -> None:
        async with faulted(short_tmp, live=False, main=Fault(cut=cut, reset=reset)) as o:
            await settle_held(o, live=False, expect="complete")
            assert o.px.fired.is_set()
            o.rig.dst.vm.resume()                    # cont: the copy here runs
            assert o.rig.dst.vm.state is RunState.RUNNING
    run_async(main())


@pytest.mark.parametrize("where", ["header", "first-pages", "pass-2", "device-state"])
def test_cut_stream_running_source(short_tmp, ref, where, run) -> None:
    first = ref.map.devices[0][1]
    params = {}
    if where == "device-state":
        fault = Fault(marker=ref.device_header(first), cut=30, reset=True)
    elif where == "pass-2":
        fault = Fault(cut=20 * 1024 * 1024, reset=True)
        params = {"downtime-limit": 1}          # cannot converge: 20 MiB is in pass 2
    else:
        fault = Fault(cut=_cut_points(ref)[where], reset=True)
    cut_running(short_tmp, fault, run, params)


def test_fin_after_eof_running_source(short_tmp, ref) -> None:
    """The same FIN with the guest running: a FIN is not the commit, so the
    destination holds the loaded VM stopped while the source (no SHUT 0)
    resumes -- it never runs on both sides."""
    m = ref.map
    marker = ref.device_header(m.devices[0][1])
    cut_running(short_tmp, Fault(marker=marker, cut=m.eof + 1 - m.devices[0][0], reset=False),
                run_async, held=True)


def cut_running(short_tmp, fault: Fault, run, params: Optional[dict] = None, *,
                held: bool = False) -> None:
    async def main() -> None:
        async with faulted(short_tmp, live=True, main=fault, params=params) as o:
            await settle(o)
            happened = assert_vm_kept(o, live=True)
            if held:
                assert_held_stopped(o)
            await check_after(o, happened)
    run(main())


def test_cut_without_return_path_in_the_device_state(short_tmp, ref) -> None:
    """Without a return path the source may not know: a stream cut after it
    wrote its last byte completes at the source while the destination fails
    (QEMU's behaviour too -- the reason for return-path).  Never both run."""
    first = ref.map.devices[0][1]

    async def main() -> None:
        async with faulted(short_tmp, live=False, caps=[],
                           main=Fault(marker=ref.device_header(first), cut=40, reset=True)) as o:
            await settle(o)
            assert o.inc.status is Status.FAILED
            assert o.rig.dst.vm.state is RunState.INMIGRATE
            if o.job.status is Status.COMPLETED:        # it did not notice: the guest is lost
                assert o.rig.src.vm.state is RunState.POSTMIGRATE
            else:
                happened = assert_vm_kept(o, live=False)
                await check_after(o, happened)
    run_async(main())


# -- the return path's verdict --------------------------------------------------------------------
def test_shut_reset_instead_of_forwarded(short_tmp) -> None:
    """The connection resets where SHUT 0 would reach the source: the source
    resumes; the destination, which loaded everything, stays stopped."""
    async def main() -> None:
        async with faulted(short_tmp, live=True, shut="reset") as o:
            # loaded, not started
            await settle_held(o, src_error=r"return path")
            assert o.px.shut_code == 0
    run_async(main())


def test_shut_never_arrives(short_tmp, monkeypatch) -> None:
    """SHUT 0 is held back: the source gives up after RP_TIMEOUT and resumes;
    its reset tells the destination, which stays stopped."""
    monkeypatch.setattr(outgoing_mod, "RP_TIMEOUT", 0.4)

    async def main() -> None:
        async with faulted(short_tmp, live=True, shut="hold") as o:
            await settle_held(o, src_error=r"did not answer")
    run_async(main())


COMMIT_LOSSES = {
    # how the destination's side goes on after SHUT 0 reached the source: the error
    "reset": r"the connection ended before the source confirmed the switch-over",
    "fin": r"the connection ended before the source confirmed the switch-over",
    "garble": r"the source sent something other than its commit",
    "silence": r"the source did not confirm the switch-over",
}


@pytest.mark.parametrize("how", list(COMMIT_LOSSES))
def test_source_commit_never_arrives(short_tmp, monkeypatch, how) -> None:
    """SHUT 0 reaches the source (postmigrate), but its commit never reaches
    the destination -- a reset, a FIN, other bytes, or silence (for the
    destination's RP_TIMEOUT) instead: the destination stays stopped holding
    an exact copy (the source knows the destination has it); cont starts it."""
    from aemu.migration import incoming as incoming_mod
    monkeypatch.setattr(incoming_mod, "RP_TIMEOUT", 0.3)

    async def main() -> None:
        async with faulted(short_tmp, live=True, shut=f"forward-then-{how}") as o:
            await settle_held(o, expect="complete")
            assert o.px.withheld == COMMIT          # the source did send it
            assert re.search(COMMIT_LOSSES[how], o.inc.error), o.inc.error
            o.rig.dst.vm.resume()
            assert o.rig.dst.vm.state is RunState.RUNNING
    run_async(main())


def test_fin_without_the_sources_verdict_does_not_start_the_destination(short_tmp) -> None:
    """A FIN that is not the source's (a middlebox/half-close) while the
    source never got SHUT 0: not a commit.  The source resumes, the
    destination holds the loaded VM stopped -- never both running."""
    async def main() -> None:
        async with faulted(short_tmp, live=True, shut="split") as o:
            await settle_held(o, src_error=r"return path")
    run_async(main())


def test_unix_relay_dies_before_the_verdict(short_tmp) -> None:
    """The same on Unix sockets, where a reset is an EOF too (no SO_LINGER
    reset for AF_UNIX): a relay that dies closes both sides; the source sees
    its return path end before SHUT and resumes, the destination an EOF
    after its SHUT 0 with no commit: it holds the VM stopped."""
    async def main() -> None:
        async with faulted(short_tmp, live=True, shut="reset", net="unix") as o:
            await settle_held(o, src_error=r"return path")
    run_async(main())


@pytest.mark.parametrize("net", ["tcp", "unix"])
def test_cancel_as_the_verdict_arrives(short_tmp, net) -> None:
    """migrate-cancel at the moment SHUT 0 arrives still counts: the source
    is cancelled before it sends its commit and resumes; the destination
    holds the loaded VM stopped."""
    async def main() -> None:
        async with Rig(caps=RP, params=FAST) as rig:
            rig.dst.vm.autostart = True
            uri = "tcp:127.0.0.1:0" if net == "tcp" else f"unix:{short_tmp}/d.sock"
            inc = await rig.dst.mgr.incoming(uri)
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_for(lambda: job._shut is not None, 10, "the return path")
            job._shut.add_done_callback(lambda _: rig.src.mgr.cancel())
            o = Outcome(rig, job, inc, None)
            await settle(o)
            assert job._shut.done() and job._shut.result() == 0
            happened = assert_vm_kept(o, live=True, expect="resume")
            assert job.status is Status.CANCELLED and job.error is None
            assert_held_stopped(o)
            await check_after(o, happened)
    run_async(main())


# -- a destination that stalls --------------------------------------------------------------------
@pytest.mark.parametrize("live", [True, False], ids=["running", "paused"])
def test_destination_stops_reading(short_tmp, live) -> None:
    """A peer that accepts and never reads: the source stays in its pass
    (blocked on the socket) with the VM as it was; migrate-cancel ends it."""
    async def main() -> None:
        async with Rig(caps=RP, params=FAST) as rig:
            fake = FakeDestination(read=False)
            rig.extras.append(fake)
            addr = await fake.start(f"unix:{short_tmp}/fake.sock")
            if live:
                rig.src.vm.resume()
            job = rig.src.mgr.migrate(addr)
            await asyncio.sleep(0.4)
            assert job.status is Status.ACTIVE
            assert rig.src.vm.state is (RunState.RUNNING if live else RunState.PAUSED)
            rig.src.mgr.cancel()
            await wait_done(job, 5)
            assert job.status is Status.CANCELLED
            assert rig.src.vm.state is (RunState.RUNNING if live else RunState.PAUSED)
            await check_twin(rig.src)
    run_async(main())


def test_destination_never_answers(short_tmp, monkeypatch) -> None:
    """A peer that reads everything and never answers on the return path:
    the source gives up after RP_TIMEOUT (PING or SHUT) and resumes."""
    monkeypatch.setattr(outgoing_mod, "RP_TIMEOUT", 0.4)

    async def main() -> None:
        async with Rig(caps=RP, params=FAST) as rig:
            fake = FakeDestination(read=True)
            rig.extras.append(fake)
            addr = await fake.start(f"unix:{short_tmp}/fake.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(addr)
            await wait_done(job, 10)
            assert job.status is Status.FAILED
            assert re.search(r"did not answer", job.error), job.error
            assert rig.src.vm.state is RunState.RUNNING
            assert fake.received > 1 << 20
            await check_twin(rig.src)
    run_async(main())


# -- the destination dies -------------------------------------------------------------------------
async def kill_destination(o: Outcome, how: str) -> None:
    inc = o.inc
    if how == "cancel":
        inc.cancel()
    elif how == "abort-channel":
        assert inc.main is not None
        inc.main.abort()
    elif how == "close":
        await o.rig.dst.close()              # the manager (cancels) and the VM
    else:
        raise AssertionError(how)


KILLS = [("pass-1", "cancel"), ("pass-1", "close"), ("pass-2", "cancel"),
         ("pass-3", "abort-channel"), ("switch-over-pages", "cancel"),
         ("device-state", "cancel"), ("device-state", "close"), ("before-ack", "cancel"),
         ("before-ack", "abort-channel"), ("before-ack", "close")]
MiB = 1 << 20


@pytest.mark.parametrize("where,how", KILLS)
def test_destination_killed(short_tmp, ref, where, how) -> None:
    """The destination dies at a precise point (the proxy holds the stream
    there, or holds SHUT 0 back): the source resumes, the guest runs on.
    pass-N: the Nth precopy pass (1 ms downtime: it cannot converge);
    switch-over-pages: the pages sent with the guest stopped (a pass of the
    whole buffer, as the guest re-dirties all of it at once)."""
    live = where != "device-state"
    params: dict = {}
    if where in ("pass-1", "pass-2", "pass-3"):
        params = {"downtime-limit": 1}
        kw: dict = {"main": Fault(pause={"pass-1": 2, "pass-2": 20, "pass-3": 34}[where] * MiB)}
    elif where == "switch-over-pages":
        kw = {"main": Fault(pause=20 * MiB)}
    elif where == "device-state":
        kw = {"main": Fault(pause=ref.map.device("cpu")[0] + 10)}
    else:
        kw = {"shut": "hold"}

    async def main() -> None:
        async with faulted(short_tmp, live=live, params=params, **kw) as o:
            if where == "before-ack":
                await asyncio.wait_for(o.px.shut_seen.wait(), 10)
            else:
                await asyncio.wait_for(o.px.paused.wait(), 10)
            if where.startswith("pass-"):
                assert o.job.status is Status.ACTIVE
                syncs = o.rig.src.mgr.info()["ram"]["dirty-sync-count"]
                assert syncs >= int(where[-1]), syncs
                assert o.rig.src.vm.state is RunState.RUNNING
            else:
                assert o.job.status is Status.DEVICE, o.job.status
                assert o.rig.src.vm.state is RunState.FINISH_MIGRATE
            await kill_destination(o, how)
            o.px.proceed.set()
            await wait_done(o.job, 20)
            await wait_done(o.inc, 5)
            happened = assert_vm_kept(o, live=live)
            assert o.inc.status in (Status.FAILED, Status.CANCELLED)
            await check_after(o, happened)
    run_async(main())


def test_destination_cancelled_before_the_source_connects(short_tmp) -> None:
    async def main() -> None:
        async with Rig(caps=RP, params=FAST) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            inc.cancel()
            await wait_done(inc)
            assert inc.status is Status.CANCELLED
            assert not os.path.exists(f"{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_done(job)
            assert job.status is Status.FAILED and "d.sock" in job.error
            assert rig.src.vm.state is RunState.RUNNING
            await check_twin(rig.src)
    run_async(main())


# -- multifd faults -------------------------------------------------------------------------------
MULTIFD_FAULTS = {
    # channel 0's bytes: the 64-byte init, then packets (header, then page data)
    "init-magic": (Fault(flip={0: 0xFF}), None),
    "packet-magic": (Fault(put={64: b"\xde\xad\xbe\xef"}), r"multifd packet: bad magic"),
    "pages-over-128": (Fault(put={64 + 16: struct.pack(">I", 200)}),
                       r"multifd packet: 200 \+ \d+ pages in 128 slots"),
    "offset-outside-ram": (Fault(put={64 + PACKET_FIXED: struct.pack(">Q", 0x7FFF0000)}),
                           r"page outside RAM"),
    "offset-unaligned": (Fault(put={64 + PACKET_FIXED: struct.pack(">Q", 0x1008)}),
                         r"page outside RAM"),
    "block-name": (Fault(flip={64 + 66: 0x01}), r"unknown ram block"),
    "page-data": (Fault(flip={64 + PACKET_FIXED + 8 * PAGES_PER_PACKET + 5000: 0x01}),
                  r"the RAM check failed"),
    "channel-reset": (Fault(cut=3 * 1024 * 1024, reset=True), None),
}


@pytest.mark.parametrize("what", list(MULTIFD_FAULTS))
def test_multifd_fault(short_tmp, what) -> None:
    """A damaged or broken multifd channel: the destination refuses it (its
    packets are checked before any page is stored), the source resumes."""
    fault, dst_error = MULTIFD_FAULTS[what]
    live = what != "page-data"       # a paused source: the damaged page is never re-sent

    async def main() -> None:
        async with faulted(short_tmp, live=live, caps=["multifd", *RP],
                           params={"multifd-channels": 2}, multifd={0: fault}) as o:
            await settle(o, inc_may_wait=True)
            assert o.px.fired.is_set()
            happened = assert_vm_kept(o, live=live, dst_error=dst_error)
            assert o.inc.status in (Status.FAILED, Status.CANCELLED)
            await check_after(o, happened)
    run_async(main())


class BytesChannel(Channel):
    """A channel over fixed bytes: EOF after them."""

    name = "test bytes"

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.buf += data
        self.received = len(data)
        self.aborted = False

    async def fill(self, n: int) -> None:
        if len(self.buf) < n:
            raise ChannelError(f"{self.name}: end of data")

    def abort(self) -> None:
        self.aborted = True


def _packet(normal: int, zeros: int, offsets: list[int], *, flags: int = 0,
            data: Optional[bytes] = None, block: bytes = b"cr16.ram") -> bytes:
    raw = b"".join(struct.pack(">Q", o) for o in offsets)
    if data is None:
        data = bytes(range(256)) * 16 * normal
    return packet_header(flags, normal, zeros, len(data), 0, block, raw) + data


def test_multifd_packet_header_checks() -> None:
    good = _packet(2, 1, [0x1000, 0x2000, 0x3000])
    pkt = parse_packet_header(good, 0)
    assert (pkt.normal, pkt.zeros, pkt.size, pkt.block) == (2, 1, 8192, "cr16.ram")
    assert pkt.offsets == b"".join(struct.pack(">Q", o) for o in (0x1000, 0x2000, 0x3000))

    def bad(raw: bytes, pattern: str, compression: int = 0) -> None:
        with pytest.raises(StreamError, match=pattern):
            parse_packet_header(raw, compression)

    bad(b"\0\0\0\0" + good[4:], "bad magic")
    bad(good[:4] + struct.pack(">I", 2) + good[8:], "version 2")
    bad(good[:12] + struct.pack(">I", 129) + good[16:], "129 page slots")
    over = packet_header(0, 100, 29, 100 * 4096, 0, b"cr16.ram", bytes(8 * 129)[:8 * 128])
    bad(over, r"100 \+ 29 pages in 128 slots")
    bad(packet_header(0, 200, 0, 0, 0, b"cr16.ram", b""), r"200 \+ 0 pages")
    bad(packet_header(0, 2, 0, 4096, 0, b"cr16.ram", bytes(16)), "4096 bytes of data for 2")
    bad(packet_header(0, 1, 0, 8192, 0, b"cr16.ram", bytes(8)), "8192 bytes of data for 1")
    bad(packet_header(MULTIFD_FLAG_ZSTD, 1, 0, 10, 0, b"cr16.ram", bytes(8)), "compression")
    bad(packet_header(0, 1, 0, 4096, 0, b"cr16.ram", bytes(8)), "compression",
        MULTIFD_FLAG_ZSTD)
    bad(packet_header(MULTIFD_FLAG_ZSTD, 1, 0, 1 << 20, 0, b"cr16.ram", bytes(8)),
        "bytes of data", MULTIFD_FLAG_ZSTD)
    sync = parse_packet_header(packet_header(MULTIFD_FLAG_SYNC, 0, 0, 0, 7, b"cr16.ram", b""), 0)
    assert sync.flags & MULTIFD_FLAG_SYNC and sync.number == 7
    with pytest.raises(StreamError, match="bad magic"):
        parse_multifd_init(b"\0" * 64)
    with pytest.raises(StreamError, match="version"):
        parse_multifd_init(struct.pack(">II16sB7x32x", 0x11223344, 5, bytes(16), 0))
    assert parse_multifd_init(multifd_init(b"u" * 16, 3)) == (b"u" * 16, 3)


@pytest.mark.parametrize("what", ["bad-magic", "over-128", "outside-ram", "unaligned",
                                  "past-the-end", "unknown-block", "channel-id",
                                  "duplicate-channel", "other-uuid", "missing-channel",
                                  "truncated", "good"])
def test_multifd_receiver_refuses_bad_packets(what, monkeypatch) -> None:
    """Packets straight into a destination's receiver: every bad one fails it
    with a StreamError and leaves RAM unchanged; a good one is stored.  A
    channel it cannot take is refused with the reason (add's answer, and
    the error at the FLUSH); a channel that never comes fails the FLUSH
    after JOIN_TIMEOUT."""
    monkeypatch.setattr(multifd_mod, "JOIN_TIMEOUT", 0.2)
    async def main() -> None:
        side = await Side("dst").start()
        try:
            cpu = side.vm.cpu
            before = bytes(cpu.ram)
            recv = MultifdReceiver(cpu, 2, compression="none", hashes=None)
            page = bytes([0xA5]) * 4096
            sync = packet_header(MULTIFD_FLAG_SYNC, 0, 0, 0, 1, b"cr16.ram", b"")
            top = cpu.ram_size
            packets = {
                "bad-magic": b"\x12\x34\x56\x78" + _packet(1, 0, [0x1000], data=page)[4:],
                "over-128": packet_header(0, 129, 0, 129 * 4096, 0, b"cr16.ram", b"")
                + bytes(129 * 4096),
                "outside-ram": _packet(2, 0, [0x1000, top], data=page * 2),
                "unaligned": _packet(2, 0, [0x1000, 0x2004], data=page * 2),
                "past-the-end": _packet(1, 0, [top + 4096], data=page),
                "unknown-block": _packet(1, 0, [0x1000], data=page, block=b"pc.ram"),
                "truncated": _packet(1, 0, [0x1000], data=page)[:-10],
                "good": _packet(1, 1, [0x5000, 0x6000], data=page) + sync,
            }
            refusals = {
                "channel-id": (2, r"multifd channel id 2 is unexpected: multifd-channels is 2 "
                                  r"here"),
                "duplicate-channel": (1, r"multifd channel id 1 connected twice"),
                "other-uuid": (1, r"a multifd channel of another migration"),
            }
            if what in refusals:
                cid, why = refusals[what]
                first = BytesChannel(sync)
                assert recv.add(first, 1 if what == "duplicate-channel" else 0, b"u" * 16) \
                    is None
                ch = BytesChannel(sync)
                uuid = b"v" * 16 if what == "other-uuid" else b"u" * 16
                answer = recv.add(ch, cid, uuid)
                assert answer and re.search(why, answer), answer
                assert ch.aborted and not first.aborted
                with pytest.raises(StreamError, match=why):
                    await asyncio.wait_for(recv.sync(), 2)
                recv.close()
                return
            if what == "missing-channel":
                assert recv.add(BytesChannel(sync), 0) is None
                with pytest.raises(StreamError, match=r"only 1 of 2 multifd channels connected"):
                    await asyncio.wait_for(recv.sync(), 2)
                assert bytes(cpu.ram) == before
                recv.close()
                return
            recv.add(BytesChannel(packets[what]), 0)
            recv.add(BytesChannel(sync), 1)
            if what == "good":
                await asyncio.wait_for(recv.sync(), 2)
                assert bytes(cpu.ram[0x5000:0x6000]) == page
                assert bytes(cpu.ram[0x6000:0x7000]) == bytes(4096)
                assert recv.pages == 1 and recv.zero_pages == 1
                recv.close()
                return
            with pytest.raises((StreamError, ChannelError)) as info:
                await asyncio.wait_for(recv.sync(), 2)
            if what != "truncated":
                assert isinstance(info.value, StreamError), info.value
            assert bytes(cpu.ram) == before, "a refused packet changed RAM"
            recv.close()
        finally:
            await side.close()
    run_async(main())


def test_ram_scatter_checks_every_offset_first() -> None:
    async def main() -> None:
        side = await Side("dst").start()
        try:
            cpu = side.vm.cpu
            before = bytes(cpu.ram)
            page = bytes([7]) * 4096
            offs = struct.pack(">QQ", 0x4000, cpu.ram_size + 0x1000)
            assert cpu.ram_scatter(offs, 2, 0, page * 2) is False
            assert cpu.ram_scatter(struct.pack(">QQ", 0x4000, 0x8001), 1, 1, page) is False
            assert cpu.ram_scatter(struct.pack(">Q", 1 << 63), 0, 1, b"") is False
            assert bytes(cpu.ram) == before
            assert cpu.ram_scatter(struct.pack(">QQ", 0x4000, 0x8000), 1, 1, page) is True
            assert bytes(cpu.ram[0x4000:0x5000]) == page
        finally:
            await side.close()
    run_async(main())


# -- migrate-cancel -------------------------------------------------------------------------------
@pytest.mark.parametrize("live", [True, False], ids=["running", "paused"])
def test_cancel_in_setup(short_tmp, live) -> None:
    async def main() -> None:
        async with Rig(caps=["events", *RP], params=FAST) as rig:
            hole = FullBacklogListener()
            rig.extras.append(hole)
            if live:
                rig.src.vm.resume()
            job = rig.src.mgr.migrate(hole.uri)
            await asyncio.sleep(0.05)
            assert job.status is Status.SETUP
            rig.src.mgr.cancel()
            await wait_done(job, 5)
            assert job.status is Status.CANCELLED and job.error is None
            assert rig.src.statuses() == ["setup", "cancelling", "cancelled"]
            assert rig.src.mgr.info()["status"] == "cancelled"
            assert rig.src.vm.state is (RunState.RUNNING if live else RunState.PAUSED)
            await check_twin(rig.src)
    run_async(main())


def test_cancel_while_active(short_tmp, run) -> None:
    """Cancelled mid-pass (it cannot converge: 1 ms): cancelled, the source
    runs on, the destination fails cleanly and never starts."""
    async def main() -> None:
        async with Rig(caps=["events", *RP], params={**FAST, "downtime-limit": 1}) as rig:
            rig.dst.vm.autostart = True
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_for(lambda: len(rig.src.passes()) >= 3, 10, "two passes")
            assert job.status is Status.ACTIVE
            rig.src.mgr.cancel()
            await wait_done(job)
            await wait_done(inc)
            assert job.status is Status.CANCELLED
            assert rig.src.statuses()[-2:] == ["cancelling", "cancelled"]
            assert rig.src.vm.state is RunState.RUNNING
            assert inc.status is Status.FAILED and inc.error
            assert rig.dst.vm.state is RunState.INMIGRATE
            await check_twin(rig.src)
    run(main())


def test_cancel_in_pre_switchover(short_tmp) -> None:
    async def main() -> None:
        async with Rig(caps=["events", "pause-before-switchover", *RP], params=FAST) as rig:
            rig.dst.vm.autostart = True
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_for(lambda: job.status is Status.PRE_SWITCHOVER, 10, "pre-switchover")
            assert rig.src.vm.state is RunState.FINISH_MIGRATE
            rig.src.mgr.cancel()
            await wait_done(job)
            await wait_done(inc)
            assert job.status is Status.CANCELLED
            assert rig.src.vm.state is RunState.RUNNING
            assert inc.status is Status.FAILED
            assert rig.dst.vm.state is RunState.INMIGRATE
            await check_twin(rig.src)
    run_async(main())


def test_cancel_in_device_waiting_for_the_verdict(short_tmp) -> None:
    """Cancelled while it waits for SHUT (device state sent, destination
    loaded): the source resumes; its reset keeps the destination stopped."""
    async def main() -> None:
        async with faulted(short_tmp, live=True, shut="hold") as o:
            await asyncio.wait_for(o.px.shut_seen.wait(), 10)
            assert o.job.status is Status.DEVICE
            assert o.rig.src.vm.state is RunState.FINISH_MIGRATE
            o.rig.src.mgr.cancel()
            await settle(o)
            assert o.job.status is Status.CANCELLED
            happened = assert_vm_kept(o, live=True)
            assert_held_stopped(o)                              # loaded, never started
            await check_after(o, happened)
    run_async(main())


def test_cancel_after_the_end_is_a_no_op(short_tmp) -> None:
    async def main() -> None:
        async with Rig(caps=RP, params=FAST) as rig:
            # failed: nobody listens
            job = rig.src.mgr.migrate(f"unix:{short_tmp}/nobody.sock")
            await wait_done(job)
            assert job.status is Status.FAILED
            error = job.error
            rig.src.mgr.cancel()
            job.cancel()
            assert job.status is Status.FAILED and job.error == error
            assert rig.src.mgr.info()["status"] == "failed"
            # completed
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_done(job)
            await wait_done(inc)
            assert job.status is Status.COMPLETED
            rig.src.mgr.cancel()
            rig.dst.mgr.cancel()
            assert job.status is Status.COMPLETED and inc.status is Status.COMPLETED
            assert rig.src.vm.state is RunState.POSTMIGRATE
            assert rig.src.mgr.info()["status"] == "completed"
    run_async(main())


def test_cancel_then_migrate_to_a_new_destination(short_tmp, run) -> None:
    """QEMU's multifd/tcp/plain/cancel: cancel mid-way, the first destination
    fails; a new destination then gets the guest, exactly."""
    async def main() -> None:
        caps = ["multifd", *RP]
        params = {**FAST, "downtime-limit": 1, "multifd-channels": 4}
        async with Rig(caps=caps, params=params) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_for(lambda: rig.src.mgr.info().get("ram", {}).get("transferred", 0)
                           > 4 << 20, 10, "4 MiB sent")
            rig.src.mgr.cancel()
            await wait_done(job)
            await wait_done(inc)
            assert job.status is Status.CANCELLED and inc.status is Status.FAILED
            assert rig.src.vm.state is RunState.RUNNING
            dst2 = await rig.side("dst2")
            inc2 = await dst2.mgr.incoming(f"unix:{short_tmp}/d2.sock")
            rig.src.mgr.options.set_parameters({"downtime-limit": 300})
            job2 = rig.src.mgr.migrate(str(inc2.address))
            await wait_done(job2)
            await wait_done(inc2)
            assert (job2.status, inc2.status) == (Status.COMPLETED, Status.COMPLETED), \
                (job2.error, inc2.error)
            assert rig.src.vm.state is RunState.POSTMIGRATE
            await check_twin(dst2, before=bytes(rig.src.uart.data))
    run(main())


def test_cancel_right_after_migrate(short_tmp) -> None:
    """migrate and migrate-cancel in one go (one QMP batch): the task is
    cancelled before its first step and still finishes -- cancelled, the
    VM untouched, nothing sent; the next migrate goes through."""
    async def main() -> None:
        async with Rig(caps=["events", *RP], params=FAST) as rig:
            finished = []
            rig.src.mgr.on_finished.append(finished.append)
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            rig.src.mgr.cancel()
            await wait_done(job, 0.5)
            assert job.status is Status.CANCELLED and job.error is None
            assert rig.src.statuses() == ["cancelling", "cancelled"]
            assert rig.src.mgr.info()["status"] == "cancelled"
            assert finished == [job]
            assert job.main is None                     # it never connected
            assert rig.src.vm.state is RunState.RUNNING
            assert not rig.src.mgr.busy
            assert inc.status is Status.SETUP           # nothing reached the destination
            job2 = rig.src.mgr.migrate(str(inc.address))
            await wait_done(job2)
            await wait_done(inc)
            assert (job2.status, inc.status) == (Status.COMPLETED, Status.COMPLETED), \
                (job2.error, inc.error)
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


@pytest.mark.parametrize("kind", ["file", "fd-file"])
def test_incoming_cancel_right_after_start(short_tmp, kind) -> None:
    """For file: and fd: the load task starts in incoming(); a cancel before
    its first step still finishes it (cancelled, not busy), and a new
    incoming then loads the stream."""
    async def main() -> None:
        async with Rig(params=FAST) as rig:
            path = f"{short_tmp}/f.mig"
            job = rig.src.mgr.migrate(f"file:{path}")
            await wait_done(job)
            assert job.status is Status.COMPLETED, job.error
            if kind == "fd-file":
                rig.dst.mgr.add_fd("f", os.open(path, os.O_RDONLY))
            inc = await rig.dst.mgr.incoming(f"file:{path}" if kind == "file" else "fd:f")
            inc.cancel()
            await wait_done(inc, 0.5)
            assert inc.status is Status.CANCELLED
            assert rig.dst.mgr.info()["status"] == "cancelled"
            assert not rig.dst.mgr.busy
            assert rig.dst.vm.state is RunState.INMIGRATE
            assert "f" not in rig.dst.mgr.fds             # taken (and closed) by the channel
            inc2 = await rig.dst.mgr.incoming(f"file:{path}")
            await wait_done(inc2)
            assert inc2.status is Status.COMPLETED, inc2.error
            assert rig.dst.vm.cycles == rig.src.vm.cycles
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


def test_incoming_cancel_right_after_start_closes_the_fd(short_tmp) -> None:
    async def main() -> None:
        async with Rig(params=FAST) as rig:
            a, b = socket.socketpair()
            rig.extras.append(a)
            inc = await rig.dst.mgr.incoming(f"fd:{b.detach()}")     # the channel owns it
            inc.cancel()
            await wait_done(inc, 0.5)
            assert inc.status is Status.CANCELLED
            loop = asyncio.get_running_loop()
            a.setblocking(False)
            # the destination's end closed: an EOF here (not a wait for data)
            assert await asyncio.wait_for(loop.sock_recv(a, 16), 1) == b""
    run_async(main())


# -- hostile streams ------------------------------------------------------------------------------
class _Feeder:
    """One destination VM fed stream after stream over a Unix socket, like a
    source would (reading the return path's answers)."""

    def __init__(self, d: Path, base: bytes, src_ram: bytes) -> None:
        self.commits = 0                        #: how many times it sent COMMIT
        self.d = d
        self.base = base
        self.src_ram = src_ram
        self.side: Optional[Side] = None
        self.loaded: Optional[bytes] = None     #: RAM when a load completed

    async def start(self) -> None:
        self.side = await Side("dst").start()
        self.side.configure(RP, FAST)
        self.side.vm.autostart = True
        self.side.mgr.on_finished.append(self._finished)

    def _finished(self, job: Any) -> None:
        # called as the load ends, before the guest may start
        assert self.side is not None
        self.loaded = bytes(self.side.vm.cpu.ram) if job.status is Status.COMPLETED else None

    async def feed(self, data: bytes) -> Incoming:
        side = self.side
        assert side is not None
        if side.vm.state is RunState.RUNNING:
            side.vm.pause()
        self.loaded = None
        inc = await side.mgr.incoming(f"unix:{self.d}/fuzz.sock")
        reader, writer = await asyncio.open_unix_connection(f"{self.d}/fuzz.sock")
        try:
            writer.write(data)
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            # as a source: read the return path; after SHUT (the verdict) send the
            # commit if it was SHUT 0, and close; a destination still waiting for
            # bytes after a short while gets the EOF
            answers = bytearray()
            eof_sent = False
            with contextlib.suppress(ConnectionError, OSError):
                while True:
                    try:
                        chunk = await asyncio.wait_for(reader.read(65536), 0.05)
                    except asyncio.TimeoutError:
                        if not eof_sent:
                            eof_sent = True
                            writer.write_eof()
                            continue
                        chunk = await asyncio.wait_for(reader.read(65536), 10)
                    if not chunk:
                        break
                    answers += chunk
                    code = _shut_code(answers)
                    if code is not None:
                        if code == 0 and not eof_sent:
                            writer.write(COMMIT)
                            self.commits += 1
                        break
        finally:
            writer.close()
        if inc.status is Status.SETUP:          # not a migration stream: still listening
            await asyncio.sleep(0.01)
            if inc.status is Status.SETUP:
                inc.cancel()
        await wait_done(inc, 10)
        return inc


def _shut_code(answers: bytes) -> Optional[int]:
    """The SHUT's code among the return path's messages (None: no SHUT yet)."""
    at = 0
    while at + 4 <= len(answers):
        kind, length = struct.unpack(">HH", answers[at:at + 4])
        if at + 4 + length > len(answers):
            return None
        if kind == 1:
            return struct.unpack(">I", answers[at + 4:at + 8])[0] if length == 4 else -1
        at += 4 + length
    return None


def _running_stream(data: bytes, smap: Any) -> bytes:
    """The reference stream with globalstate saying "running" (so that a
    destination with autostart would start the guest if it accepted it),
    its device check made to match again, and without the source's commit
    (the feeder sends it, after SHUT 0, as a source does)."""
    gs, _ = smap.device("globalstate")
    at = data.index(b"paused\0", gs)
    out = bytearray(data[:at] + b"running" + data[at + 7:smap.commit])
    _, chk_end = smap.device("aemu-ram-check")
    out[chk_end - 9:chk_end - 5] = devices_crc(bytes(out), smap).to_bytes(4, "big")
    assert ram_check_of(bytes(out), smap)[1] == devices_crc(bytes(out), smap)
    return bytes(out)


def test_hostile_streams(short_tmp, monkeypatch) -> None:
    """Mutated real streams (bytes flipped, cut, inserted, dropped, spliced):
    the destination never crashes; it fails with a StreamError/ChannelError
    (a clear inc.error), never starts the guest -- or, if the mutation was
    harmless, holds exactly the source's RAM."""
    captured: list[BaseException] = []
    real_load = Incoming._load

    async def spy(self: Incoming, ch: Channel) -> bool:
        try:
            return await real_load(self, ch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            captured.append(exc)
            raise
    monkeypatch.setattr(Incoming, "_load", spy)

    with asyncio.Runner() as runner:
        # a small stream: the source stopped before the guest touched its buffer
        data, smap, src_ram = runner.run(capture_stream(short_tmp, RP, cycles=10_000))
        base = _running_stream(data, smap)
        assert len(base) < 1 << 20
        feeder = _Feeder(short_tmp, base, src_ram)
        runner.run(feeder.start())
        cuts = sorted({0, 4, 8, smap.header_end, smap.ram_setup[0], smap.ram_setup[1],
                       *(s for s, _, _ in smap.ram_sections), *(s for s, _, _ in smap.devices),
                       smap.eof, smap.vmdesc, len(base) - 1})
        sane = runner.run(feeder.feed(base))
        assert sane.status is Status.COMPLETED, sane.error
        assert feeder.loaded == src_ram and feeder.commits == 1
        assert feeder.side.vm.state is RunState.RUNNING        # "running" + autostart

        offsets = st.one_of(st.integers(0, len(base) - 1),
                            st.builds(lambda c, k: min(max(c + k, 0), len(base) - 1),
                                      st.sampled_from(cuts), st.integers(-6, 12)))
        op = st.one_of(
            st.tuples(st.just("flip"), offsets, st.integers(1, 255)),
            st.tuples(st.just("cut"), offsets, st.just(0)),
            st.tuples(st.just("insert"), offsets, st.integers(1, 300)),
            st.tuples(st.just("drop"), offsets, st.integers(1, 300)),
            st.tuples(st.just("dup"), offsets, st.integers(1, 5000)),
            st.tuples(st.just("set"), offsets, st.sampled_from([0, 0xFF, 0x7E, 0x04, 0x08,
                                                                0x10, 0x06])),
        )

        @settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(op, min_size=1, max_size=3))
        def check(ops: list[tuple[str, int, int]]) -> None:
            stream = bytearray(base)
            for kind, at, arg in ops:
                at = min(at, max(len(stream) - 1, 0))
                if kind == "flip":
                    stream[at] ^= arg
                elif kind == "set":
                    stream[at] = arg
                elif kind == "cut":
                    del stream[at:]
                elif kind == "insert":
                    stream[at:at] = bytes((at * 7 + i) & 0xFF for i in range(arg))
                elif kind == "drop":
                    del stream[at:at + arg]
                else:
                    stream[at:at] = stream[at:at + arg]
            captured.clear()
            inc = runner.run(feeder.feed(bytes(stream)))
            vm = feeder.side.vm
            if inc.status is Status.COMPLETED:
                assert feeder.loaded == src_ram, "accepted a stream with other RAM"
                return
            assert inc.status in (Status.FAILED, Status.SETUP, Status.CANCELLED), inc.status
            assert vm.state is not RunState.RUNNING, "started a guest from a bad stream"
            if inc.status is Status.FAILED:
                assert inc.error and isinstance(inc.error, str)
                assert captured, "the load failed without an exception from _load"
                assert all(isinstance(e, (StreamError, ChannelError, asyncio.TimeoutError))
                           for e in captured), repr(captured)
        check()
        runner.run(feeder.side.close())

