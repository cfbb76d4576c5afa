"""Helpers for the live-migration tests (test_migration.py,
test_migration_faults.py); no tests here.

* ``Side``: one VM of the pattern guest with its UART capture, its
  MigrationManager and the events it emitted;
* ``Rig``: a source (run to ``START_CYCLES``) and a destination, configured
  alike, closed at the end;
* the twin oracle: ``twin_at(elf, T)`` is what a VM that was never migrated
  holds at cycle T (RAM, UART output), ``check_twin`` runs a VM to T and
  compares (QEMU's A-B check, made exact: the guest is deterministic in
  cycles, so RAM and output must be equal byte for byte);
* ``Proxy``: a unix/tcp forwarder between source and destination that flips,
  overwrites, cuts (FIN or RST), pauses the stream at a byte offset, and
  interferes with the return path's SHUT and the source's commit after it;
* ``stream_map``: where the header, commands, RAM records, device sections,
  the description and the source's commit (wire.COMMIT) of a (reference)
  stream are.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from migration_guest import (PAGE_SIZE, PATTERN_ELF, UartCapture, check_pattern_ram,
                             pattern_board, pattern_layout)

from aemu.hw.machine import Machine
from aemu.loop import RunState
from aemu.migration import MigrationManager, Status
from aemu.migration.outgoing import RAM_CHECK_VMSD, RamCheck
from aemu.migration.wire import COMMIT
from aemu.savevm.codec import Reader, decode
from aemu.savevm.machine import sections
from aemu.savevm.stream import (COMMAND, CONFIG_VMSD, END, EOF, FULL, GLOBALSTATE_VMSD, PART,
                                START, VMDESC, GlobalState, Parsed, Section, _Config,
                                _read_ram_setup)

BUF, NPAGES = pattern_layout(PATTERN_ELF)
START_CYCLES = 200_000          #: the source runs this far before a migration starts
TWIN_STEP = 1 << 21             #: twin targets are multiples of this (cache hits)
ENDED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


# -- VMs -----------------------------------------------------------------------------------
class Side:
    """One VM of a migration test."""

    def __init__(self, name: str, *, elf: Path = PATTERN_ELF, board: Any = None,
                 pace: str = "fast") -> None:
        self.name = name
        self.elf = elf
        self.uart = UartCapture()
        # every VM has the ELF's name: the name is the guest's argv[0], in its RAM
        self.vm = Machine(board if board is not None else pattern_board(), str(elf),
                          name=elf.name, pace=pace, backends={"uart0": self.uart},
                          start_paused=True)
        self.mgr = MigrationManager(self.vm)
        self.events: list[dict] = []
        self.vm.add_listener(self.events.append)
        self.started = False

    async def start(self) -> "Side":
        await self.vm.start()
        self.started = True
        return self

    def configure(self, caps: Iterable[str] = (), params: Optional[dict] = None) -> None:
        caps = list(caps)
        if caps:
            self.mgr.options.set_capabilities([{"capability": c, "state": True} for c in caps])
        if params:
            self.mgr.options.set_parameters(params)

    def statuses(self) -> list[str]:
        return [e["data"]["status"] for e in self.events if e["event"] == "MIGRATION"]

    def passes(self) -> list[int]:
        return [e["data"]["pass"] for e in self.events if e["event"] == "MIGRATION_PASS"]

    async def close(self) -> None:
        try:
            self.mgr.close()
        finally:
            if self.started:
                await self.vm.close()
                self.started = False


class Rig:
    """``async with Rig(caps=[...], params={...}) as rig``: ``rig.src`` (run to
    START_CYCLES, paused) and ``rig.dst`` (started, paused), both configured
    with ``caps``/``params``; ``rig.side()`` makes more VMs; all are closed
    at the end."""

    def __init__(self, *, caps: Iterable[str] = (), params: Optional[dict] = None,
                 elf: Path = PATTERN_ELF, dst_board: Any = None, dst_elf: Optional[Path] = None,
                 pace: str = "fast", dst: bool = True, dst_caps: Optional[Iterable[str]] = None,
                 dst_params: Optional[dict] = None, start_cycles: int = START_CYCLES) -> None:
        self.caps = list(caps)
        self.params = dict(params or {})
        self.elf = elf
        self.pace = pace
        self.sides: list[Side] = []
        self.src = self._new("src", elf=elf)
        self.dst: Optional[Side] = None
        if dst:
            self.dst = self._new("dst", elf=dst_elf or elf, board=dst_board)
        self._dst_caps = self.caps if dst_caps is None else list(dst_caps)
        self._dst_params = self.params if dst_params is None else dict(dst_params)
        self.start_cycles = start_cycles
        self.extras: list[Any] = []        # things with close()/aclose() to clean up

    def _new(self, name: str, **kw: Any) -> Side:
        kw.setdefault("pace", self.pace)
        side = Side(name, **kw)
        self.sides.append(side)
        return side

    async def side(self, name: str = "dst2", *, configure: bool = True, **kw: Any) -> Side:
        """Another started VM (a new destination), configured like dst."""
        kw.setdefault("elf", self.elf)
        side = self._new(name, **kw)
        await side.start()
        if configure:
            side.configure(self._dst_caps, self._dst_params)
        return side

    async def __aenter__(self) -> "Rig":
        try:
            for side in self.sides:
                await side.start()
            await self.src.vm.run_until(cycles=self.start_cycles)
            self.src.configure(self.caps, self.params)
            if self.dst is not None:
                self.dst.configure(self._dst_caps, self._dst_params)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for thing in reversed(self.extras):
            try:
                res = thing.close()
                if asyncio.iscoroutine(res):
                    await res
            except Exception:       # noqa: BLE001 - cleanup
                pass
        self.extras.clear()
        for side in reversed(self.sides):
            await side.close()


def run_async(coro: Any, timeout: float = 60.0) -> Any:
    """Run a coroutine on a fresh asyncio loop, bounded (tests that do not
    need both loops; the ``run`` fixture runs on asyncio and uvloop)."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    with asyncio.Runner() as runner:
        return runner.run(bounded())


async def wait_done(job: Any, timeout: float = 15.0) -> Any:
    """Wait for a migration job (either side) to end; fail clearly on a hang."""
    try:
        await asyncio.wait_for(job.done.wait(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"the migration did not end in {timeout} s: status "
                             f"{job.status.value}, error {job.error!r}") from None
    return job


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
                   step: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


# -- the twin oracle -------------------------------------------------------------------------
_TWINS: dict[tuple[str, int], tuple[bytes, bytes]] = {}
_TWINS_MAX = 6


def twin_target(cycles: int, ahead: int = 1_000_000) -> int:
    """A cycle T at least ``ahead`` past ``cycles``, rounded up to TWIN_STEP."""
    return -(-(cycles + ahead) // TWIN_STEP) * TWIN_STEP


async def twin_at(elf: Path, target: int) -> tuple[bytes, bytes]:
    """(RAM, UART output) of a never-migrated VM at cycle ``target``."""
    key = (str(elf), target)
    hit = _TWINS.get(key)
    if hit is not None:
        return hit
    side = Side("twin", elf=elf)
    await side.start()
    try:
        state = await side.vm.run_until(cycles=target)
        assert state is RunState.PAUSED and side.vm.cycles == target, (state, side.vm.cycles)
        out = (bytes(side.vm.cpu.ram), bytes(side.uart.data))
    finally:
        await side.close()
    if len(_TWINS) >= _TWINS_MAX:
        _TWINS.pop(next(iter(_TWINS)))
    _TWINS[key] = out
    return out


def assert_ram_equal(got: "bytes | bytearray | memoryview", want: bytes, what: str) -> None:
    got = memoryview(got).cast("B")
    if len(got) == len(want) and got == want:
        return
    if len(got) != len(want):
        raise AssertionError(f"{what}: RAM is {len(got)} bytes, expected {len(want)}")
    bad = [p for p in range(len(want) // PAGE_SIZE)
           if got[p * PAGE_SIZE:(p + 1) * PAGE_SIZE] != want[p * PAGE_SIZE:(p + 1) * PAGE_SIZE]]
    raise AssertionError(f"{what}: {len(bad)} pages differ from the twin's, first "
                         f"{[hex(p * PAGE_SIZE) for p in bad[:8]]}")


async def check_twin(side: Side, *, before: bytes = b"", target: Optional[int] = None,
                     ahead: int = 1_000_000) -> int:
    """Run ``side``'s VM to cycle T (default: ``ahead`` past where it is) and
    compare it with the twin: RAM equal, ``before`` + its UART output equal
    to the twin's output, check_pattern_ram passes.  Returns T."""
    vm = side.vm
    if target is None:
        target = twin_target(vm.cycles, ahead)
    state = await vm.run_until(cycles=target)
    assert state is RunState.PAUSED, f"{side.name}: {state} at {vm.cycles}"
    assert vm.cycles == target, (side.name, vm.cycles, target)
    ram, out = await twin_at(side.elf, target)
    assert_ram_equal(vm.cpu.ram, ram, f"{side.name} at cycle {target}")
    got = before + bytes(side.uart.data)
    assert got == out, (f"{side.name}: UART output differs from the twin's at cycle {target}: "
                        f"{len(got)} bytes, twin {len(out)}; got ...{got[-20:]!r} "
                        f"twin ...{out[-20:]!r}")
    check_pattern_ram(vm.cpu.ram, BUF, NPAGES)
    return target


def assert_completed_info(info: dict, *, side: str = "source", passes: int = 1,
                          multifd: bool = False) -> None:
    """query-migrate of a completed migration looks sane."""
    assert info["status"] == "completed", info
    assert "error-desc" not in info
    ram = info["ram"]
    assert ram["transferred"] > 0
    assert ram["page-size"] == PAGE_SIZE
    if side == "source":
        assert isinstance(info["downtime"], int) and info["downtime"] >= 0
        assert info["x-aemu-downtime-us"] >= 0
        assert info["total-time"] >= info["downtime"]
        assert info["setup-time"] >= 0
        assert ram["dirty-sync-count"] >= passes
        assert ram["total"] == pattern_board().ram_size
        assert ram["remaining"] == 0
        assert ram["normal"] > 0 and ram["normal-bytes"] == ram["normal"] * PAGE_SIZE
        assert ram["precopy-bytes"] + ram["downtime-bytes"] <= ram["transferred"]
        assert "expected-downtime" not in info
        if multifd:
            assert ram["multifd-bytes"] > 0
    assert "cpu-throttle-percentage" not in info or info["cpu-throttle-percentage"] > 0


# -- fakes -----------------------------------------------------------------------------------
def reset_writer(writer: Any) -> None:
    """Close a stream with a TCP/unix reset (linger 0), not a FIN."""
    transport = writer.transport if hasattr(writer, "transport") else writer
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def start_server(uri: str, handler: Callable) -> tuple[asyncio.AbstractServer, str]:
    """A stream server on ``unix:PATH`` or ``tcp:HOST:0``; returns (server, uri)."""
    kind, _, rest = uri.partition(":")
    if kind == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rest)
        server = await asyncio.start_unix_server(handler, rest)
        return server, uri
    host, _, port = rest.rpartition(":")
    server = await asyncio.start_server(handler, host, int(port))
    port = server.sockets[0].getsockname()[1]
    return server, f"tcp:{host}:{port}"


async def open_conn(uri: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, rest = uri.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(rest)
    host, _, port = rest.rpartition(":")
    return await asyncio.open_connection(host, int(port))


class FakeDestination:
    """A listener that accepts and then either never reads (``read=False``:
    the source's writes back up), or reads and throws everything away
    without ever answering (``read=True``)."""

    def __init__(self, *, read: bool) -> None:
        self.read = read
        self.conns: list[asyncio.StreamWriter] = []
        self.received = 0
        self.server: Optional[asyncio.AbstractServer] = None

    async def start(self, uri: str) -> str:
        self.server, addr = await start_server(uri, self._handle)
        return addr

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if not self.read:
            writer.transport.pause_reading()
            return
        with contextlib.suppress(ConnectionError):
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                self.received += len(data)

    async def close(self) -> None:
        for w in self.conns:
            reset_writer(w)
        if self.server is not None:
            self.server.close()


class FullBacklogListener:
    """A TCP listener whose accept queue is full: a connect to it hangs
    (SYNs dropped), so a source stays in ``setup``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.dummies = []
        for _ in range(3):
            d = socket.socket()
            d.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                d.connect(("127.0.0.1", self.port))
            self.dummies.append(d)

    @property
    def uri(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def close(self) -> None:
        for d in self.dummies:
            d.close()
        self.sock.close()


# -- the fault proxy -------------------------------------------------------------------------
@dataclass
class Fault:
    """What the proxy does to one connection's source-to-destination bytes.

    ``flip``: {offset: xor mask}; ``put``: {offset: bytes} (overwrite);
    ``cut``: forward exactly this many bytes, then close both sides (a reset
    if ``reset``, else FIN); ``pause``: forward this many bytes, then wait
    for ``Proxy.proceed``.  ``marker``: offsets count from the first
    occurrence of these bytes in the stream (nothing happens before it).
    """
    flip: dict[int, int] = field(default_factory=dict)
    put: dict[int, bytes] = field(default_factory=dict)
    cut: Optional[int] = None
    reset: bool = True
    pause: Optional[int] = None
    marker: Optional[bytes] = None


class _Conn:
    def __init__(self, proxy: "Proxy", index: int) -> None:
        self.proxy = proxy
        self.index = index
        self.kind: Optional[str] = None        # "main" or "multifd"
        self.channel: Optional[int] = None     # multifd channel id
        self.forwarded = 0
        self.returned = 0
        self.fault: Optional[Fault] = None
        self.base: Optional[int] = None        # where the fault offsets count from
        self.scan = bytearray()                # for the marker search
        self.cwriter: Optional[asyncio.StreamWriter] = None
        self.uwriter: Optional[asyncio.StreamWriter] = None
        self.dead = False
        self.after_shut: Optional[str] = None  # forward-then-X: X, once SHUT went back
        self.tail = bytearray()                # forward-then-X: bytes held back


class Proxy:
    """Forwards connections from ``listen`` to ``target`` (both unix:/tcp:
    URIs), with faults: ``main`` applies to the migration stream (the
    connection starting with QEVM), ``multifd`` to multifd channel N (by its
    id); ``shut``: what to do with the destination's SHUT on the return path
    -- None (forward), "reset" (reset both sides instead), "hold" (never
    forward it), "split" (never forward it: a FIN to the destination, a
    reset to the source), or "forward-then-X": forward it, but the source's
    commit never reaches the destination -- the proxy withholds the last
    len(COMMIT) bytes before the source's EOF (kept in ``withheld``) and
    then, X: "reset" (a reset instead of the FIN), "fin" (the FIN alone),
    "garble" (other bytes of the commit's length, then the FIN) or
    "silence" (nothing: the connection stays open).

    ``fired`` is set when a fault happened; ``paused`` when a ``pause``
    offset was reached (``proceed.set()`` continues)."""

    def __init__(self, target: str, *, main: Optional[Fault] = None,
                 multifd: Optional[dict[int, Fault]] = None, shut: Optional[str] = None,
                 chunk: int = 1 << 20) -> None:
        self.target = target
        self.main_fault = main
        self.multifd_faults = multifd or {}
        self.shut = shut
        self.chunk = chunk
        self.conns: list[_Conn] = []
        self.fired = asyncio.Event()
        self.paused = asyncio.Event()
        self.proceed = asyncio.Event()
        self.shut_seen = asyncio.Event()
        self.shut_code: Optional[int] = None
        self.server: Optional[asyncio.AbstractServer] = None
        self.tasks: set[asyncio.Task] = set()
        self.captured: dict[int, bytearray] = {}
        self.capture = False
        self.withheld: Optional[bytes] = None    #: forward-then-X: what the source sent last

    async def start(self, listen: str) -> str:
        self.server, addr = await start_server(listen, self._handle)
        return addr

    @property
    def main(self) -> Optional[_Conn]:
        for c in self.conns:
            if c.kind == "main":
                return c
        return None

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in self.conns:
            for w in (c.cwriter, c.uwriter):
                if w is not None and not w.transport.is_closing():
                    reset_writer(w)
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        conn = _Conn(self, len(self.conns))
        self.conns.append(conn)
        conn.cwriter = cwriter
        try:
            ureader, uwriter = await open_conn(self.target)
        except OSError:
            reset_writer(cwriter)
            return
        conn.uwriter = uwriter
        self._spawn(self._forward(conn, creader, uwriter))
        self._spawn(self._back(conn, ureader, cwriter))

    def _kill(self, conn: _Conn, reset: bool = True) -> None:
        conn.dead = True
        for w in (conn.cwriter, conn.uwriter):
            if w is None or w.transport.is_closing():
                continue
            if reset:
                reset_writer(w)
            else:
                with contextlib.suppress(OSError, RuntimeError):
                    w.write_eof()
                w.close()

    def _classify(self, conn: _Conn, head: bytes) -> None:
        magic = int.from_bytes(head[:4], "big")
        if magic == 0x5145564D:
            conn.kind = "main"
            conn.fault = self.main_fault
        elif magic == 0x11223344:
            conn.kind = "multifd"
            conn.channel = head[24] if len(head) > 24 else None
            conn.fault = self.multifd_faults.get(conn.channel)  # type: ignore[arg-type]
        else:
            conn.kind = "other"
        if conn.fault is not None and conn.fault.marker is None:
            conn.base = 0

    async def _forward(self, conn: _Conn, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        head = bytearray()
        try:
            while True:
                if conn.scan:
                    # bytes held back while looking for a marker: not for long (the
                    # source may be waiting for an answer to them, e.g. a PING)
                    try:
                        data = await asyncio.wait_for(reader.read(self.chunk), 0.02)
                    except asyncio.TimeoutError:
                        held, conn.scan = bytes(conn.scan), bytearray()
                        writer.write(held)
                        conn.forwarded += len(held)
                        await writer.drain()
                        continue
                else:
                    data = await reader.read(self.chunk)
                if not data:
                    if conn.scan and not conn.dead:     # held back while looking for a marker
                        writer.write(bytes(conn.scan))
                        conn.forwarded += len(conn.scan)
                        conn.scan = bytearray()
                    if conn.after_shut is not None:     # forward-then-X
                        # the commit (the source's last bytes) goes nowhere
                        self.withheld = bytes(conn.tail)
                        self.fired.set()
                        if conn.after_shut == "reset":
                            self._kill(conn, reset=True)
                        elif conn.after_shut in ("fin", "garble"):
                            with contextlib.suppress(OSError, RuntimeError):
                                if conn.after_shut == "garble":
                                    writer.write(b"aemu-no\n")
                                writer.write_eof()
                        else:
                            assert conn.after_shut == "silence", conn.after_shut
                    elif not conn.dead:
                        with contextlib.suppress(OSError, RuntimeError):
                            writer.write_eof()
                    return
                if conn.kind is None:
                    head += data
                    if len(head) < 25:
                        continue
                    self._classify(conn, bytes(head))
                    data, head = bytes(head), bytearray()
                if self.capture:
                    self.captured.setdefault(conn.index, bytearray()).extend(data)
                data = await self._apply(conn, bytearray(data))
                if data is None:
                    return
                if conn.after_shut is not None:
                    # after SHUT went back: hold the last len(COMMIT) bytes back,
                    # so that the source's commit is never forwarded
                    data = conn.tail + data
                    conn.tail = data[len(data) - len(COMMIT):]
                    data = data[:len(data) - len(COMMIT)]
                    if not data:
                        continue
                writer.write(data)
                conn.forwarded += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            if not conn.dead:                       # a reset: pass it on
                self._kill(conn, reset=True)
        except asyncio.CancelledError:
            raise

    async def _apply(self, conn: _Conn, data: bytearray) -> Optional[bytearray]:
        """The fault on one chunk (positions [forwarded, forwarded+len))."""
        fault = conn.fault
        if fault is None:
            return data
        if conn.base is None:                       # looking for the marker
            assert fault.marker is not None
            keep = len(fault.marker) - 1
            window = conn.scan + data               # conn.scan: not forwarded yet
            at = window.find(fault.marker)
            if at < 0:
                # hold the last bytes back: the marker may straddle two chunks,
                # and the fault offsets must all still be ahead of us
                cut = max(len(window) - keep, 0)
                conn.scan = window[cut:]
                return window[:cut]
            conn.base = conn.forwarded + at
            conn.scan = bytearray()
            data = window
        pos = conn.forwarded
        out = data
        for off, mask in fault.flip.items():
            k = conn.base + off - pos
            if 0 <= k < len(out):
                out[k] ^= mask
                self.fired.set()
        for off, raw in fault.put.items():
            for i, b in enumerate(raw):
                k = conn.base + off + i - pos
                if 0 <= k < len(out):
                    out[k] = b
                    self.fired.set()
        if fault.pause is not None:
            k = conn.base + fault.pause - pos
            if 0 <= k < len(out):
                await self._forward_upto(conn, out, k)
                out = out[k:]
                fault.pause = None
                self.paused.set()
                self.fired.set()
                await self.proceed.wait()
                if conn.dead:
                    return None
                pos = conn.forwarded
        if fault.cut is not None:
            k = conn.base + fault.cut - pos
            if 0 <= k < len(out):
                await self._forward_upto(conn, out, k, quiet=True)
                self.fired.set()
                self._kill(conn, reset=fault.reset)
                return None
        return out

    @staticmethod
    async def _forward_upto(conn: _Conn, out: bytearray, k: int, *,
                            quiet: bool = False) -> None:
        """The chunk's first ``k`` bytes go on to the destination (a pause or
        a cut falls there); ``quiet``: a connection already gone is no error."""
        assert conn.uwriter is not None
        conn.uwriter.write(out[:k])
        conn.forwarded += k
        with contextlib.suppress(*((ConnectionError, OSError) if quiet else ())):
            await conn.uwriter.drain()

    async def _back(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        pending = bytearray()
        try:
            while True:
                data = await reader.read(self.chunk)
                if not data:
                    if not conn.dead:
                        with contextlib.suppress(OSError, RuntimeError):
                            writer.write_eof()
                    return
                conn.returned += len(data)
                if conn.kind != "main" or self.shut is None:
                    writer.write(data)
                    await writer.drain()
                    continue
                pending += data
                while len(pending) >= 4:            # return-path messages
                    kind, length = struct.unpack(">HH", pending[:4])
                    if len(pending) < 4 + length:
                        break
                    msg = bytes(pending[:4 + length])
                    del pending[:4 + length]
                    if kind == 1:                   # SHUT
                        self.shut_code = struct.unpack(">I", msg[4:8])[0] if length == 4 else None
                        self.shut_seen.set()
                        self.fired.set()
                        if self.shut == "reset":
                            self._kill(conn, reset=True)
                            return
                        if self.shut == "hold":
                            continue
                        if self.shut.startswith("forward-then-"):
                            conn.after_shut = self.shut[len("forward-then-"):]
                        if self.shut == "split":
                            # the destination sees a FIN (as if the source had taken
                            # the verdict and closed), the source a reset before SHUT
                            conn.dead = True
                            if conn.uwriter is not None:
                                with contextlib.suppress(OSError, RuntimeError):
                                    conn.uwriter.write_eof()
                            if conn.cwriter is not None:
                                reset_writer(conn.cwriter)
                            continue
                    writer.write(msg)
                    await writer.drain()
        except (ConnectionError, OSError):
            if not conn.dead:                       # a reset: pass it on
                self._kill(conn, reset=True)


# -- reading a stream ------------------------------------------------------------------------
@dataclass
class StreamMap:
    total: int
    header_end: int                                  #: after the configuration
    commands: list[tuple[int, int]] = field(default_factory=list)   #: (start, command)
    ram_setup: tuple[int, int] = (0, 0)
    ram_sections: list[tuple[int, int, int]] = field(default_factory=list)  #: (start, kind, end)
    records: list[tuple[int, int, int]] = field(default_factory=list)  #: (start, flags, page)
    devices: list[tuple[int, str, int]] = field(default_factory=list)  #: (start, idstr, end)
    eof: int = 0
    vmdesc: int = 0                                  #: the description (0: none)
    vmdesc_end: int = 0
    commit: int = 0                                  #: the source's commit after it (0: none)

    def page_records(self) -> list[tuple[int, int, int]]:
        """(record start, page number, data start) of the records with page data."""
        out = []
        for start, flags, page in self.records:
            if flags & 0x08:
                head = 8 if flags & 0x20 else 8 + 1 + len(b"cr16.ram")
                out.append((start, page, start + head))
        return out

    def device(self, idstr: str) -> tuple[int, int]:
        for start, name, end in self.devices:
            if name == idstr:
                return start, end
        raise KeyError(idstr)


def stream_map(data: bytes, vm: Machine) -> StreamMap:
    """Walk a complete main stream (aemu's own, non-mapped-ram) and say where
    everything is; ``vm`` gives the device sections' layouts."""
    r = Reader(data)
    assert r.uint(4) == 0x5145564D and r.uint(4) == 3
    assert r.u8() == 0x07
    decode(CONFIG_VMSD, _Config(), r, CONFIG_VMSD.version)
    m = StreamMap(total=len(data), header_end=r.pos)
    by_key = {(s.idstr, s.instance_id): s for s in sections(vm)}
    by_key[("globalstate", 0)] = Section("globalstate", 0, GLOBALSTATE_VMSD, GlobalState())
    by_key[("aemu-ram-check", 0)] = Section("aemu-ram-check", 0, RAM_CHECK_VMSD, RamCheck())
    parsed = Parsed(vm.board.name, vm.cpu.ram_size)
    while True:
        at = r.pos
        kind = r.u8()
        if kind == EOF:
            m.eof = at
            break
        if kind == COMMAND:
            cmd = r.uint(2)
            r.take(r.uint(2))
            m.commands.append((at, cmd))
            continue
        if kind in (START, FULL):
            sid = r.uint(4)
            idstr = r.cstr()
            inst = r.uint(4)
            version = r.uint(4)
            if idstr == "ram":
                _read_ram_setup(r, parsed)
                r.take(5)
                m.ram_setup = (at, r.pos)
                continue
            sec = by_key[(idstr, inst)]
            decode(sec.vmsd, sec.obj, r, version)
            assert r.u8() == 0x7E and r.uint(4) == sid
            m.devices.append((at, idstr, r.pos))
            continue
        assert kind in (PART, END), (kind, at)
        r.uint(4)
        while True:
            rec = r.pos
            head = r.uint(8)
            flags = head & 0xFFF
            if flags == 0x10:                  # EOS
                break
            if flags == 0x200:                 # MULTIFD_FLUSH
                m.records.append((rec, flags, -1))
                continue
            if not flags & 0x20:
                r.take(r.u8())
            r.take(PAGE_SIZE if flags & 0x08 else 1)
            m.records.append((rec, flags, head >> 12))
        r.take(5)
        m.ram_sections.append((at, kind, r.pos))
    if r.remaining():
        m.vmdesc = r.pos
        assert r.u8() == VMDESC
        r.take(r.uint(4))
        m.vmdesc_end = r.pos
    if r.remaining():                                # a captured stream: the commit follows
        assert data[r.pos:] == COMMIT, data[r.pos:r.pos + 32]
        m.commit = r.pos
    return m


__all__ = [
    "BUF", "NPAGES", "START_CYCLES", "ENDED", "Side", "Rig", "run_async", "wait_done", "wait_for",
    "twin_target", "twin_at", "assert_ram_equal", "check_twin", "assert_completed_info",
    "reset_writer", "start_server", "open_conn", "FakeDestination", "FullBacklogListener",
    "Fault", "Proxy", "StreamMap", "stream_map",
]
