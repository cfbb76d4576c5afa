"""The destination side of a migration: the VM waits in ``inmigrate``, a
stream arrives on a socket, an fd or a file, and is loaded as it comes.

RAM pages go into guest RAM as they arrive (C checks and stores whole
batches of records); device sections are decoded as they arrive but applied
only after EOF, when everything -- every section present, the RAM check
digest equal -- was good.  Then, with a return path, the destination answers
SHUT 0 and waits for the source to close the connection before it starts
the guest: a source that was cancelled at the last moment resets the
connection instead, and the guest here stays stopped -- so the VM never runs
in two places.  (Without a return path the guest starts at EOF, as QEMU's.)

A broken or hostile stream fails the incoming migration with a clear error;
the source, told by SHUT 1 or the broken connection, resumes its VM.
"""
from __future__ import annotations

import asyncio
import gc
import json
import struct
import zlib
from typing import TYPE_CHECKING, Any, Callable, Optional

from aemu.cpu.core import PageHashes
from aemu.loop import RunState
from aemu.migration.job import MigrationJob
from aemu.migration.multifd import MultifdReceiver
from aemu.migration.outgoing import RAM_CHECK_VMSD, RP_TIMEOUT, SPIN, RamCheck
from aemu.migration.status import PAGE_SIZE, Status, now_ms
from aemu.migration.wire import (CMD_NAMES, CMD_OPEN_RETURN_PATH, CMD_PING, COMMIT, INIT_SIZE,
                                 MULTIFD_MAGIC, RP_PONG, RP_SHUT, parse_multifd_init,
                                 rp_message)
from aemu.savevm.codec import Reader, StreamError, Truncated, check_version, decode, encode
from aemu.savevm.machine import apply_parsed, apply_sections, sections
from aemu.savevm.stream import (COMMAND, CONFIG_VMSD, CONFIGURATION, END, EOF, FULL,
                                GLOBALSTATE_VMSD, MAGIC, PAGE_BITS, PART, RAM_BLOCK,
                                RAM_VERSION, START, VERSION, VMDESC, GlobalState, Parsed,
                                Section, _Config, _footer, _read_ram_setup)
from aemu.transport.channel import Channel, ChannelError, SocketChannel
from aemu.transport.uri import (Listener, MigrationUri, channel_for_fd, open_incoming_file,
                                resolve_fd)

if TYPE_CHECKING:  # pragma: no cover
    from aemu.migration.manager import MigrationManager

BLOCK = RAM_BLOCK.encode()
MAX_VMDESC = 16 << 20
CONNECT_TIMEOUT = 60.0       #: seconds for a new connection to say what it is


class Incoming(MigrationJob):
    """One incoming migration: ``start`` listens (or opens the file / fd),
    ``done`` is set when it completed or failed."""

    def __init__(self, mgr: "MigrationManager", uri: MigrationUri,
                 fds: dict[str, int]) -> None:
        super().__init__(mgr, uri, fds)
        self.address: Optional[MigrationUri] = None
        self.listener: Optional[Listener] = None
        self.multifd: Optional[MultifdReceiver] = None
        self.hashes = PageHashes(-(-self.vm.cpu.ram_size // PAGE_SIZE))
        self.stats.total_pages = self.hashes.npages
        #: the state is in the VM (stopped), waiting for the source's commit
        self.loaded = False
        self._refused: Optional[str] = None

    # -- starting ------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Decode and apply this VM's own device state once, now: the first
        run of those code paths is several times slower than later ones, and
        the real one happens while the guest is stopped on both sides.  (The
        VM waits for a stream that replaces its whole state anyway.)"""
        vm = self.vm
        pairs = []
        for sec in sections(vm):
            out = bytearray()
            encode(sec.vmsd, sec.obj, out)
            pairs.append((sec, decode(sec.vmsd, sec.obj, Reader(bytes(out)), sec.vmsd.version)))
        timers = list(vm.timers._heap)
        apply_sections(vm, pairs)
        vm.timers._heap[:] = timers          # as they were: nothing fires in inmigrate

    async def start(self) -> MigrationUri:
        """Begin waiting for the stream; returns the address (tcp port 0 ->
        the port chosen)."""
        self.vm.await_migration()
        self._warm_up()
        # RAM starts as zero pages, allocated now: multifd packets may land
        # before the main stream's ram section, and page faults here cost
        # nothing, while in the stream they cost ~4 us a page
        self.vm.cpu.clear_ram(populate=True)
        self.hashes.reset()
        self._set(Status.SETUP)
        if self.uri.is_socket:
            self.listener = Listener(self.uri, self._on_channel)
            self.address = await self.listener.start()
        else:
            if self.uri.kind == "file":
                ch: Channel = await open_incoming_file(self.uri)
            else:
                fd = resolve_fd(self.uri, self.fds)
                ch = await channel_for_fd(fd, f"fd:{self.uri.fd_name}", writing=False)
            self.address = self.uri
            self._start_task(ch)
        return self.address

    async def _on_channel(self, ch: SocketChannel) -> None:
        """A connection: the main stream (QEVM) or a multifd channel."""
        try:
            await asyncio.wait_for(ch.fill(4), CONNECT_TIMEOUT)
        except (asyncio.TimeoutError, ChannelError):
            ch.abort()
            return
        magic = int.from_bytes(ch.buf[:4], "big")
        if magic == MAGIC and self.main is None and self.task is None:
            self._start_task(ch)
            return
        if magic == MULTIFD_MAGIC and self.status in (Status.SETUP, Status.ACTIVE):
            if not self.opts.cap("multifd"):
                ch.abort()
                self.refuse_channel("a multifd channel connected, but multifd is off here "
                                    "(set the multifd capability on both sides)")
                return
            try:
                await asyncio.wait_for(ch.fill(INIT_SIZE), CONNECT_TIMEOUT)
                uuid, cid = parse_multifd_init(bytes(ch.buf[:INIT_SIZE]))
            except (asyncio.TimeoutError, ChannelError, StreamError) as exc:
                ch.abort()
                self.refuse_channel(f"a multifd channel failed its greeting: {exc}")
                return
            ch.consume(INIT_SIZE)
            why = self._receiver().add(ch, cid, uuid)
            if why:
                self.refuse_channel(why)
            return
        ch.abort()       # a second main stream, or not a migration at all

    def _receiver(self) -> MultifdReceiver:
        if self.multifd is None:
            self.multifd = MultifdReceiver(self.vm.cpu, self.opts["multifd-channels"],
                                           compression=self.opts["multifd-compression"],
                                           hashes=self.hashes)
        return self.multifd

    def _start_task(self, ch: Channel) -> None:
        self._ch = ch
        self.task = asyncio.get_running_loop().create_task(self._run(ch))
        self.task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if not self.done.is_set():       # cancelled before its first step
            self._ch.abort()             # it owns the socket or file (fd: took it over)
            self._finish(Status.CANCELLED, "cancelled")

    def cancel(self) -> None:
        if self.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
            return
        self._set(Status.CANCELLING)
        if self.task is not None:
            self.task.cancel()
        else:
            self._finish(Status.CANCELLED)

    def refuse_channel(self, why: str) -> None:
        """A channel this side cannot take (multifd off here, a bad channel
        id ...): the migration fails, and says why."""
        if self.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
            return
        self._refused = why
        if self.main is not None:
            self.main.abort()

    def _finish(self, status: Status, error: Optional[str] = None) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.multifd is not None:
            self.multifd.close()
        if error is not None:
            self.error = error
        self.stats.end_ms = now_ms()
        self._set(status)
        self.done.set()
        self.mgr.finished(self)

    # -- the load ------------------------------------------------------------------
    async def _run(self, ch: Channel) -> None:
        self.main = ch
        gc_was = gc.isenabled()
        gc.disable()          # no collector pass in the middle of a switch-over
        try:
            start_guest = await self._load(ch)
        except asyncio.CancelledError:
            ch.abort()
            self._finish(Status.CANCELLED, "cancelled")
            return
        except Exception as exc:          # noqa: BLE001 - reported; the source resumes
            message = self._refused or str(exc) or type(exc).__name__
            if not self.loaded:
                self._reply(ch, 1)
            ch.close()
            self._finish(Status.FAILED, message)
            return
        finally:
            if gc_was:
                gc.enable()
        self.stats.transferred = self._received()
        if self.multifd is not None:
            self.stats.normal += self.multifd.pages
            self.stats.duplicate += self.multifd.zero_pages
            self.stats.multifd_bytes = self.multifd.bytes
        self._finish(Status.COMPLETED)
        if start_guest:
            self.vm.resume()

    def _received(self) -> int:
        n = self.main.received if self.main is not None else 0
        return n + (self.multifd.bytes if self.multifd is not None else 0)

    def _reply(self, ch: Channel, code: int) -> None:
        if getattr(self, "_return_path", False):
            try:
                ch.write(rp_message(RP_SHUT, struct.pack(">I", code)))
            except ChannelError:
                pass

    async def _decode(self, ch: Channel, what: Callable[[Reader], Any]) -> Any:
        """Run a decoder over the buffered bytes, waiting for more while it
        runs out; consume what it read."""
        # over a copy of the front of the buffer: a view would pin the
        # bytearray (no resizing while it is exported), and the whole buffer
        # may hold megabytes of pages behind a section header
        window = 1 << 16
        while True:
            r = Reader(bytes(ch.buf[:window]), partial=True)
            try:
                out = what(r)
            except Truncated:
                if len(ch.buf) > window:
                    window *= 4
                else:
                    await ch.fill_some()
                continue
            ch.consume(r.pos)
            self._offset += r.pos
            self._last_raw = r.data[:r.pos]
            return out

    async def _load(self, ch: Channel) -> bool:
        vm, stats = self.vm, self.stats
        cpu = vm.cpu
        self._offset = 0
        self._return_path = False
        by_key = {(s.idstr, s.instance_id): s for s in sections(vm)}
        by_key[("globalstate", 0)] = Section("globalstate", 0, GLOBALSTATE_VMSD, GlobalState())
        check = RamCheck()
        by_key[("aemu-ram-check", 0)] = Section("aemu-ram-check", 0, RAM_CHECK_VMSD, check)
        parsed = Parsed(vm.board.name, cpu.ram_size)
        self._set(Status.ACTIVE)

        def header(r: Reader) -> None:
            magic = r.uint(4)
            if magic != MAGIC:
                raise StreamError(f"not a migration stream: magic {magic:#010x}", 0)
            version = r.uint(4)
            if version != VERSION:
                raise StreamError(f"stream version {version} is not supported", 4)
            if r.u8("configuration marker") != CONFIGURATION:
                raise StreamError("the configuration section is missing", 8)
            r.section = "configuration"
            values = decode(CONFIG_VMSD, _Config(), r, CONFIG_VMSD.version)
            name = values["name"].decode("ascii", "replace")
            if name != vm.board.name:
                raise StreamError(f"the stream is for board {name!r}, this VM is "
                                  f"{vm.board.name!r}", 9, "configuration")
            bits = values.subsections.get("configuration/target-page-bits")
            if bits is not None and bits["target_page_bits"] != PAGE_BITS:
                raise StreamError(f"target page bits {bits['target_page_bits']}", None,
                                  "configuration")
            exact = values.subsections.get("configuration/aemu-ram-size")
            if exact is not None:
                parsed.config_ram_size = exact["ram_size"]
                if exact["ram_size"] != cpu.ram_size:
                    raise StreamError(f"the stream has {exact['ram_size']} bytes of RAM, "
                                      f"this VM {cpu.ram_size}", 9, "configuration")
            caps = values.subsections.get("configuration/capabilities")
            parsed.capabilities = list(caps["capabilities"]) if caps else []

        await self._decode(ch, header)
        if "mapped-ram" in parsed.capabilities:
            return await self._load_mapped(ch)
        values_of: list[tuple[Section, Any]] = []
        seen: set[tuple[str, int]] = set()
        crc = devices_crc = 0        # CRC-32 of the device sections' bytes, as sent
        ram_sid: Optional[int] = None
        ram_done = False
        while True:
            await ch.fill(1)
            at = self._offset
            kind = ch.buf[0]
            if kind == EOF:
                ch.consume(1)
                self._offset += 1
                break
            if kind == COMMAND:
                cmd, payload = await self._decode(ch, _command)
                if cmd == CMD_OPEN_RETURN_PATH:
                    if not isinstance(ch, SocketChannel):
                        raise StreamError("the stream asks for a return path on a file", at)
                    self._return_path = True
                elif cmd == CMD_PING:
                    if len(payload) != 4:
                        raise StreamError("PING with a bad length", at)
                    if self._return_path:
                        ch.write(rp_message(RP_PONG, payload))
                else:
                    raise StreamError(f"stream command {CMD_NAMES.get(cmd, cmd)} is not "
                                      "supported by aemu", at)
                continue
            if kind in (START, FULL):
                sid, idstr, instance, version = await self._decode(ch, _section_header)
                if kind == FULL and idstr != "aemu-ram-check":
                    crc = zlib.crc32(self._last_raw, crc)
                key = (idstr, instance)
                if key in seen:
                    raise StreamError(f"section {idstr!r} instance {instance} sent twice", at)
                seen.add(key)
                if key == ("ram", 0):
                    if kind != START or version != RAM_VERSION:
                        raise StreamError(f"ram section must be START version {RAM_VERSION}",
                                          at, "ram")

                    def ram_setup(r: Reader) -> None:
                        r.section = "ram"
                        _read_ram_setup(r, parsed)
                        _footer(r, sid)
                    await self._decode(ch, ram_setup)
                    ram_sid = sid
                    continue
                sec = by_key.get(key)
                if sec is None:
                    raise StreamError(f"unknown section {idstr!r} instance {instance}", at)
                if kind != FULL:
                    raise StreamError(f"section {idstr!r} is not iterative", at)

                def device(r: Reader, sec: Section = sec, version: int = version,
                           sid: int = sid) -> Any:
                    r.section = sec.idstr
                    check_version(sec.vmsd, version, r, 0)
                    values = decode(sec.vmsd, sec.obj, r, version)
                    _footer(r, sid)
                    return values
                values = await self._decode(ch, device)
                if idstr != "aemu-ram-check":
                    crc = zlib.crc32(self._last_raw, crc)
                else:
                    devices_crc = crc
                if idstr == "globalstate":
                    gs = GlobalState()
                    gs.buf = values["buf"]
                    parsed.globalstate = gs
                elif idstr == "aemu-ram-check":
                    check.digest = values["digest"]
                    check.devices = values["devices"]
                else:
                    values_of.append((sec, values))
                continue
            if kind in (PART, END):
                def part_header(r: Reader) -> int:
                    r.u8()
                    return r.uint(4, "section id")
                sid = await self._decode(ch, part_header)
                if sid != ram_sid or ram_done:
                    raise StreamError(f"{'PART' if kind == PART else 'END'} for section id "
                                      f"{sid}, which was not started", at)
                if kind == END:
                    ch.spin(SPIN)       # the switch-over: the device state follows at once
                await self._ram_records(ch)
                await self._decode(ch, lambda r, sid=sid: _footer(r, sid))
                if kind == END:
                    ram_done = True
                stats.transferred = self._received()
                continue
            raise StreamError(f"unknown section type {kind:#04x}", at)
        if ram_sid is None or not ram_done:
            raise StreamError("the stream has no complete ram section")
        missing = [k for k in by_key if k not in seen
                   and k[0] not in ("globalstate", "aemu-ram-check")]
        if missing:
            raise StreamError("sections missing from the stream: " +
                              ", ".join(f"{i}/{n}" for i, n in missing))
        if ("aemu-ram-check", 0) in seen:
            if check.digest != self.hashes.digest():
                raise StreamError("the RAM check failed: pages arrived different from how "
                                  "they were sent (a corrupted stream)", None, "aemu-ram-check")
            if check.devices != devices_crc:
                raise StreamError("the device check failed: device state arrived different "
                                  "from how it was sent (a corrupted stream)", None,
                                  "aemu-ram-check")
        # all good: the devices, the clock, the run state (RAM is in already;
        # from inmigrate a "running" stream leaves the VM paused until the
        # commit, see state_replaced)
        parsed.sections = values_of
        state = apply_parsed(vm, parsed, lambda: None)
        stats.end_ms = now_ms()
        if self._return_path:
            self._reply(ch, 0)
        # the description after EOF: not needed to load (the source makes it
        # while this side loads), read so that the stream ends where it should
        try:
            await self._read_vmdesc(ch)
        except (StreamError, ChannelError):
            if not self._return_path:
                raise
        if self._return_path:
            await self._commit(ch)
        else:
            ch.close()
        return state is RunState.RUNNING and vm.autostart

    async def _commit(self, ch: Channel) -> None:
        """After SHUT 0: the source sends COMMIT once it has taken the verdict;
        only then may the guest start here.  Anything else -- a reset (the
        source was cancelled or failed, and resumed its own copy), a close,
        silence -- leaves the loaded VM stopped here: it is an exact copy,
        and ``cont`` starts it if the source turns out to be gone."""
        self.loaded = True
        stopped = ("the VM is loaded and stopped here (cont starts it if the source "
                   "does not run it)")
        try:
            await asyncio.wait_for(ch.fill(len(COMMIT)), RP_TIMEOUT)
        except asyncio.TimeoutError:
            raise ChannelError(f"the source did not confirm the switch-over; {stopped}") \
                from None
        except ChannelError:
            raise ChannelError(f"the connection ended before the source confirmed the "
                               f"switch-over; {stopped}") from None
        if bytes(ch.buf[:len(COMMIT)]) != COMMIT:
            raise StreamError(f"the source sent something other than its commit; {stopped}")
        ch.consume(len(COMMIT))

    async def _ram_records(self, ch: Channel) -> None:
        """Page records up to EOS, stored by C as they arrive."""
        cpu = self.vm.cpu
        stats = self.stats
        named = False
        while True:
            used, stop, err, named, pages, zeros = cpu.ram_unpack(ch.buf, BLOCK, named,
                                                                  self.hashes)
            if used:
                ch.consume(used)
                self._offset += used
            stats.normal += pages
            stats.duplicate += zeros
            if stop == 1:                   # EOS
                return
            if stop == 2:                   # MULTIFD_FLUSH
                if self.multifd is None:
                    if not self.opts.cap("multifd"):
                        raise StreamError("a multifd flush, but multifd is off here (set the "
                                          "multifd capability on both sides)", self._offset,
                                          "ram")
                    self._receiver()
                assert self.multifd is not None
                await self.multifd.sync()
                continue
            if stop == -1:
                raise StreamError(_UNPACK_ERRORS.get(err, f"bad ram record ({err})"),
                                  self._offset, "ram")
            await ch.fill_some()

    async def _read_vmdesc(self, ch: Channel) -> None:
        try:
            await ch.fill(1)
        except ChannelError:
            return                           # no description: fine
        if ch.buf[0] != VMDESC:
            raise StreamError("unexpected bytes after the end of the stream", self._offset)
        await ch.fill(5)
        n = int.from_bytes(ch.buf[1:5], "big")
        if n > MAX_VMDESC:
            raise StreamError(f"the VM description is {n} bytes long", self._offset)
        await ch.fill(5 + n)
        raw = bytes(ch.buf[5:5 + n])
        ch.consume(5 + n)             # gone either way: what follows (the commit) is read next
        self._offset += 5 + n
        try:
            json.loads(raw)
        except (ValueError, RecursionError):
            raise StreamError("the VM description is not JSON", self._offset - n) from None

    async def _load_mapped(self, ch: Channel) -> bool:
        """A mapped-ram file: loaded as a snapshot file (pages mapped lazily)."""
        from aemu.savevm.snapfile import load_files
        if self.uri.kind != "file" or self.uri.offset:
            raise StreamError("a mapped-ram stream is loaded from file:PATH (offset 0)")
        ch.close()
        state = load_files(self.vm, [self.uri.path], lazy=True)
        return state is RunState.RUNNING and self.vm.autostart


_UNPACK_ERRORS = {
    1: "unsupported ram record flags",
    2: "unknown ram block",
    3: "a ram record continues a block that was never named",
    4: "a ram page outside RAM (or bytes past its end)",
    5: "a zero-page record with a non-zero fill",
}


def _command(r: Reader) -> tuple[int, bytes]:
    r.u8()
    cmd = r.uint(2, "command")
    n = r.uint(2, "command length")
    return cmd, bytes(r.take(n, "command payload"))


def _section_header(r: Reader) -> tuple[int, str, int, int]:
    r.u8()
    sid = r.uint(4, "section id")
    idstr = r.cstr("section name")
    instance = r.uint(4, "instance id")
    version = r.uint(4, "section version")
    return sid, idstr, instance, version
